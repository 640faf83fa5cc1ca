"""The real samples in ../shared/realdata, read by the project's readers, produce attributes
and captions without errors, and every annotation is accounted for. Skips when the folder is absent."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PIL import Image

from mmoral_pipeline import tables
from mmoral_pipeline.attributes.build import build_image_attributes
from mmoral_pipeline.attributes.caption import render_caption
from mmoral_pipeline.config import SourcesFile, SourceSpec
from mmoral_pipeline.domain.taxonomy import Category
from mmoral_pipeline.sources import read_source


def attributes_of(root: Path, fmt: str, **spec: Any):
    s = SourceSpec(name="real", format=fmt, root=str(root), **spec)
    batch = read_source(s, SourcesFile(sources=[s], base_dir=str(root)))
    images = tables.records_to_frame(batch.images, tables.RAW_IMAGES, partition="real")
    anns = tables.records_to_frame(batch.annotations, tables.RAW_ANNOTATIONS, partition="real")
    assert images.height > 0, f"{fmt}: the reader accepted no image ({batch.rejections[:3]})"
    result = build_image_attributes(images, anns)
    assert len(result.documents) == images.height
    assert sorted(result.outcomes) == sorted(anns["annotation_id"].to_list())
    for doc in result.documents:
        ids = [t.tooth_id for t in doc.teeth]
        assert len(ids) == len(set(ids))
        caption = render_caption(doc)
        assert (
            doc.assessed == images.filter(images["image_id"] == doc.image_id)["covers"][0].to_list()
        )  # coverage travels
        if Category.TOOTH in doc.assessed:
            assert f"Teeth visibility with center points (total: {len(doc.teeth)})" in caption
        else:  # no tooth labels: no teeth section (an empty one would read "0 teeth")
            assert "Teeth visibility" not in caption and doc.teeth == []
        assert ("Label coverage:" in caption) == (set(doc.assessed) != set(Category))
    return result, anns


def test_akudental_labelme(realdata: Path, mmoral_home: Path):
    result, _ = attributes_of(realdata / "akudental_labelme", "labelme")
    assert len(result.documents) == 5
    assert all(len(d.teeth) >= 20 for d in result.documents)  # full dentitions, FDI from the labels
    assert result.outcome_counts()["tooth"] > 100


def test_ufba_masks(realdata: Path, mmoral_home: Path):
    result, _ = attributes_of(realdata / "ufba_masks", "ufba_masks")
    assert {d.image_id.split("-", 1)[1] for d in result.documents} >= {"cate5-00001", "cate1-00002"}
    assert min(len(d.teeth) for d in result.documents) == 4  # cate5-00001 really has only 4 teeth


def test_dc1000_caries_without_teeth_go_to_unknown_bucket(realdata: Path, mmoral_home: Path):
    result, anns = attributes_of(realdata / "dc1000_caries", "dc1000_masks")
    assert anns.height > 0
    # no tooth boxes in DC1000: every caries kept is an unknown-tooth finding with a side
    for doc in result.documents:
        assert doc.teeth == [] and doc.assessed == [Category.CARIES]
        assert all(c.category == Category.CARIES and c.side for c in doc.unknown_tooth_findings)
        caption = render_caption(doc)
        assert (
            "Dental caries detection" in caption
            and "Historical treatments" not in caption
            and "Bone loss" not in caption
        )
    assert set(result.outcomes.values()) <= {"unknown_tooth"}


def test_xray_yolo_with_configured_class_map(realdata: Path, mmoral_home: Path):
    attributes_of(realdata / "xray_yolo", "yolo", images="images",
                  options={"class_map": {1: "filling", 2: "implant", 3: "root canal treatment"}})


def test_dentex_subset_diagnoses_land_on_their_tooth(realdata: Path, mmoral_home: Path, tmp_path: Path):
    """DENTEX ships no images here: keep 6 images' annotations and give them blank images of the stated size."""
    doc = json.loads((realdata / "dentex" / "train_quadrant_enumeration_disease.json").read_text())
    keep = doc["images"][:6]
    ids = {im["id"] for im in keep}
    subset = {**doc, "images": keep, "annotations": [a for a in doc["annotations"] if a["image_id"] in ids]}
    root = tmp_path / "dentex"
    (root / "images").mkdir(parents=True)
    (root / "train_quadrant_enumeration_disease.json").write_text(json.dumps(subset))
    for im in keep:
        Image.new("L", (im["width"], im["height"]), 0).save(root / "images" / im["file_name"])
    result, anns = attributes_of(root, "dentex")
    diagnoses = anns.filter(anns["record"].str.ends_with("#diagnosis"))
    assert diagnoses.height > 0
    for aid in diagnoses["annotation_id"].to_list():
        assert result.outcomes[aid] == "condition"  # same box and FDI as its tooth
    impacted = [
        t for d in result.documents for t in d.teeth if any(c.category == Category.IMPACTED_TOOTH for c in t.conditions)
    ]
    assert all(t.wisdom_status == "impacted" for t in impacted if t.is_wisdom)
