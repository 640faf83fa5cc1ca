"""Synthetic OPG generator: determinism, FDI layout, boxes, variety, COCO/labelme layout, CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from mmoral_pipeline.domain import fdi as fdi_rules
from mmoral_pipeline.domain.taxonomy import LESION_TYPES, Category, unify_category
from mmoral_pipeline.synth import CATEGORY_NAMES, case_for, generate, render
from mmoral_pipeline.synth.cli import main as synth_main
from mmoral_pipeline.synth.contact_sheet import contact_sheet

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "assets" / "sample"
EXPECTED_NAMES = [
    "tooth", "caries", "deep caries", "periapical lesion", "impacted tooth", "missing tooth", "retained root",
    "bone loss", "filling", "crown", "root canal treatment", "implant", "bridge", "mandibular canal", "maxillary sinus",
]
CASES = [case_for(11, i) for i in range(60)]


def centre(b):
    return ((b[0] + b[2]) / 2, (b[1] + b[3]) / 2)


def test_same_seed_gives_identical_bytes_and_other_seed_differs(tmp_path: Path) -> None:
    a = generate(2, 5, tmp_path / "a", scores=True)
    b = generate(2, 5, tmp_path / "b", scores=True)
    generate(2, 6, tmp_path / "c", scores=True)
    assert a.counts == b.counts
    assert (tmp_path / "a/annotations.json").read_bytes() == (tmp_path / "b/annotations.json").read_bytes()
    for name in ("synth_5_000000.jpg", "synth_5_000001.jpg"):
        assert (tmp_path / "a/images" / name).read_bytes() == (tmp_path / "b/images" / name).read_bytes()
    assert (tmp_path / "a/annotations.json").read_bytes() != (tmp_path / "c/annotations.json").read_bytes()


def test_an_image_does_not_depend_on_n_or_start_index(tmp_path: Path) -> None:
    generate(3, 9, tmp_path / "w", write_images=False)
    generate(1, 9, tmp_path / "s", start_index=2, write_images=False)
    whole = json.loads((tmp_path / "w/annotations.json").read_text())
    shard = json.loads((tmp_path / "s/annotations.json").read_text())
    assert shard["images"] == [whole["images"][2]]
    assert shard["annotations"] == [a for a in whole["annotations"] if a["image_id"] == whole["images"][2]["id"]]


def test_fdi_side_rule_and_upper_above_lower() -> None:
    for case in CASES:
        half = case.width / 2
        upper_y, lower_y = [], []
        for t in case.teeth:
            x, y = centre(t.box)
            assert (x < half) == (fdi_rules.image_half(t.fdi) == "left"), (case.name, t.fdi, x)
            (upper_y if fdi_rules.arch(t.fdi) == "upper" else lower_y).append(y)
        assert max(upper_y) < min(lower_y), case.name
        # Order within each arch: 18..11 then 21..28 from left to right (impacted wisdom teeth excepted).
        for q_left, q_right in ((1, 2), (4, 3)):
            row = [t for t in case.teeth if t.fdi // 10 in (q_left, q_right) and t.state != "impacted"]
            xs = [
                centre(t.box)[0]
                for t in sorted(row, key=lambda t: (t.fdi // 10 != q_left, -t.fdi if t.fdi // 10 == q_left else t.fdi))
            ]
            assert xs == sorted(xs), (case.name, q_left)


def test_boxes_in_bounds_and_not_degenerate() -> None:
    for case in CASES:
        for box in [t.box for t in case.teeth] + [f.box for f in case.findings]:
            x1, y1, x2, y2 = box
            assert 0 <= x1 < x2 <= case.width and 0 <= y1 < y2 <= case.height, (case.name, box)
            assert x2 - x1 >= 1 and y2 - y1 >= 1
        for t in case.teeth:  # tight: the box is exactly the outline's bounds
            xs = [p[0] for p in t.outline]
            ys = [p[1] for p in t.outline]
            assert abs(min(xs) - t.box[0]) <= 0.1 and abs(max(ys) - t.box[3]) <= 0.1


def test_findings_sit_on_their_tooth() -> None:
    for case in CASES:
        boxes = {t.fdi: t.box for t in case.teeth}
        for f in case.findings:
            if (
                f.category in (Category.CARIES, Category.DEEP_CARIES, Category.FILLING, Category.ROOT_CANAL_TREATMENT)
                and f.fdi in boxes
            ):
                cx, cy = centre(f.box)
                x1, y1, x2, y2 = boxes[f.fdi]
                assert x1 - 2 <= cx <= x2 + 2 and y1 - 2 <= cy <= y2 + 2, (case.name, f.category, f.fdi)


def test_variable_dentition_and_every_category_appears() -> None:
    tooth_counts = [len(c.teeth) for c in CASES]
    assert min(tooth_counts) >= 14 and max(tooth_counts) <= 32
    assert 24 <= sum(tooth_counts) / len(tooth_counts) <= 31
    assert len(set(tooth_counts)) >= 4
    seen = {f.category for c in CASES for f in c.findings}
    assert seen == set(Category) - {Category.TOOTH}
    wisdom_states = {t.state for c in CASES for t in c.teeth if t.fdi in fdi_rules.WISDOM_TEETH}
    assert {"normal", "impacted"} <= wisdom_states
    assert any(not any(t.fdi == 48 for t in c.teeth) for c in CASES)  # sometimes absent
    per_case = [
        len([f for f in c.findings if f.category not in (Category.MANDIBULAR_CANAL, Category.MAXILLARY_SINUS)])
        for c in CASES
    ]
    assert 2 <= sum(per_case) / len(per_case) <= 12
    for c in CASES:
        assert sum(f.category == Category.MANDIBULAR_CANAL for f in c.findings) == 2
        assert {f.side for f in c.findings if f.category == Category.MAXILLARY_SINUS} == {"left", "right"}
    lesions = [f for c in CASES for f in c.findings if f.category == Category.PERIAPICAL_LESION]
    assert {f.lesion_type for f in lesions} == set(LESION_TYPES)
    for c in CASES:  # canals and sinuses: patient's right is the image's left
        for f in c.findings:
            if f.side:
                assert (centre(f.box)[0] < c.width / 2) == (f.side == "right")


def test_category_names_unify_onto_the_taxonomy() -> None:
    assert [CATEGORY_NAMES[c] for c in Category] == EXPECTED_NAMES
    for c in Category:
        assert unify_category(CATEGORY_NAMES[c]) == (c, None)


def test_coco_layout(tmp_path: Path) -> None:
    generate(3, 21, tmp_path, "coco", scores=True)
    doc = json.loads((tmp_path / "annotations.json").read_text())
    assert [c["name"] for c in doc["categories"]] == EXPECTED_NAMES
    names = {c["id"]: c["name"] for c in doc["categories"]}
    assert len(doc["images"]) == 3
    for im in doc["images"]:
        assert set(im) >= {"id", "file_name", "width", "height"}
        with Image.open(tmp_path / "images" / im["file_name"]) as pil:
            assert pil.size == (im["width"], im["height"]) == (1400, 700) and pil.mode == "L"
    ids = [a["id"] for a in doc["annotations"]]
    assert len(ids) == len(set(ids))
    scores = {"tooth": [], "finding": []}
    for a in doc["annotations"]:
        assert set(a) >= {"id", "image_id", "category_id", "bbox", "area", "iscrowd", "attributes", "score"}
        x, y, w, h = a["bbox"]
        assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= 1400 and y + h <= 700
        assert a["area"] == pytest.approx(w * h, abs=0.2)
        name, attrs = names[a["category_id"]], a["attributes"]
        if name == "tooth":
            assert fdi_rules.is_valid_fdi(attrs["fdi"]) and a["segmentation"] and len(a["segmentation"][0]) >= 12
        if name in (
            "caries",
            "deep caries",
            "filling",
            "root canal treatment",
            "impacted tooth",
            "retained root",
            "implant",
            "bridge",
            "missing tooth",
        ):
            assert fdi_rules.is_valid_fdi(attrs["fdi"])
        if name == "periapical lesion":
            assert attrs["lesion_type"] in LESION_TYPES
        if name == "bone loss":
            assert attrs["region"] in ("upper", "lower")
        if name in ("mandibular canal", "maxillary sinus"):
            assert attrs["side"] in ("left", "right")
        scores["tooth" if name == "tooth" else "finding"].append(a["score"])
    assert min(scores["tooth"]) >= 0.85 and max(scores["tooth"]) <= 0.99


def test_scores_spread_over_the_thresholds() -> None:
    finding_scores = [f.score for c in CASES for f in c.findings]
    assert all(0.3 <= s <= 0.99 for s in finding_scores)
    assert any(s < 0.4 for s in finding_scores)
    assert sum(0.4 <= s < 0.8 for s in finding_scores) > len(finding_scores) / 4
    assert any(s >= 0.8 for s in finding_scores)


def test_labelme_layout(tmp_path: Path) -> None:
    generate(2, 3, tmp_path, "labelme")
    docs = sorted(tmp_path.glob("*.json"))
    assert len(docs) == 2
    for path in docs:
        doc = json.loads(path.read_text())
        assert doc["version"].startswith("5.") and doc["imageData"] is None and doc["flags"] == {}
        assert (tmp_path / doc["imagePath"]).is_file() and Path(doc["imagePath"]).parent == Path(".")
        assert (doc["imageWidth"], doc["imageHeight"]) == (1400, 700)
        teeth = [s for s in doc["shapes"] if s["shape_type"] == "polygon"]
        assert 14 <= len(teeth) <= 32
        for s in doc["shapes"]:
            assert set(s) >= {"label", "points", "group_id", "description", "shape_type", "flags"} and "score" not in s
            if s["shape_type"] == "polygon":
                m = re.fullmatch(
                    r"(\d\d) - (Central Incisor|Lateral Incisor|Canine|1st Premolar|2nd Premolar|1st Molar|2nd Molar"
                    r"|Wisdom Tooth)",
                    s["label"],
                )
                assert m and int(m.group(1)) == s["group_id"]
                assert unify_category("tooth") is not None
            else:
                assert s["shape_type"] == "rectangle" and s["label"] in EXPECTED_NAMES[1:] and len(s["points"]) == 2
                (x1, y1), (x2, y2) = s["points"]
                assert 0 <= x1 < x2 <= 1400 and 0 <= y1 < y2 <= 700
                if s["label"] == "periapical lesion":
                    assert s["description"] in LESION_TYPES


def test_annotations_only_mode_and_other_sizes(tmp_path: Path) -> None:
    s = generate(5, 1, tmp_path, write_images=False, width=1000, height=480)
    doc = json.loads((tmp_path / "annotations.json").read_text())
    assert not (tmp_path / "images").exists()
    assert {(im["width"], im["height"]) for im in doc["images"]} == {(1000, 480)}
    assert s.counts["tooth"] == sum(1 for a in doc["annotations"] if a["category_id"] == 1)
    assert render(case_for(1, 0, 1000, 480)).size == (1000, 480)


def test_cli_and_module_entry(tmp_path: Path) -> None:
    assert (
        synth_main(["--n", "2", "--seed", "4", "--out", str(tmp_path / "a"), "--format", "labelme", "--no-images"]) == 0
    )
    assert len(list((tmp_path / "a").glob("*.json"))) == 2
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "mmoral_pipeline.synth",
            "--n",
            "1",
            "--seed",
            "1",
            "--out",
            str(tmp_path / "b"),
            "--format",
            "coco",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["n_images"] == 1 and (tmp_path / "b/images/synth_1_000000.jpg").is_file()


def test_contact_sheet(tmp_path: Path) -> None:
    generate(2, 8, tmp_path / "c")
    png = contact_sheet(tmp_path / "c", tmp_path / "sheet.png", n=2, cols=2, tile_width=300)
    with Image.open(png) as im:
        assert im.width == 2 * 300 + 3 * 6 and im.height > 150
