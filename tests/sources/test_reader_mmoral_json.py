"""MMOral attribute JSON reader: one annotation per element, mapping invertible by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmoral_pipeline.domain import fdi as fdi_rules
from mmoral_pipeline.domain.attributes import Condition, ImageAttributes, JawAttributes, ToothAttributes
from mmoral_pipeline.domain.geometry import center
from mmoral_pipeline.domain.taxonomy import Category

from .conftest import reasons


def tooth(fdi: int, box, score=0.9, conditions=(), wisdom_status=None) -> ToothAttributes:
    return ToothAttributes(
        tooth_id=fdi,
        quadrant=fdi_rules.quadrant(fdi),
        is_wisdom=fdi_rules.is_wisdom(fdi),
        side=fdi_rules.side_label(fdi),
        bbox=list(box),
        center=list(center(box)),
        score=score,
        wisdom_status=wisdom_status,
        conditions=list(conditions),
    )


@pytest.fixture()
def doc() -> ImageAttributes:
    return ImageAttributes(
        image_id="opg-001",
        file_name="images/opg-001.png",
        width=200,
        height=100,
        acquisition_time="2021-03-04 10:11",
        teeth=[
            tooth(
                18,
                [10, 10, 30, 45],
                0.95,
                wisdom_status="impacted",
                conditions=[Condition(category=Category.IMPACTED_TOOTH, bbox=[10, 10, 30, 45], score=0.6)],
            ),
            tooth(
                36,
                [130, 55, 150, 90],
                0.88,
                conditions=[
                    Condition(category=Category.CARIES, bbox=[132, 56, 140, 62], score=0.82),
                    Condition(category=Category.PERIAPICAL_LESION, bbox=[135, 85, 145, 95], score=0.91, type="cyst"),
                ],
            ),
        ],
        jaw=JawAttributes(
            bone_loss=[
                Condition(
                    category=Category.BONE_LOSS, bbox=[0, 50, 200, 100], score=0.7, region="lower", side="lower left"
                )
            ],
            mandibular_canal=[
                Condition(category=Category.MANDIBULAR_CANAL, bbox=[20, 70, 90, 85], score=0.8, side="right")
            ],
        ),
        missing_teeth=[
            Condition(
                category=Category.MISSING_TOOTH, bbox=[150, 55, 165, 90], score=0.9, teeth=[37], side="lower left"
            )
        ],
        unknown_tooth_findings=[
            Condition(category=Category.FILLING, bbox=[60, 20, 70, 30], score=0.55, side="upper right")
        ],
    )


def write_doc(root: Path, doc: ImageAttributes, write_image) -> None:
    write_image(root / doc.file_name, (doc.width, doc.height))
    (root / "attributes").mkdir(parents=True, exist_ok=True)
    (root / "attributes" / f"{doc.image_id}.json").write_text(json.dumps(doc.to_mmoral_json()))


def rebuild(batch) -> dict:
    """The inverse mapping, written out by hand: annotations -> the document's elements."""
    out: dict = {"teeth": {}, "jaw": {}, "missing_teeth": [], "unknown_tooth_findings": []}
    for a in batch.annotations:
        extra = json.loads(a.extra or "{}")
        cond = {"category": a.category.value, "bbox": a.box, "score": a.score, "type": a.lesion_type,
                "region": extra.get("region"), "side": extra.get("side"), "teeth": extra.get("teeth", [])}
        section = extra["section"]
        if section == "teeth":
            out["teeth"].setdefault(a.fdi, {"conditions": []}).update(
                bbox=a.box, score=a.score, wisdom_status=extra.get("wisdom_status")
            )
        elif section == "conditions":
            out["teeth"].setdefault(a.fdi, {"conditions": []})["conditions"].append(cond)
        elif section.startswith("jaw."):
            out["jaw"].setdefault(section[4:], []).append(cond)
        else:
            out[section].append(cond)
    return out


def test_every_element_becomes_one_annotation_and_maps_back(tmp_path: Path, write_image, ingest, doc: ImageAttributes):
    root = tmp_path / "mm"
    write_doc(root, doc, write_image)
    batch = ingest(root, "mmoral_json", annotations="attributes")
    assert reasons(batch) == {}
    (img,) = batch.images
    assert (img.image_id, img.file_name, img.width, img.height) == ("opg-001", "images/opg-001.png", 200, 100)
    assert len(batch.annotations) == 2 + 3 + 2 + 1 + 1
    assert all(json.loads(a.extra)["acquisition_time"] == "2021-03-04 10:11" for a in batch.annotations)
    original = doc.to_mmoral_json()
    rebuilt = rebuild(batch)
    for t in original["teeth"]:
        r = rebuilt["teeth"][t["tooth_id"]]
        assert (r["bbox"], r["score"], r["wisdom_status"]) == (t["bbox"], t["score"], t["wisdom_status"])
        assert [{k: c[k] for k in ("category", "bbox", "score", "type")} for c in t["conditions"]] == [
            {k: c[k] for k in ("category", "bbox", "score", "type")} for c in r["conditions"]
        ]
    for name in ("bone_loss", "mandibular_canal"):
        assert [{k: c[k] for k in ("category", "bbox", "score", "region", "side")} for c in original["jaw"][name]] == [
            {k: c[k] for k in ("category", "bbox", "score", "region", "side")} for c in rebuilt["jaw"][name]
        ]
    for section in ("missing_teeth", "unknown_tooth_findings"):
        assert [{k: c[k] for k in ("category", "bbox", "score", "side", "teeth")} for c in original[section]] == [
            {k: c[k] for k in ("category", "bbox", "score", "side", "teeth")} for c in rebuilt[section]
        ]
    lesion = next(a for a in batch.annotations if a.category == Category.PERIAPICAL_LESION)
    assert (lesion.fdi, lesion.lesion_type, lesion.record) == (36, "cyst", "teeth[1].conditions[1]")


def test_bad_elements_are_rejected_one_by_one(tmp_path: Path, write_image, ingest, doc: ImageAttributes):
    root = tmp_path / "mm"
    write_doc(root, doc, write_image)
    raw = json.loads((root / "attributes" / "opg-001.json").read_text())
    raw["teeth"][0]["tooth_id"] = 19
    raw["teeth"][1]["conditions"][0]["category"] = "sparkle"
    raw["jaw"]["bone_loss"][0]["bbox"] = [0, 50, 300, 100]
    raw["missing_teeth"].append("nonsense")
    (root / "attributes" / "opg-001.json").write_text(json.dumps(raw))
    (root / "attributes" / "broken.json").write_text("{")
    (root / "attributes" / "lost.json").write_text(json.dumps(dict(raw, image_id="lost", file_name="lost.png")))
    batch = ingest(root, "mmoral_json", annotations="attributes")
    assert reasons(batch, "image") == {"malformed_json": 1, "image_missing": 1}
    assert reasons(batch, "annotation") == {
        "invalid_tooth": 1,
        "unknown_class": 1,
        "box_out_of_bounds": 1,
        "malformed_record": 1,
        "image_missing": 10,
    }
    assert len(batch.annotations) == 9 - 3
