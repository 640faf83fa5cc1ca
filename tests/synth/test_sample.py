"""The embedded sample in assets/sample/ is what the generator produces, and its bad inputs are bad."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from mmoral_pipeline.domain.taxonomy import unify_category
from mmoral_pipeline.synth.generate import case_for
from mmoral_pipeline.synth.sample import COCO_SEED, LABELME_N, LABELME_SEED
from mmoral_pipeline.synth.writers import coco_entries, labelme_document

SAMPLE = Path(__file__).resolve().parents[2] / "assets" / "sample"


def test_regenerating_two_sample_images_gives_identical_annotations() -> None:
    doc = json.loads((SAMPLE / "coco/annotations.json").read_text())
    assert len(doc["images"]) == 24
    for index in (0, 17):
        image, anns = coco_entries(case_for(COCO_SEED, index), scores=True)
        committed = [a for a in doc["annotations"] if a["image_id"] == image["id"]]
        assert json.dumps(image) == json.dumps(doc["images"][index])
        assert json.dumps(anns, separators=(",", ":")) == json.dumps(committed, separators=(",", ":"))
    name = f"synth_{LABELME_SEED}_000003"
    regenerated = (
        json.dumps(labelme_document(case_for(LABELME_SEED, LABELME_N - 1), scores=False), separators=(",", ":")) + "\n"
    )
    assert (SAMPLE / "labelme" / f"{name}.json").read_text() == regenerated


def test_sample_files_exist_and_decode() -> None:
    doc = json.loads((SAMPLE / "coco/annotations.json").read_text())
    for im in doc["images"]:
        with Image.open(SAMPLE / "coco/images" / im["file_name"]) as pil:
            pil.load()
            assert pil.size == (im["width"], im["height"])
    assert all("score" in a for a in doc["annotations"])
    assert len(list((SAMPLE / "labelme").glob("*.jpg"))) == len(list((SAMPLE / "labelme").glob("*.json"))) == 4
    assert (SAMPLE / "README.md").is_file()
    total = sum(p.stat().st_size for p in SAMPLE.parent.rglob("*") if p.is_file())
    assert total < 10 * 1024 * 1024


def test_quarantine_holds_each_bad_input() -> None:
    q = SAMPLE / "quarantine"
    doc = json.loads((q / "annotations.json").read_text())
    files = {im["file_name"] for im in doc["images"]}
    assert {"missing.jpg", "../../etc/passwd", "truncated.jpg", "empty.png", "not_an_image.jpg"} <= files
    assert not (q / "images/missing.jpg").exists()
    assert (q / "images/empty.png").stat().st_size == 0
    try:
        with Image.open(q / "images/truncated.jpg") as im:
            im.load()
        raise AssertionError("truncated.jpg decoded fully")
    except OSError:
        pass
    good = [im for im in doc["images"] if im["file_name"].startswith("synth_")]
    assert len(good) == 3
    for im in good:
        with Image.open(q / "images" / im["file_name"]) as pil:
            pil.load()
    names = {c["id"]: c["name"] for c in doc["categories"]}
    assert any(unify_category(n) is None for n in names.values())
    sizes = {im["id"]: (im["width"], im["height"]) for im in doc["images"]}
    boxes = [(a["bbox"], sizes[a["image_id"]]) for a in doc["annotations"]]
    assert any(x + w > W for (x, y, w, h), (W, H) in boxes)  # out of bounds
    assert any(w == 0 or h == 0 for (x, y, w, h), _ in boxes)  # zero area


def test_quarantine_inputs_trip_the_shared_checks() -> None:
    """Each bad input is rejected by the core's own checks with the reason the README promises."""
    from mmoral_pipeline.domain.geometry import xywh_to_xyxy
    from mmoral_pipeline.sources.base import check_box, inspect_image, resolve_inside

    q = SAMPLE / "quarantine"
    root = q / "images"
    doc = json.loads((q / "annotations.json").read_text())
    reasons = {}
    for im in doc["images"]:
        path = resolve_inside(root, im["file_name"])
        if path is None:
            reasons[im["file_name"]] = "path_escapes_source"
            continue
        result = inspect_image(path, source="quarantine", root=root, max_pixels=10**8)
        reasons[im["file_name"]] = str(getattr(result, "reason", "ok"))
    assert reasons == {
        "synth_99_000000.jpg": "ok", "synth_99_000001.jpg": "ok", "synth_99_000002.jpg": "ok",
        "truncated.jpg": "image_corrupt", "empty.png": "empty_file", "not_an_image.jpg": "not_an_image",
        "missing.jpg": "image_missing", "../../etc/passwd": "path_escapes_source",
    }
    sizes = {im["id"]: (im["width"], im["height"]) for im in doc["images"]}
    box_reasons = {}
    for a in doc["annotations"]:
        r = check_box(
            xywh_to_xyxy(*a["bbox"]), *sizes[a["image_id"]], source="quarantine", path="", record=str(a["id"])
        )
        if r is not None:
            box_reasons[a["id"]] = str(r.reason)
    assert box_reasons == {900001: "box_out_of_bounds", 900002: "box_zero_area"}
