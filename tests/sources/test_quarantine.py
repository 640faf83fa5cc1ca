"""Issue item 8: every kind of bad input lands as a Rejection with the right reason, the batch
goes on (the good image next to it is still accepted) and the counts balance."""

from __future__ import annotations

import base64
import io
import json
import math
from pathlib import Path

import pytest
from PIL import Image

from mmoral_pipeline.domain.records import RejectReason

from .conftest import reasons
from .test_reader_coco import CATS, write_coco

GOOD = (40, 30)  # the good image: 1,200 pixels


def noisy_png(path: Path, size=(64, 48)) -> bytes:
    im = Image.effect_noise(size, 60)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())
    return buf.getvalue()


def coco_with_case(root: Path, write_image, case_file: str, *, case_anns: int = 2) -> None:
    """images/good.png (2 annotations) + a second image entry `case_file` with `case_anns` annotations."""
    write_image(root / "images" / "good.png", GOOD)
    images = [{"id": 1, "file_name": "good.png"}, {"id": 2, "file_name": case_file}]
    anns = [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 10, 10], "attributes": {"fdi": 11}},
        {"id": 2, "image_id": 1, "category_id": 5, "bbox": [2, 2, 5, 5]},
    ]
    anns += [{"id": 10 + k, "image_id": 2, "category_id": 1, "bbox": [1, 1, 5, 5]} for k in range(case_anns)]
    write_coco(root, images, anns)


def assert_good_survives(batch) -> None:
    assert [i.file_name for i in batch.images] == ["images/good.png"]
    assert len(batch.annotations) == 2


def _truncated(path: Path, write_image) -> None:
    data = noisy_png(path)
    path.write_bytes(data[: len(data) // 2])


def _not_an_image(path: Path, write_image) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("this is not a PNG, whatever the suffix says\n")


def _zero_bytes(path: Path, write_image) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")


def _too_large(path: Path, write_image) -> None:
    write_image(path, (100, 100))  # 10,000 pixels > the test limit of 5,000


@pytest.mark.parametrize(
    "make, reason",
    [
        (_truncated, RejectReason.IMAGE_CORRUPT),
        (_not_an_image, RejectReason.NOT_AN_IMAGE),
        (_zero_bytes, RejectReason.EMPTY_FILE),
        (_too_large, RejectReason.IMAGE_TOO_LARGE),
    ],
    ids=["truncated", "not_an_image", "zero_byte", "over_pixel_limit"],
)
def test_bad_image_file_is_quarantined_with_its_annotations(tmp_path: Path, write_image, ingest, make, reason):
    root = tmp_path / "src"
    coco_with_case(root, write_image, "bad.png", case_anns=3)
    make(root / "images" / "bad.png", write_image)
    batch = ingest(root, "coco", max_image_pixels=5_000)
    assert_good_survives(batch)
    assert reasons(batch, "image") == {reason.value: 1}
    assert reasons(batch, "annotation") == {"image_rejected": 3}
    assert batch.images_seen == 2 and batch.annotations_seen == 5


def test_annotation_pointing_to_a_missing_image(tmp_path: Path, write_image, ingest):
    root = tmp_path / "src"
    coco_with_case(root, write_image, "not_there.png", case_anns=2)
    doc = json.loads((root / "annotations.json").read_text())
    doc["annotations"].append({"id": 50, "image_id": 777, "category_id": 1, "bbox": [1, 1, 5, 5]})  # no such image id
    (root / "annotations.json").write_text(json.dumps(doc))
    batch = ingest(root, "coco")
    assert_good_survives(batch)
    assert reasons(batch, "image") == {"image_missing": 1}
    assert reasons(batch, "annotation") == {"image_missing": 3}


@pytest.mark.parametrize(
    "name", ["../outside.png", "/etc/hostname", "sub/../../outside.png"], ids=["dotdot", "absolute", "nested_dotdot"]
)
def test_file_name_escaping_the_source_folder(tmp_path: Path, write_image, ingest, name):
    root = tmp_path / "src"
    write_image(tmp_path / "src" / "outside.png", (10, 10))  # exists, but outside images/
    coco_with_case(root, write_image, name, case_anns=1)
    batch = ingest(root, "coco")
    assert_good_survives(batch)
    assert reasons(batch, "image") == {"path_escapes_source": 1}
    assert reasons(batch, "annotation") == {"image_rejected": 1}


def test_labelme_image_path_escaping_the_source_folder(tmp_path: Path, write_image, ingest):
    root = tmp_path / "lm"
    write_image(tmp_path / "secret.png", (10, 10))
    write_image(root / "ok.png", GOOD)
    shape = {"label": "tooth 11", "points": [[1, 1], [5, 5]], "shape_type": "rectangle"}
    (root / "ok.json").write_text(json.dumps({"shapes": [shape], "imagePath": "ok.png", "imageData": None}))
    (root / "evil.json").write_text(
        json.dumps({"shapes": [shape, shape], "imagePath": "../secret.png", "imageData": None})
    )
    batch = ingest(root, "labelme")
    assert len(batch.images) == 1 and len(batch.annotations) == 1
    assert reasons(batch) == {"path_escapes_source": 1, "image_rejected": 2}


@pytest.mark.parametrize(
    "bbox, reason",
    [
        ([35, 20, 20, 20], RejectReason.BOX_OUT_OF_BOUNDS),
        ([-10, 2, 5, 5], RejectReason.BOX_NEGATIVE),
        ([5, 5, 0, 8], RejectReason.BOX_ZERO_AREA),
        ([5, 5, -3, 8], RejectReason.BOX_ZERO_AREA),
        ([5, math.nan, 3, 3], RejectReason.BOX_NAN),
        ([5, 5, 3], RejectReason.BOX_MALFORMED),
        ("5,5,3,3", RejectReason.BOX_MALFORMED),
    ],
    ids=["out_of_bounds", "negative", "zero_area", "negative_width", "nan", "three_numbers", "string"],
)
def test_bad_box_is_rejected_and_the_rest_kept(tmp_path: Path, write_image, ingest, bbox, reason):
    root = tmp_path / "src"
    write_image(root / "images" / "good.png", GOOD)
    anns = [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 10, 10], "attributes": {"fdi": 11}},
        {"id": 2, "image_id": 1, "category_id": 5, "bbox": bbox},
        {"id": 3, "image_id": 1, "category_id": 5, "bbox": [2, 2, 5, 5]},
    ]
    (root / "annotations.json").write_text(
        json.dumps({"images": [{"id": 1, "file_name": "good.png"}], "annotations": anns, "categories": CATS})
    )
    batch = ingest(root, "coco")
    assert_good_survives(batch)
    (rej,) = batch.rejections
    assert (rej.reason, rej.kind, rej.record) == (reason, "annotation", "annotations[1]")


