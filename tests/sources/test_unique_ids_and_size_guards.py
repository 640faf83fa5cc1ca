"""Unique ids by construction (id collisions, duplicate stems, shards, source names, patient keys) and a
size guard in front of every decoder (crafted TIFF / PNG headers, labelme with a huge embedded image)."""

from __future__ import annotations

import base64
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from mmoral_pipeline.batches import batch_for_partition, plan_batches, shard_items
from mmoral_pipeline.config import load_sources
from mmoral_pipeline.domain.records import IngestBatch, RejectReason
from mmoral_pipeline.sources import read_source

from .conftest import balanced, make_sources, reasons
from .test_reader_coco import write_coco

# --------------------------------------------------------------------------- crafted headers


def tiff_claiming(width: int, height: int, bits: int = 8, sample_format: int = 1) -> bytes:
    """A TIFF whose header declares width x height pixels but which holds 64 bytes of pixel data."""
    data_at = 8 + 2 + 12 * 10 + 4
    entries = [
        (256, 4, width), (257, 4, height), (258, 3, bits), (259, 3, 1), (262, 3, 1), (273, 4, data_at),
        (277, 3, 1), (278, 4, height), (279, 4, (width * height * bits // 8) % 2**32), (339, 3, sample_format),
    ]
    out = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", len(entries))
    for tag, typ, value in entries:
        out += struct.pack("<HHI", tag, typ, 1) + (
            struct.pack("<HH", value, 0) if typ == 3 else struct.pack("<I", value)
        )
    return out + struct.pack("<I", 0) + b"\x00" * 64


def png_bomb(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares width x height 8-bit pixels; a few rows of zeros compressed (a bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rows = zlib.compress(b"\x00" * (width + 1) * 4, 9)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


@pytest.fixture()
def no_decoding(monkeypatch):
    """Any pixel decode of a mask fails the test: the guards must refuse from the header alone."""
    import tifffile

    from mmoral_pipeline.sources import masks

    def refuse(*a, **k):
        raise AssertionError("a guarded mask reached the decoder")

    class NumpyWithoutAsarray:  # the mask reader's numpy, minus the call that decodes a Pillow image
        asarray = staticmethod(refuse)

        def __getattr__(self, name):
            return getattr(np, name)

    monkeypatch.setattr(tifffile, "imread", refuse)
    monkeypatch.setattr(masks, "np", NumpyWithoutAsarray())


# --------------------------------------------------------------------------- unique ids


def test_colliding_ids_are_rejected_with_their_own_reason(tmp_path: Path, write_image, ingest):
    root = tmp_path / "c"
    for name in ("a/b.png", "a_b.png", "a b.jpg", "other.png"):
        write_image(root / "images" / name, (40, 30))
    images = [{"id": i + 1, "file_name": n} for i, n in enumerate(("a/b.png", "a_b.png", "a b.jpg", "other.png"))]
    anns = [{"id": 10 + i, "image_id": i + 1, "category_id": 1, "bbox": [1, 1, 5, 5]} for i in range(4)]
    write_coco(root, images, anns)
    batch = ingest(root, "coco", images="images", check_shards=False)  # one item each could not see the collision
    assert sorted(i.image_id for i in batch.images) == ["src-images_a_b", "src-images_other"]
    assert reasons(batch, "image") == {"id_collision": 2}
    assert reasons(batch, "annotation") == {"image_rejected": 2}  # their annotations are quarantined too
    counts = balanced(batch)
    assert counts["images_seen"] == 4 and counts["images_rejected"] == 2
    msg = next(r.message for r in batch.rejections if r.reason == RejectReason.ID_COLLISION)
    assert "already taken by images/a b.jpg" in msg  # the first in name order keeps the id


def test_shards_keep_colliding_items_together(tmp_path: Path, write_image):
    assert shard_items(["a", "b", "c", "d", "e"], 2) == [["a", "b"], ["c", "d"], ["e"]]  # no collision: plain slices
    assert shard_items(["a b.jpg", "a/b.png", "a_b.png", "c.png", "d.png"], 1) == [
        ["a b.jpg", "a/b.png", "a_b.png"],
        ["c.png"],
        ["d.png"],
    ]
    assert shard_items([], 3) == [[]]

    root = tmp_path / "c"
    names = ("a b.jpg", "a/b.png", "a_b.png", "c.png")
    for name in names:
        write_image(root / "images" / name, (80, 40))  # OPG-shaped (2:1), or not_panoramic would take them
    write_coco(root, [{"id": i + 1, "file_name": n} for i, n in enumerate(names)], [])
    sources = tmp_path / "sources.yaml"
    sources.write_text(
        yaml.safe_dump({"sources": [{"name": "s", "format": "coco", "root": "c", "images": "images", "shard_size": 1}]})
    )
    sf = load_sources(sources)
    total = IngestBatch()
    for b in plan_batches(sf):
        assert batch_for_partition(sf, b.key).items == b.items
        total.extend(read_source(b.source, sf, b.items))
    assert reasons(total) == {"id_collision": 2}
    assert len({i.image_id for i in total.images}) == len(total.images) == 2


def test_source_names_that_could_collide_are_refused(tmp_path: Path):
    sources = tmp_path / "sources.yaml"
    sources.write_text(yaml.safe_dump({"sources": [{"name": "dentex", "format": "coco", "root": "a"},
                                                   {"name": "dentex-2", "format": "coco", "root": "b"}]}))
    with pytest.raises(ValueError, match="colliding image ids"):
        load_sources(sources)
    sources.write_text(yaml.safe_dump({"sources": [{"name": "dentex", "format": "coco", "root": "a"},
                                                   {"name": "dentex_2", "format": "coco", "root": "b"}]}))
    assert [s.name for s in load_sources(sources).sources] == ["dentex", "dentex_2"]


def test_yolo_duplicate_stem_is_a_rejection(tmp_path: Path, write_image, ingest):
    root = tmp_path / "y"
    write_image(root / "images" / "x.jpg", (100, 50), mode="RGB", color=(1, 2, 3))
    write_image(root / "images" / "x.png", (100, 50))
    write_image(root / "images" / "y.png", (100, 50))
    (root / "labels").mkdir(parents=True)
    (root / "labels" / "x.txt").write_text("0 0.5 0.5 0.1 0.2\n")
    batch = ingest(root, "yolo", options={"class_map": {"0": "caries"}})
    assert sorted(i.file_name for i in batch.images) == ["images/x.jpg", "images/y.png"]
    assert reasons(batch) == {"duplicate_stem": 1}
    rej = batch.rejections[0]
    assert rej.path.endswith("x.png") and rej.kind == "image" and "x.jpg" in rej.message
    assert balanced(batch)["images_seen"] == 3


def test_dc1000_duplicate_image_and_label_stems(tmp_path: Path, write_image, ingest):
    root = tmp_path / "d"
    write_image(root / "images" / "p.png", (40, 30))
    write_image(root / "images" / "p.jpg", (40, 30))
    mask = np.zeros((30, 40), dtype=np.uint8)
    mask[5:10, 5:10] = 255
    (root / "labels").mkdir(parents=True)
    Image.fromarray(mask).save(root / "labels" / "p.png")
    Image.fromarray(mask).save(root / "labels" / "p.tif")
    batch = ingest(root, "dc1000_masks")
    assert [i.file_name for i in batch.images] == ["images/p.jpg"]
    assert reasons(batch, "image") == {"duplicate_stem": 1} and reasons(batch, "annotation") == {"duplicate_stem": 1}
    assert len(batch.annotations) == 1  # the first label mask (p.png) was used


def test_patient_key_option_groups_a_patients_images(tmp_path: Path, write_image, ingest):
    root = tmp_path / "c"
    names = ("P001_2019.png", "P001_2021.png", "P002_2020.png", "unknown.png")
    for n in names:
        write_image(root / "images" / n, (40, 30))
    write_coco(root, [{"id": i + 1, "file_name": n} for i, n in enumerate(names)], [])
    batch = ingest(root, "coco", images="images", options={"patient_key": r"(?P<patient>P\d+)_"})
    assert {i.file_name: i.patient_key for i in batch.images} == {
        "images/P001_2019.png": "P001",
        "images/P001_2021.png": "P001",
        "images/P002_2020.png": "P002",
        "images/unknown.png": None,
    }
    assert all(i.phash and len(i.phash) == 64 for i in batch.images)


# --------------------------------------------------------------------------- size guards


def test_ufba_tiff_masks_are_guarded_by_their_header(tmp_path: Path, write_image, ingest, no_decoding):
    root = tmp_path / "u"
    write_image(root / "img.png", (64, 48))
    masks = root / "masks" / "img"
    masks.mkdir(parents=True)
    (masks / "img_11.ome.tiff").write_bytes(tiff_claiming(100_000, 100_000))  # Pillow: a bomb
    (masks / "img_12.ome.tiff").write_bytes(tiff_claiming(200, 200))  # under Pillow's limit, over ours
    (masks / "img_13.ome.tiff").write_bytes(
        tiff_claiming(30_000, 30_000, bits=64, sample_format=3)
    )  # float64: tifffile's header
    (masks / "img_14.ome.tiff").write_bytes(tiff_claiming(10, 10))  # fits the limit but not the image
    batch = ingest(root, "ufba_masks", max_image_pixels=5_000, check_shards=False)
    got = {r.record: (r.reason, r.message) for r in batch.rejections}
    assert {k: v[0] for k, v in got.items()} == {
        "img_11.ome.tiff": RejectReason.IMAGE_TOO_LARGE, "img_12.ome.tiff": RejectReason.IMAGE_TOO_LARGE,
        "img_13.ome.tiff": RejectReason.IMAGE_TOO_LARGE, "img_14.ome.tiff": RejectReason.MALFORMED_RECORD}
    assert "40000 values, over the limit of 5000" in got["img_12.ome.tiff"][1]
    assert "900000000 values" in got["img_13.ome.tiff"][1]
    assert "mask 10x10 differs from image 64x48" in got["img_14.ome.tiff"][1]
    assert [i.file_name for i in batch.images] == ["img.png"]


def test_png_bomb_as_mask_and_as_image(tmp_path: Path, write_image, ingest, no_decoding):
    root = tmp_path / "d"
    write_image(root / "images" / "ok.png", (40, 30))
    (root / "images" / "bomb.png").write_bytes(png_bomb(100_000, 100_000))
    (root / "labels").mkdir(parents=True)
    (root / "labels" / "ok.png").write_bytes(png_bomb(50_000, 50_000))
    batch = ingest(root, "dc1000_masks", check_shards=False)
    assert {(r.kind, r.reason) for r in batch.rejections} == {
        ("image", RejectReason.IMAGE_TOO_LARGE),
        ("annotation", RejectReason.IMAGE_TOO_LARGE),
    }
    assert [i.file_name for i in batch.images] == ["images/ok.png"] and not batch.annotations


def test_labelme_with_a_huge_embedded_image(tmp_path: Path, mmoral_home: Path, ingest):
    root = tmp_path / "lm"
    root.mkdir()
    shape = {"label": "caries", "points": [[1, 1], [5, 5]], "shape_type": "rectangle"}
    data = base64.b64encode(png_bomb(100_000, 100_000)).decode()
    (root / "bomb.json").write_text(json.dumps({"shapes": [shape], "imageData": data}))
    mid = base64.b64encode(png_bomb(300, 200)).decode()  # a valid header over the configured limit
    (root / "mid.json").write_text(json.dumps({"shapes": [shape, shape], "imageData": mid}))
    batch = ingest(root, "labelme", max_image_pixels=50_000)
    assert reasons(batch, "image") == {"image_too_large": 2}
    assert reasons(batch, "annotation") == {"image_rejected": 3}
    assert "300x200 = 60000 pixels exceeds the limit of 50000" in " ".join(r.message for r in batch.rejections)
    assert not (mmoral_home / "_extracted").exists()  # refused before anything was written or decoded


def test_labelme_file_too_large_is_refused_before_parsing(tmp_path: Path, ingest, monkeypatch):
    from mmoral_pipeline.sources import labelme

    root = tmp_path / "lm"
    root.mkdir()
    (root / "big.json").write_text(json.dumps({"shapes": [], "imageData": "A" * 4000}))
    monkeypatch.setattr(labelme, "max_document_bytes", lambda max_pixels: 1_000)
    monkeypatch.setattr(labelme, "json", None)  # any parse attempt would fail on None.loads
    batch = ingest(root, "labelme")
    assert reasons(batch) == {"image_too_large": 1}


def test_document_limit_follows_the_pixel_limit():
    from mmoral_pipeline.sources.labelme import max_document_bytes

    assert max_document_bytes(120_000_000) > 120_000_000 * 8  # a legitimate full-size OPG always fits
    _, sf = make_sources(Path("."), "labelme", max_image_pixels=1000)
    assert max_document_bytes(sf.max_image_pixels) < 20 << 20
