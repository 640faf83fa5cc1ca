"""COCO reader: categories, FDI, scores, attributes, sharding; quarantine lives in test_quarantine.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmoral_pipeline.domain.records import RejectReason
from mmoral_pipeline.domain.taxonomy import Category
from mmoral_pipeline.sources.common import DOCUMENT_ITEM_SUFFIX

from .conftest import make_sources, reasons

CATS = [
    {"id": 1, "name": "tooth"},
    {"id": 2, "name": "periapical lesion"},
    {"id": 3, "name": "36"},
    {"id": 4, "name": "Tooth 11"},
    {"id": 5, "name": "Root Canal"},
    {"id": 6, "name": "bone loss"},
    {"id": 7, "name": "lesion-x"},
]


def write_coco(
    root: Path, images: list[dict], annotations: list[dict], categories=CATS, name: str = "annotations.json"
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    p = root / name
    p.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return p


@pytest.fixture()
def coco_root(tmp_path: Path, write_image) -> Path:
    root = tmp_path / "coco"
    write_image(root / "images" / "a.png", (200, 100))
    write_image(root / "images" / "sub" / "b.jpg", (120, 80), mode="RGB", color=(10, 20, 30))
    images = [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "sub/b.jpg"}]
    anns = [
        {"id": 10, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 40], "attributes": {"fdi": 18}, "score": 0.9},
        {
            "id": 11,
            "image_id": 1,
            "category_id": 2,
            "bbox": [12, 50, 10, 10],
            "attributes": {"fdi": 18, "lesion_type": "cyst"},
            "score": 0.75,
        },
        {"id": 12, "image_id": 1, "category_id": 3, "bbox": [150, 60, 20, 30]},
        {
            "id": 13,
            "image_id": 2,
            "category_id": 4,
            "bbox": [30, 5, 10, 30],
            "segmentation": [[30, 5, 40, 5, 40, 35, 30, 35]],
        },
        {"id": 14, "image_id": 2, "category_id": 5, "bbox": [31, 6, 5, 20], "attributes": {"tooth": "11"}},
        {
            "id": 15,
            "image_id": 2,
            "category_id": 6,
            "bbox": [0, 50, 120, 30],
            "attributes": {"region": "lower"},
            "iscrowd": 0,
        },
    ]
    write_coco(root, images, anns)
    return root


def test_coco_reads_categories_fdi_scores_and_attributes(coco_root: Path, ingest):
    batch = ingest(coco_root, "coco")
    assert [i.file_name for i in batch.images] == ["images/a.png", "images/sub/b.jpg"]
    assert [(i.width, i.height, i.mode) for i in batch.images] == [(200, 100, "L"), (120, 80, "RGB")]
    assert batch.images[0].image_id == "src-images_a"
    by_record = {a.record: a for a in batch.annotations}
    assert len(by_record) == 6 and not batch.rejections
    tooth = by_record["annotations[0]"]
    assert (tooth.category, tooth.fdi, tooth.score, tooth.box) == (Category.TOOTH, 18, 0.9, [10.0, 10.0, 30.0, 50.0])
    lesion = by_record["annotations[1]"]
    assert (lesion.category, lesion.lesion_type, lesion.fdi, lesion.score) == (
        Category.PERIAPICAL_LESION,
        "cyst",
        18,
        0.75,
    )
    assert (by_record["annotations[2]"].category, by_record["annotations[2]"].fdi) == (Category.TOOTH, 36)
    named = by_record["annotations[3]"]
    assert (named.category, named.fdi, named.score) == (Category.TOOTH, 11, None)
    assert named.polygon == [30.0, 5.0, 40.0, 5.0, 40.0, 35.0, 30.0, 35.0]
    rct = by_record["annotations[4]"]
    assert (rct.category, rct.fdi, rct.source_category) == (Category.ROOT_CANAL_TREATMENT, 11, "Root Canal")
    bone = by_record["annotations[5]"]
    assert json.loads(bone.extra) == {"id": 15, "region": "lower"}
    assert bone.image_id == batch.images[1].image_id
    # ids are stable across runs and distinct
    again = ingest(coco_root, "coco", check_shards=False)
    assert [a.annotation_id for a in again.annotations] == [a.annotation_id for a in batch.annotations]
    assert len({a.annotation_id for a in batch.annotations}) == 6


def test_coco_class_map_and_score_field(coco_root: Path, ingest):
    doc = json.loads((coco_root / "annotations.json").read_text())
    for a in doc["annotations"]:
        a["confidence"] = 0.5
    (coco_root / "annotations.json").write_text(json.dumps(doc))
    plain = ingest(coco_root, "coco", check_shards=False)
    assert reasons(plain) == {}
    mapped = ingest(coco_root, "coco", options={"class_map": {"tooth": "implant"}, "score_field": "confidence"})
    cats = [a.category for a in mapped.annotations]
    assert cats.count(Category.IMPLANT) == 1 and all(a.score == 0.5 for a in mapped.annotations)
    assert "confidence" not in (mapped.annotations[0].extra or "")


def test_coco_unknown_category_name_and_id_are_rejected(coco_root: Path, ingest):
    doc = json.loads((coco_root / "annotations.json").read_text())
    doc["annotations"][0]["category_id"] = 7  # named 'lesion-x': not in the taxonomy
    doc["annotations"][1]["category_id"] = 99  # no such category
    (coco_root / "annotations.json").write_text(json.dumps(doc))
    batch = ingest(coco_root, "coco")
    assert reasons(batch, "annotation") == {"unknown_class": 2}
    assert {r.record for r in batch.rejections} == {"annotations[0]", "annotations[1]"}
    assert len(batch.annotations) == 4


def test_coco_invalid_fdi_attribute_is_rejected(coco_root: Path, ingest):
    doc = json.loads((coco_root / "annotations.json").read_text())
    doc["annotations"][0]["attributes"]["fdi"] = 19
    (coco_root / "annotations.json").write_text(json.dumps(doc))
    batch = ingest(coco_root, "coco")
    assert reasons(batch) == {"invalid_tooth": 1}


def test_coco_items_are_file_names_and_shards_partition_the_source(coco_root: Path, ingest):
    s, sf = make_sources(coco_root, "coco")
    from mmoral_pipeline.sources import list_source_items, read_source

    assert list_source_items(s, sf) == ["a.png", "sub/b.jpg"]
    only_b = read_source(s, sf, ["sub/b.jpg"])
    assert [i.file_name for i in only_b.images] == ["images/sub/b.jpg"]
    assert only_b.images_seen == 1 and only_b.annotations_seen == 3


def test_coco_orphan_annotations_get_a_document_item(coco_root: Path, ingest):
    doc = json.loads((coco_root / "annotations.json").read_text())
    doc["annotations"].append({"id": 99, "image_id": 42, "category_id": 1, "bbox": [1, 1, 5, 5]})
    (coco_root / "annotations.json").write_text(json.dumps(doc))
    s, sf = make_sources(coco_root, "coco")
    from mmoral_pipeline.sources import list_source_items

    assert list_source_items(s, sf) == sorted(["a.png", "sub/b.jpg", "annotations.json" + DOCUMENT_ITEM_SUFFIX])
    batch = ingest(coco_root, "coco")
    (rej,) = batch.rejections
    assert (rej.reason, rej.kind, rej.record) == (RejectReason.IMAGE_MISSING, "annotation", "annotations[6]")


def test_coco_missing_annotation_file_is_one_rejection(tmp_path: Path, ingest):
    (tmp_path / "empty").mkdir()
    batch = ingest(tmp_path / "empty", "coco")
    assert reasons(batch) == {"missing_annotations": 1}