def test_bad_yolo_boxes(tmp_path: Path, write_image, ingest):
    root = tmp_path / "y"
    write_image(root / "images" / "a.png", (100, 50))
    (root / "labels").mkdir()
    (root / "labels" / "a.txt").write_text(
        "0 0.5 0.5 0.2 0.2\n"  # fine
        "0 0.95 0.5 0.3 0.2\n"  # out of bounds on the right
        "0 0.05 0.5 0.3 0.2\n"  # negative x1
        "0 0.5 0.5 0 0.2\n"  # zero width
        "0 nan 0.5 0.2 0.2\n"  # NaN
        "0 0.5 0.5\n"  # too few values
    )
    batch = ingest(root, "yolo", options={"class_map": {0: "filling"}})
    assert len(batch.annotations) == 1
    assert reasons(batch) == {
        "box_out_of_bounds": 1,
        "box_negative": 1,
        "box_zero_area": 1,
        "box_nan": 1,
        "malformed_record": 1,
    }


def test_unknown_class_name_coco(tmp_path: Path, write_image, ingest):
    root = tmp_path / "src"
    coco_with_case(root, write_image, "good2.png", case_anns=0)
    write_image(root / "images" / "good2.png", GOOD)
    doc = json.loads((root / "annotations.json").read_text())
    doc["annotations"].append({"id": 60, "image_id": 2, "category_id": 7, "bbox": [1, 1, 5, 5]})  # 'lesion-x'
    (root / "annotations.json").write_text(json.dumps(doc))
    batch = ingest(root, "coco")
    assert len(batch.images) == 2 and len(batch.annotations) == 2
    assert reasons(batch) == {"unknown_class": 1}
    assert "lesion-x" in batch.rejections[0].message


