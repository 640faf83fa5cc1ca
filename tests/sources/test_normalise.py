"""Odd images from every reader are normalised the same way (sources/base.py `normalise_image`): 16-bit PNG/TIFF
windowed to 8 bits, palette, CMYK, alpha, EXIF-rotated JPEGs (boxes read in the displayed frame)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmoral_pipeline.sources import read_source
from mmoral_pipeline.sources.base import normalise_image, to_8bit

from .conftest import balanced, make_sources, reasons

W, H = 200, 100


def ramp(max_value: int, dtype=np.uint16) -> np.ndarray:
    row = np.rint(np.arange(W) * max_value / (W - 1)).astype(dtype)
    return np.tile(row, (H, 1))


def coco_source(root: Path, names: list[str], boxes: list[list[float]] | None = None) -> None:
    images = [{"id": i, "file_name": n} for i, n in enumerate(names)]
    anns = [
        {"id": i, "image_id": i, "category_id": 1, "bbox": b}
        for i, b in enumerate(boxes or [[1, 1, 10, 10]] * len(names))
    ]
    (root / "annotations.json").write_text(
        json.dumps({"images": images, "annotations": anns, "categories": [{"id": 1, "name": "caries"}]})
    )


def read_coco(root: Path):
    s, sf = make_sources(root, "coco")
    batch = read_source(s, sf)
    balanced(batch)
    return batch


def pixels(path: str) -> np.ndarray:
    with Image.open(path) as im:
        assert im.mode in ("L", "RGB")
        return np.asarray(im)


def write_odd_images(folder: Path) -> dict[str, np.ndarray]:
    """One file per odd case; returns name -> the 8-bit pixels the model should see."""
    folder.mkdir(parents=True, exist_ok=True)
    expected: dict[str, np.ndarray] = {}
    data12 = ramp(4095)  # 12-bit data in a 16-bit container: /256 would leave it almost black
    Image.fromarray(data12).save(folder / "png16.png")
    expected["png16.png"] = to_8bit(data12, 0, 4095)
    data16 = ramp(60000) + 1000
    Image.fromarray(data16).save(folder / "tiff16.tif")
    expected["tiff16.tif"] = to_8bit(data16, 1000, 61000)
    grey = ramp(255, np.uint8)
    Image.fromarray(grey).convert("P").save(folder / "palette.png")  # a grey palette
    expected["palette.png"] = grey
    rgb = np.stack([grey, 255 - grey, np.full_like(grey, 90)], axis=-1)
    Image.fromarray(rgb).quantize(64).save(folder / "palette_colour.png")
    with Image.open(folder / "palette_colour.png") as im:
        expected["palette_colour.png"] = np.asarray(im.convert("RGB"))
    Image.fromarray(rgb).convert("CMYK").save(folder / "cmyk.jpg", quality=98)
    expected["cmyk.jpg"] = rgb
    Image.fromarray(grey).convert("LA").save(folder / "alpha.png")
    expected["alpha.png"] = grey
    return expected


def test_odd_images_become_8bit_grey_or_rgb(tmp_path: Path) -> None:
    root = tmp_path / "src"
    expected = write_odd_images(root / "images")
    Image.fromarray(ramp(255, np.uint8)).save(root / "images" / "plain.png")
    coco_source(root, [*expected, "plain.png"])
    batch = read_coco(root)
    by_name = {i.file_name: i for i in batch.images}
    assert len(by_name) == len(expected) + 1 and not batch.rejections
    plain = by_name.pop("images/plain.png")
    assert plain.model_image_path == plain.path and plain.normalisation is None  # nothing to do: no copy
    for name, want in expected.items():
        rec = by_name[f"images/{name}"]
        assert rec.model_image_path != rec.path and rec.normalisation, name
        got = pixels(rec.model_image_path).astype(int)
        tolerance = 6 if name.endswith(".jpg") else 0
        assert got.shape == want.shape and np.abs(got - want.astype(int)).max() <= tolerance, name
    assert (
        by_name["images/png16.png"].mode.startswith("I")
        and "0..4095 -> 0..255" in by_name["images/png16.png"].normalisation
    )
    assert (
        by_name["images/cmyk.jpg"].mode == "CMYK"
        and by_name["images/palette.png"].normalisation == "P (grey palette) -> L"
    )


def test_every_reader_normalises_the_same_way(tmp_path: Path) -> None:
    """The 16-bit PNG through five readers: one model image (content-addressed, written once)."""
    data = ramp(4095)
    paths = set()
    # coco
    coco = tmp_path / "coco"
    (coco / "images").mkdir(parents=True)
    Image.fromarray(data).save(coco / "images" / "x.png")
    coco_source(coco, ["x.png"])
    paths.add(read_coco(coco).images[0].model_image_path)
    # yolo
    yolo = tmp_path / "yolo"
    (yolo / "images").mkdir(parents=True)
    (yolo / "labels").mkdir()
    Image.fromarray(data).save(yolo / "images" / "x.png")
    (yolo / "labels" / "x.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    # labelme (imagePath), manifest, dc1000 masks
    lm = tmp_path / "labelme"
    lm.mkdir()
    Image.fromarray(data).save(lm / "x.png")
    (lm / "x.json").write_text(json.dumps({"shapes": [], "imagePath": "x.png"}))
    man = tmp_path / "manifest"
    man.mkdir()
    Image.fromarray(data).save(man / "x.png")
    (man / "manifest.jsonl").write_text(json.dumps({"file_name": "x.png"}) + "\n")
    dc = tmp_path / "dc1000"
    (dc / "images").mkdir(parents=True)
    Image.fromarray(data).save(dc / "images" / "x.png")
    for root, fmt, spec in (
        (yolo, "yolo", {"options": {"class_map": {0: "caries"}}}),
        (lm, "labelme", {}),
        (man, "manifest", {}),
        (dc, "dc1000_masks", {}),
    ):
        s, sf = make_sources(root, fmt, **spec)
        batch = read_source(s, sf)
        balanced(batch)
        assert len(batch.images) == 1, fmt
        paths.add(batch.images[0].model_image_path)
    assert len(paths) == 1
    assert (pixels(paths.pop()) == to_8bit(data, 0, 4095)).all()


def _exif_rotated_jpeg(path: Path) -> np.ndarray:
    """A 200x100 JPEG (as stored) with EXIF orientation 6 (shown rotated 90 degrees clockwise, 100x200),
    a bright block stored at x 20..60, y 10..40; returns the stored pixels."""
    stored = np.full((H, W), 20, np.uint8)
    stored[10:40, 20:60] = 235
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(path, quality=95, exif=exif)
    return stored


def test_exif_rotation_is_applied_and_boxes_are_read_in_the_displayed_frame(tmp_path: Path) -> None:
    root = tmp_path / "src"
    (root / "images").mkdir(parents=True)
    stored = _exif_rotated_jpeg(root / "images" / "rotated.jpg")
    # displayed (rotated clockwise): stored (x, y) -> (H - 1 - y, x): the block is at x 60..90, y 20..60
    block = [60, 20, 30, 40]  # COCO xywh in the displayed frame
    below_stored_height = [10, 150, 20, 30]  # y up to 180: only inside the displayed 100x200 frame
    coco_source(root, ["rotated.jpg", "rotated.jpg"][:1], [block])
    doc = json.loads((root / "annotations.json").read_text())
    doc["annotations"].append({"id": 1, "image_id": 0, "category_id": 1, "bbox": below_stored_height})
    (root / "annotations.json").write_text(json.dumps(doc))
    batch = read_coco(root)
    rec = batch.images[0]
    assert (rec.width, rec.height) == (H, W) and rec.normalisation == "EXIF orientation 6 applied"
    assert len(batch.annotations) == 2 and not reasons(batch)
    px = pixels(rec.model_image_path).astype(int)
    assert px.shape == (W, H)
    assert np.abs(px - np.rot90(stored, k=-1).astype(int)).max() <= 12  # JPEG noise at the block's edges
    x1, y1, x2, y2 = (int(v) for v in batch.annotations[0].box)
    assert px[y1 + 2 : y2 - 2, x1 + 2 : x2 - 2].min() > 200  # the box sits on the block
    assert px.mean() < 80


def test_exif_rotation_rejects_a_box_that_only_fits_the_stored_frame(tmp_path: Path) -> None:
    root = tmp_path / "src"
    (root / "images").mkdir(parents=True)
    _exif_rotated_jpeg(root / "images" / "rotated.jpg")
    coco_source(root, ["rotated.jpg"], [[150, 10, 40, 40]])  # x up to 190: inside 200x100, outside 100x200
    batch = read_coco(root)
    assert reasons(batch) == {"box_out_of_bounds": 1}


@pytest.mark.parametrize("mode", ["1", "RGBA", "YCbCr", "I", "F"])
def test_normalise_image_covers_the_other_modes(mode: str) -> None:
    base = Image.fromarray(ramp(255, np.uint8))
    im = base.convert(mode)
    out, steps = normalise_image(im)
    assert out.mode in ("L", "RGB") and out.size == (W, H) and steps
    assert normalise_image(out)[1] == []  # idempotent
