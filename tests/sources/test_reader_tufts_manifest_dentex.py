"""Tufts Labelbox, manifest (Parquet / JSONL) and DENTEX readers on small hand-made inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mmoral_pipeline.domain.records import RejectReason
from mmoral_pipeline.domain.taxonomy import Category
from mmoral_pipeline.sources.dentex import parse_dentex
from mmoral_pipeline.sources.tufts import tufts_label

from .conftest import make_sources, reasons

# --------------------------------------------------------------------------- Tufts


def test_tufts_labels():
    assert (
        tufts_label("1").fdi == 18
        and tufts_label("32").fdi == 48
        and tufts_label("A").fdi == 55
        and tufts_label("t").fdi == 85
    )
    assert tufts_label("33") == RejectReason.INVALID_TOOTH
    assert tufts_label("implant").category == Category.IMPLANT
    assert tufts_label("blob") == RejectReason.UNKNOWN_CLASS


def test_tufts_reader_quarantine(tmp_path: Path, write_image, ingest):
    root = tmp_path / "t"
    write_image(root / "images" / "1.jpg", (300, 200))
    obj = lambda title, box: {"title": title, "bounding box": box}  # noqa: E731
    doc = [
        {
            "External ID": "1.jpg",
            "Label": {
                "objects": [
                    obj("8", [10, 100, 80, 120]),
                    obj("Q", [5, 5, 50, 50]),
                    obj("40", [1, 1, 2, 2]),
                    obj("9", [10, 150, 80, 400]),
                ]
            },
        },
        {"External ID": "1.jpg", "Label": {"objects": [obj("1", [1, 1, 5, 5])]}},
        {"External ID": "../x.jpg", "Label": {"objects": []}},
        {"External ID": "2.jpg", "Label": {"objects": [obj("2", [1, 1, 5, 5])]}},
        {"Label": {}},
    ]
    (root / "teeth_bbox.json").write_text(json.dumps(doc))
    batch = ingest(root, "tufts", options={"box_order": "yxyx"})
    assert [(a.fdi, a.box) for a in batch.annotations] == [
        (11, [100.0, 10.0, 120.0, 80.0]),
        (82, [5.0, 5.0, 50.0, 50.0]),
    ]
    assert reasons(batch, "image") == {
        "duplicate_image": 1,
        "path_escapes_source": 1,
        "image_missing": 1,
        "malformed_record": 1,
    }
    assert reasons(batch, "annotation") == {
        "invalid_tooth": 1,
        "box_out_of_bounds": 1,
        "image_rejected": 1,
        "image_missing": 1,
    }
    s, sf = make_sources(root, "tufts", options={"box_order": "zyx"})
    from mmoral_pipeline.sources import read_source

    with pytest.raises(ValueError, match="box_order"):
        read_source(s, sf)


# --------------------------------------------------------------------------- manifest


ROWS = [
    {
        "file_name": "a.png",
        "category": "caries",
        "box": [1.0, 2.0, 10.0, 12.0],
        "fdi": 36,
        "score": 0.8,
        "lesion_type": None,
        "extra": '{"note": "x"}',
        "annotation_id": "old1",
    },
    {
        "file_name": "a.png",
        "category": "tooth",
        "box": [0.0, 0.0, 20.0, 20.0],
        "fdi": 36,
        "score": None,
        "lesion_type": None,
        "extra": None,
        "annotation_id": None,
    },
    {
        "file_name": "a.png",
        "category": "periapical_lesion",
        "box": [0.0, 15.0, 5.0, 19.0],
        "fdi": None,
        "score": 0.9,
        "lesion_type": "abscess",
        "extra": None,
        "annotation_id": None,
    },
    {
        "file_name": "b.png",
        "category": None,
        "box": None,
        "fdi": None,
        "score": None,
        "lesion_type": None,
        "extra": None,
        "annotation_id": None,
    },
    {
        "file_name": "b.png",
        "category": "unicorn",
        "box": [1.0, 1.0, 2.0, 2.0],
        "fdi": None,
        "score": None,
        "lesion_type": None,
        "extra": None,
        "annotation_id": None,
    },
]


@pytest.mark.parametrize("kind", ["parquet", "jsonl"])
def test_manifest_reader(tmp_path: Path, write_image, ingest, kind):
    root = tmp_path / "m"
    write_image(root / "a.png", (40, 40))
    write_image(root / "b.png", (40, 40))
    if kind == "parquet":
        pq.write_table(pa.Table.from_pylist(ROWS), root / "manifest.parquet")
    else:
        (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    batch = ingest(root, "manifest")
    assert [i.file_name for i in batch.images] == ["a.png", "b.png"]
    caries, tooth, lesion = batch.annotations
    assert (caries.category, caries.fdi, caries.score, caries.box) == (Category.CARIES, 36, 0.8, [1.0, 2.0, 10.0, 12.0])
    assert json.loads(caries.extra) == {"note": "x", "source_annotation_id": "old1"}
    assert caries.record == ("row 0" if kind == "parquet" else "line 1")
    assert (tooth.category, tooth.fdi, tooth.score) == (Category.TOOTH, 36, None)
    assert (lesion.category, lesion.lesion_type) == (Category.PERIAPICAL_LESION, "abscess")
    assert reasons(batch) == {"unknown_class": 1}
    assert batch.annotations_seen == 4  # the image-only row of b.png is not an annotation


def test_manifest_rows_without_file_name_and_missing_manifest(tmp_path: Path, write_image, ingest):
    root = tmp_path / "m"
    write_image(root / "a.png", (40, 40))
    (root / "manifest.jsonl").write_text(
        json.dumps({"category": "caries", "box": [1, 1, 3, 3]}) + "\n" + json.dumps(ROWS[1]) + "\n"
    )
    batch = ingest(root, "manifest")
    assert reasons(batch) == {"malformed_record": 1} and len(batch.annotations) == 1
    assert reasons(ingest(tmp_path, "manifest", annotations="nope.parquet")) == {"missing_annotations": 1}


# --------------------------------------------------------------------------- DENTEX (hand-made)


def dentex_doc(anns: list[dict]) -> dict:
    cats = lambda names: [{"id": i, "name": n, "supercategory": n} for i, n in enumerate(names)]  # noqa: E731
    return {
        "images": [{"id": 1, "file_name": "x.png", "width": 100, "height": 50}],
        "annotations": anns,
        "categories_1": cats("1234"),
        "categories_2": cats("12345678"),
        "categories_3": cats(["Impacted", "Caries", "Periapical Lesion", "Deep Caries"]),
    }


def test_dentex_reader_pairs_and_problems(tmp_path: Path, write_image, ingest):
    root = tmp_path / "d"
    write_image(root / "images" / "x.png", (100, 50))
    def ann(i, q, p, d, bbox=(5, 5, 10, 10)):
        return {
            "id": i,
            "image_id": 1,
            "bbox": list(bbox),
            "category_id_1": q,
            "category_id_2": p,
            "category_id_3": d,
        }
    anns = [ann(1, 0, 7, 0), ann(2, 3, 0, 2), ann(3, 9, 0, 1), ann(4, 1, 2, 8), ann(5, 2, 5, 3, (90, 5, 20, 10))]
    (root / "annotations.json").write_text(json.dumps(dentex_doc(anns)))
    batch = ingest(root, "dentex", annotations="annotations.json")
    got = [(a.record, a.category.value, a.fdi) for a in batch.annotations]
    assert got == [
        ("annotations[0]#tooth", "tooth", 18), ("annotations[0]#diagnosis", "impacted_tooth", 18),
        ("annotations[1]#tooth", "tooth", 41), ("annotations[1]#diagnosis", "periapical_lesion", 41),
        ("annotations[3]#tooth", "tooth", 23),
    ]
    # quadrant id 9 does not exist (both rejected), diagnosis id 8 does not exist, box 5 leaves the image
    assert reasons(batch) == {"unknown_class": 3, "box_out_of_bounds": 2}
    parsed = parse_dentex(dentex_doc(anns))
    assert [p.fdi for p in parsed] == [18, 41, None, 23, 36]
    assert parsed[4].category == Category.DEEP_CARIES and parsed[2].category == Category.CARIES