def test_unknown_class_id_yolo(tmp_path: Path, write_image, ingest):
    root = tmp_path / "y"
    write_image(root / "images" / "a.png", (100, 50))
    (root / "labels").mkdir()
    (root / "labels" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n7 0.5 0.5 0.2 0.2\n1 0.2 0.5 0.1 0.2\n")
    batch = ingest(root, "yolo", options={"class_map": {0: "filling", 1: "36"}})
    assert [(a.category.value, a.fdi) for a in batch.annotations] == [("filling", None), ("tooth", 36)]
    (rej,) = batch.rejections
    assert (rej.reason, rej.record) == (RejectReason.UNKNOWN_CLASS, "line 2")


def test_malformed_json_coco_document(tmp_path: Path, ingest):
    root = tmp_path / "src"
    root.mkdir()
    (root / "annotations.json").write_text('{"images": [{"id": 1, "file_name": "a.png"}], "annotations": [')
    batch = ingest(root, "coco")
    assert reasons(batch) == {"malformed_json": 1}
    assert batch.rejections[0].kind == "annotation"


def test_malformed_json_labelme_file_does_not_stop_the_others(tmp_path: Path, write_image, ingest):
    root = tmp_path / "lm"
    write_image(root / "ok.png", GOOD)
    shape = {"label": "Filling - Filling", "points": [[1, 1], [5, 1], [5, 5]], "shape_type": "polygon"}
    (root / "ok.json").write_text(json.dumps({"shapes": [shape], "imagePath": "ok.png"}))
    (root / "broken.json").write_text('{"shapes": [ {"label": ')
    (root / "list.json").write_text("[1, 2, 3]")
    batch = ingest(root, "labelme")
    assert len(batch.images) == 1 and len(batch.annotations) == 1
    assert reasons(batch, "image") == {"malformed_json": 2}


def test_malformed_jsonl_manifest_line(tmp_path: Path, write_image, ingest):
    root = tmp_path / "m"
    write_image(root / "a.png", GOOD)
    (root / "manifest.jsonl").write_text(
        json.dumps({"file_name": "a.png", "category": "caries", "box": [1, 1, 5, 5]}) + "\n{not json\n"
    )
    batch = ingest(root, "manifest")
    assert len(batch.annotations) == 1
    (rej,) = batch.rejections
    assert (rej.reason, rej.record, rej.kind) == (RejectReason.MALFORMED_JSON, "line 2", "annotation")


def test_duplicate_image_ids_in_coco(tmp_path: Path, write_image, ingest):
    root = tmp_path / "src"
    coco_with_case(root, write_image, "other.png", case_anns=1)
    write_image(root / "images" / "other.png", GOOD)
    doc = json.loads((root / "annotations.json").read_text())
    doc["images"][1]["id"] = 1  # same id as good.png: its annotations belong to good.png
    doc["annotations"][-1]["image_id"] = 1
    (root / "annotations.json").write_text(json.dumps(doc))
    batch = ingest(root, "coco")
    assert [i.file_name for i in batch.images] == ["images/good.png"]
    assert len(batch.annotations) == 3  # the first image keeps every annotation of its id
    (rej,) = batch.rejections
    assert (rej.reason, rej.kind, rej.record) == (RejectReason.DUPLICATE_ID, "image", "images[1]")


def test_duplicate_file_name_in_coco(tmp_path: Path, write_image, ingest):
    root = tmp_path / "src"
    coco_with_case(root, write_image, "good.png", case_anns=2)  # second entry, new id, same file
    batch = ingest(root, "coco")
    assert_good_survives(batch)
    assert reasons(batch) == {"duplicate_image": 1, "image_rejected": 2}


def test_duplicate_annotation_ids_in_coco(tmp_path: Path, write_image, ingest):
    root = tmp_path / "src"
    coco_with_case(root, write_image, "other.png", case_anns=2)
    write_image(root / "images" / "other.png", GOOD)
    doc = json.loads((root / "annotations.json").read_text())
    doc["annotations"][-1]["id"] = 1  # same id as the first annotation
    (root / "annotations.json").write_text(json.dumps(doc))
    batch = ingest(root, "coco")
    assert len(batch.images) == 2 and len(batch.annotations) == 3
    (rej,) = batch.rejections
    assert (rej.reason, rej.kind, rej.record) == (RejectReason.DUPLICATE_ID, "annotation", "annotations[3]")


def test_duplicate_file_in_labelme(tmp_path: Path, write_image, ingest):
    root = tmp_path / "lm"
    write_image(root / "img.png", GOOD)
    shape = {"label": "tooth 21", "points": [[1, 1], [5, 5]], "shape_type": "rectangle"}
    for name in ("a.json", "b.json"):  # two label files for one image
        (root / name).write_text(json.dumps({"shapes": [shape], "imagePath": "img.png"}))
    buf = io.BytesIO()
    Image.new("L", GOOD, 7).save(buf, format="PNG")
    embedded = base64.b64encode(buf.getvalue()).decode()
    for name in ("c.json", "d.json"):  # the same embedded image twice
        (root / name).write_text(json.dumps({"shapes": [shape, shape], "imagePath": "gone.png", "imageData": embedded}))
    batch = ingest(root, "labelme", check_shards=False)  # duplicates are judged within one batch
    assert sorted(i.file_name for i in batch.images) == ["c.json#imageData", "img.png"]
    assert reasons(batch) == {"duplicate_image": 2, "image_rejected": 3}
    assert {r.path.rsplit("/", 1)[-1] for r in batch.rejections if r.kind == "image"} == {"b.json", "d.json"}
