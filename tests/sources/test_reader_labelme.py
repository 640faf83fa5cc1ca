"""labelme reader: embedded images, shapes, labels, scores, attributes."""

from __future__ import annotations

import base64
import hashlib
import io
import json
from pathlib import Path

from PIL import Image

from mmoral_pipeline.domain.taxonomy import Category
from mmoral_pipeline.sources.labelme import description_attrs

from .conftest import reasons


def embedded_jpeg(size=(60, 40)) -> tuple[str, bytes]:
    buf = io.BytesIO()
    Image.new("RGB", size, (90, 90, 90)).save(buf, format="JPEG")
    return base64.b64encode(buf.getvalue()).decode(), buf.getvalue()


def test_embedded_image_is_extracted_once_under_mmoral_home(tmp_path: Path, mmoral_home: Path, ingest):
    root = tmp_path / "lm"
    root.mkdir()
    data, raw = embedded_jpeg()
    shapes = [
        {
            "label": "11 - Central Incisor",
            "points": [[10, 5], [20, 5], [20, 30], [10, 30]],
            "shape_type": "polygon",
            "group_id": None,
            "flags": {},
        },
        {"label": "Filling - Filling", "points": [[12, 6], [18, 12]], "shape_type": "rectangle", "score": 0.66},
        {"label": "Implant - Implant", "points": [[40, 20], [45, 20]], "shape_type": "circle", "description": "x"},
    ]
    (root / "x.json").write_text(
        json.dumps({"shapes": shapes, "imagePath": "x.jpg", "imageData": data, "imageHeight": 40, "imageWidth": 60})
    )
    batch = ingest(root, "labelme", name="lm")
    (img,) = batch.images
    digest = hashlib.sha256(raw).hexdigest()
    assert Path(img.path) == mmoral_home / "_extracted" / "lm" / f"{digest}.jpg"
    assert (img.sha256, img.bytes, img.width, img.height, img.file_name, img.image_id) == (
        digest,
        len(raw),
        60,
        40,
        "x.json#imageData",
        "lm-x",
    )
    tooth, filling, implant = batch.annotations
    assert (tooth.category, tooth.fdi, tooth.box, tooth.polygon) == (
        Category.TOOTH,
        11,
        [10.0, 5.0, 20.0, 30.0],
        [10.0, 5.0, 20.0, 5.0, 20.0, 30.0, 10.0, 30.0],
    )
    assert (filling.category, filling.score, filling.polygon, filling.box) == (
        Category.FILLING,
        0.66,
        None,
        [12.0, 6.0, 18.0, 12.0],
    )
    assert json.loads(filling.extra) == {"shape_type": "rectangle"}
    assert implant.category == Category.IMPLANT and implant.box == [35.0, 15.0, 45.0, 25.0]
    assert json.loads(implant.extra) == {"description": "x", "shape_type": "circle"}
    assert (tooth.source_file, tooth.record) == ("x.json", "shapes[0]")


def test_image_path_relative_to_the_json_folder(tmp_path: Path, write_image, ingest):
    root = tmp_path / "lm"
    write_image(root / "imgs" / "a.png", (30, 30))
    (root / "json").mkdir(parents=True)
    shape = {"label": "caries", "points": [[1, 1], [4, 4]], "shape_type": "rectangle"}
    (root / "json" / "a.json").write_text(json.dumps({"shapes": [shape], "imagePath": "..\\imgs\\a.png"}))
    batch = ingest(root, "labelme")
    assert [i.file_name for i in batch.images] == ["imgs/a.png"] and len(batch.annotations) == 1


def test_group_id_as_fdi_and_description_attributes(tmp_path: Path, write_image, ingest):
    root = tmp_path / "lm"
    write_image(root / "a.png", (50, 50))
    rect = lambda label, **kw: {"label": label, "points": [[1, 1], [9, 9]], "shape_type": "rectangle", **kw}  # noqa: E731
    shapes = [
        rect("periapical lesion", group_id=36, description="cyst"),
        rect("bone loss", group_id=None, description="lower"),
        rect("maxillary sinus", description="upper left"),
        rect("caries", group_id=3),  # not an FDI number: stays a group id
        rect("caries", fdi=47),
    ]
    (root / "a.json").write_text(json.dumps({"shapes": shapes, "imagePath": "a.png"}))
    plain = ingest(root, "labelme", check_shards=False)
    assert [a.fdi for a in plain.annotations] == [None, None, None, None, 47]
    batch = ingest(root, "labelme", options={"group_id_is_fdi": True})
    lesion, bone, sinus, caries, caries47 = batch.annotations
    assert (lesion.fdi, lesion.lesion_type) == (36, "cyst")
    assert json.loads(bone.extra)["region"] == "lower" and json.loads(sinus.extra)["side"] == "upper left"
    assert caries.fdi is None and json.loads(caries.extra)["group_id"] == 3
    assert caries47.fdi == 47
    assert description_attrs("periapical granuloma") == ("granuloma", {})
    assert description_attrs("see notes") == (None, {})


def test_bad_embedded_data_and_missing_image(tmp_path: Path, ingest):
    root = tmp_path / "lm"
    root.mkdir()
    shape = {"label": "crown", "points": [[1, 1], [4, 4]], "shape_type": "rectangle"}
    (root / "garbage.json").write_text(
        json.dumps({"shapes": [shape], "imageData": base64.b64encode(b"not an image").decode()})
    )
    (root / "nothing.json").write_text(json.dumps({"shapes": [shape, shape]}))
    (root / "gone.json").write_text(json.dumps({"shapes": [shape], "imagePath": "gone.png"}))
    batch = ingest(root, "labelme")
    assert reasons(batch, "image") == {"not_an_image": 1, "image_missing": 2}
    assert reasons(batch, "annotation") == {"image_rejected": 1, "image_missing": 3}


def test_unknown_and_invalid_labels(tmp_path: Path, write_image, ingest):
    root = tmp_path / "lm"
    write_image(root / "a.png", (50, 50))
    rect = lambda label: {"label": label, "points": [[1, 1], [9, 9]], "shape_type": "rectangle"}  # noqa: E731
    (root / "a.json").write_text(
        json.dumps(
            {
                "shapes": [rect("19 - Extra Molar"), rect("Pacifier"), rect("48 - Wisdom Tooth"), "oops"],
                "imagePath": "a.png",
            }
        )
    )
    batch = ingest(root, "labelme")
    assert [a.fdi for a in batch.annotations] == [48]
    assert reasons(batch) == {"invalid_tooth": 1, "unknown_class": 1, "malformed_record": 1}


def test_extract_dir_option(tmp_path: Path, ingest):
    root = tmp_path / "lm"
    root.mkdir()
    data, raw = embedded_jpeg((20, 20))
    (root / "e.json").write_text(json.dumps({"shapes": [], "imageData": data}))
    batch = ingest(root, "labelme", name="emb", options={"extract_dir": str(tmp_path / "cache")})
    (img,) = batch.images
    assert Path(img.path).parent == tmp_path / "cache" / "emb" and Path(img.path).read_bytes() == raw
