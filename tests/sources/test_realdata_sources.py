"""Issue item 9: every real sample under shared/realdata goes through its reader.

The figures asserted are facts of the shared files (counted by hand or by an independent
computation in the test), so a reader that drops, doubles or mis-numbers anything fails here.
The whole module is skipped, with its reason, only when the realdata folder is absent.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmoral_pipeline.config import PanoramicLimits
from mmoral_pipeline.domain import fdi as fdi_rules
from mmoral_pipeline.domain.geometry import iou
from mmoral_pipeline.domain.records import RejectReason
from mmoral_pipeline.domain.taxonomy import Category
from mmoral_pipeline.sources.dentex import DEFAULT_DENTEX_FILE, parse_dentex
from mmoral_pipeline.sources.tufts import parse_tufts

from .conftest import reasons

XRAY_YOLO_CLASSES = {1: "filling", 2: "implant", 3: "root canal treatment"}  # README observation; 0 unknown


@pytest.fixture()
def ingest(ingest):
    """Real data is read with the production OPG-shape limits (every real OPG must pass them)."""
    return functools.partial(ingest, panoramic=PanoramicLimits())


def teeth_of(batch, image_id: str) -> dict[int, list[float]]:
    return {a.fdi: a.box for a in batch.annotations if a.image_id == image_id and a.category == Category.TOOTH}


def wrong_half_share(batch, quadrants: tuple[int, ...]) -> float:
    """Share of tooth boxes in `quadrants` whose centre lies on the other half than FDI says."""
    width = {i.image_id: i.width for i in batch.images}
    judged = wrong = 0
    for a in batch.annotations:
        if a.category != Category.TOOTH or fdi_rules.quadrant(a.fdi) not in quadrants:
            continue
        judged += 1
        in_left = (a.box[0] + a.box[2]) / 2 < width[a.image_id] / 2
        wrong += in_left != (fdi_rules.image_half(a.fdi) == "left")
    assert judged > 0
    return wrong / judged


# --------------------------------------------------------------------------- AKUDENTAL


@pytest.fixture()
def akudental_labelme(realdata: Path, ingest):
    return ingest(realdata / "akudental_labelme", "labelme", name="aku_lm")


def test_akudental_labelme(akudental_labelme, realdata: Path):
    batch = akudental_labelme
    assert reasons(batch) == {}
    assert len(batch.images) == 5 and len(batch.annotations) == 174
    teeth = {i.image_id: len(teeth_of(batch, i.image_id)) for i in batch.images}
    # image 25 really has 23 numbered teeth (plus a bridge and six fillings)
    assert teeth == {"aku_lm-1": 31, "aku_lm-10": 32, "aku_lm-25": 23, "aku_lm-5": 32, "aku_lm-6": 31}
    others = Counter(a.category for a in batch.annotations if a.category != Category.TOOTH)
    assert others == {Category.FILLING: 22, Category.BRIDGE: 3}
    assert all(a.polygon and len(a.polygon) >= 6 for a in batch.annotations)
    # the embedded JPEG is extracted byte for byte: hash of the decoded imageData
    doc = json.loads((realdata / "akudental_labelme" / "5.json").read_text())
    raw = base64.b64decode(doc["imageData"])
    (img5,) = [i for i in batch.images if i.image_id == "aku_lm-5"]
    assert img5.sha256 == hashlib.sha256(raw).hexdigest() and img5.bytes == len(raw)
    assert (img5.width, img5.height) == (doc["imageWidth"], doc["imageHeight"]) == (2776, 1480)
    assert Path(img5.path).read_bytes() == raw and img5.file_name == "5.json#imageData"


def test_akudental_fdi_sides(akudental_labelme):
    # Upper jaw: quadrant 1 on the image's left, 2 on the right, as FDI says for an OPG.
    assert wrong_half_share(akudental_labelme, (1, 2)) <= 0.05
    # Lower jaw: AKUDENTAL's quadrant 3/4 labels sit on the opposite halves (mirrored lower
    # numbering in the source). The reader keeps the labels as given; the side check flags them.
    assert wrong_half_share(akudental_labelme, (3, 4)) >= 0.9


def test_akudental_yolo_without_images_is_all_image_missing(realdata: Path, ingest):
    batch = ingest(realdata / "akudental_yolo", "yolo", options={"labels": ".", "dataset_yaml": "dataset.yaml"})
    assert batch.images_seen == 5 and batch.annotations_seen == 174
    assert reasons(batch, "image") == {"image_missing": 5} and reasons(batch, "annotation") == {"image_missing": 174}


def test_akudental_yolo_with_the_labelme_images_matches_labelme(
    akudental_labelme, realdata: Path, tmp_path: Path, ingest
):
    images = tmp_path / "aku_images"
    images.mkdir()
    for im in akudental_labelme.images:  # the YOLO labels' images are the labelme-embedded ones
        shutil.copy(im.path, images / (im.file_name.split(".")[0] + ".jpg"))
    batch = ingest(
        realdata / "akudental_yolo", "yolo", name="aku_yolo", images=str(images),
        options={"labels": ".", "dataset_yaml": "dataset.yaml"},
    )
    assert reasons(batch) == {} and len(batch.annotations) == 174
    for im in batch.images:
        stem = im.image_id.split("-")[-1]
        yolo_teeth, lm_teeth = teeth_of(batch, im.image_id), teeth_of(akudental_labelme, f"aku_lm-{stem}")
        assert set(yolo_teeth) == set(lm_teeth)
        assert min(iou(yolo_teeth[k], lm_teeth[k]) for k in yolo_teeth) > 0.95
        # YOLO class 33 'Filling - Crown' marks the objects labelme calls 'Filling - Filling': both unify to filling
        yolo_fill = [a.box for a in batch.annotations if a.image_id == im.image_id and a.category == Category.FILLING]
        fillings = [
            a.box
            for a in akudental_labelme.annotations
            if a.image_id == f"aku_lm-{stem}" and a.category == Category.FILLING
        ]
        assert len(yolo_fill) == len(fillings) and all(max(iou(c, f) for f in fillings) > 0.9 for c in yolo_fill)
    yolo_cats = Counter(a.category for a in batch.annotations if a.category != Category.TOOTH)
    assert yolo_cats == {Category.FILLING: 22, Category.BRIDGE: 3}


# --------------------------------------------------------------------------- DENTEX


@pytest.fixture(scope="module")
def dentex_doc(realdata: Path) -> dict:
    return json.loads((realdata / "dentex" / DEFAULT_DENTEX_FILE).read_text())


def test_parse_dentex_full_file(dentex_doc: dict):
    parsed = parse_dentex(dentex_doc)
    assert len(parsed) == 3529 == len(dentex_doc["annotations"])
    assert all(p.fdi is not None and fdi_rules.is_valid_fdi(p.fdi) for p in parsed)
    raw = dentex_doc["annotations"]
    assert all(
        p.fdi == 48 for p, a in zip(parsed, raw, strict=False) if (a["category_id_1"], a["category_id_2"]) == (3, 7)
    )
    assert (
        sum(p.fdi == 48 for p in parsed) == sum((a["category_id_1"], a["category_id_2"]) == (3, 7) for a in raw) == 250
    )
    names = {c["id"]: c["name"] for c in dentex_doc["categories_3"]}
    expected = {
        "Impacted": Category.IMPACTED_TOOTH,
        "Caries": Category.CARIES,
        "Periapical Lesion": Category.PERIAPICAL_LESION,
        "Deep Caries": Category.DEEP_CARIES,
    }
    assert all(p.category == expected[names[a["category_id_3"]]] for p, a in zip(parsed, raw, strict=False))
    assert Counter(p.category for p in parsed) == {
        Category.CARIES: 2189,
        Category.IMPACTED_TOOTH: 604,
        Category.DEEP_CARIES: 578,
        Category.PERIAPICAL_LESION: 158,
    }
    # boxes are xywh -> xyxy
    assert parsed[0].box == [542.0, 698.0, 762.0, 969.0]
    # FDI sides: quadrants 1/4 on the image's left half
    width = {i["id"]: i["width"] for i in dentex_doc["images"]}
    wrong = sum(
        ((p.box[0] + p.box[2]) / 2 < width[p.image_id] / 2) != (fdi_rules.image_half(p.fdi) == "left") for p in parsed
    )
    assert wrong / len(parsed) < 0.02


def test_dentex_reader_without_images(realdata: Path, ingest):
    batch = ingest(realdata / "dentex", "dentex", check_shards=False)
    assert batch.images_seen == 705 and batch.annotations_seen == 2 * 3529
    assert reasons(batch, "image") == {"image_missing": 705}
    assert reasons(batch, "annotation") == {"image_missing": 7058}


def test_dentex_reader_with_blank_images_emits_tooth_and_diagnosis(dentex_doc: dict, tmp_path: Path, ingest):
    root = tmp_path / "dentex"
    keep = dentex_doc["images"][:3]
    for im in keep:
        (root / "images").mkdir(parents=True, exist_ok=True)
        Image.new("L", (im["width"], im["height"])).save(root / "images" / im["file_name"])
    ids = {im["id"] for im in keep}
    doc = dict(dentex_doc, images=keep, annotations=[a for a in dentex_doc["annotations"] if a["image_id"] in ids])
    (root / DEFAULT_DENTEX_FILE).write_text(json.dumps(doc))
    batch = ingest(root, "dentex")
    n = len(doc["annotations"])
    assert n > 0 and len(batch.annotations) == 2 * n and reasons(batch) == {}
    teeth = [a for a in batch.annotations if a.record.endswith("#tooth")]
    findings = [a for a in batch.annotations if a.record.endswith("#diagnosis")]
    assert len(teeth) == len(findings) == n
    for t, f in zip(teeth, findings, strict=False):
        assert t.category == Category.TOOTH and f.category != Category.TOOTH
        assert (t.box, t.fdi, t.image_id) == (f.box, f.fdi, f.image_id)


# --------------------------------------------------------------------------- xray_yolo


def test_xray_yolo(realdata: Path, ingest):
    batch = ingest(realdata / "xray_yolo", "yolo", options={"class_map": XRAY_YOLO_CLASSES})
    assert [(i.width, i.height) for i in batch.images] == [(2914, 1397), (2938, 1399), (2387, 1121)]
    lines = sum(len(p.read_text().split("\n")) for p in (realdata / "xray_yolo" / "labels").glob("*.txt"))
    assert batch.annotations_seen == lines == 21
    assert Counter(a.category for a in batch.annotations) == {
        Category.ROOT_CANAL_TREATMENT: 9, Category.FILLING: 7, Category.IMPLANT: 4,
    }
    (rej,) = batch.rejections  # the single class-0 line: not in the configured map
    assert rej.reason == RejectReason.UNKNOWN_CLASS and "class id 0" in rej.message


def test_yolo_without_class_map_is_a_configuration_error(realdata: Path):
    from mmoral_pipeline.sources import list_source_items, read_source

    from .conftest import make_sources

    spec, sf = make_sources(realdata / "xray_yolo", "yolo", name="xray_yolo")
    with pytest.raises(ValueError, match="xray_yolo"):
        list_source_items(spec, sf)
    with pytest.raises(ValueError, match="class_map"):
        read_source(spec, sf)


# --------------------------------------------------------------------------- UFBA, DC1000


def test_ufba_masks(realdata: Path, ingest):
    batch = ingest(realdata / "ufba_masks", "ufba_masks", name="ufba")
    assert reasons(batch) == {}
    per_image = {i.image_id: sorted(teeth_of(batch, i.image_id)) for i in batch.images}
    assert per_image["ufba-cate1-00002"] == sorted(fdi_rules.PERMANENT_TEETH)
    assert per_image["ufba-cate5-00001"] == [31, 32, 33, 34]
    assert all(i.width == i.height == 512 for i in batch.images)
    assert all(0 <= a.box[0] < a.box[2] <= 512 and 0 <= a.box[1] < a.box[3] <= 512 for a in batch.annotations)
    assert wrong_half_share(batch, (1, 2, 3, 4)) <= 0.05  # one incisor at the midline at most
    # box = pixel extent of the mask, checked against the mask file itself
    mask = np.asarray(Image.open(realdata / "ufba_masks" / "masks" / "cate5-00001" / "cate5-00001_31.ome.tiff"))
    ys, xs = np.nonzero(mask)
    (t31,) = [a for a in batch.annotations if a.fdi == 31 and a.image_id == "ufba-cate5-00001"]
    assert t31.box == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    assert json.loads(t31.extra)["mask_area"] == len(xs)


def test_dc1000_caries(realdata: Path, ingest):
    batch = ingest(realdata / "dc1000_caries", "dc1000_masks", name="dc1000")
    assert reasons(batch) == {}
    for im in batch.images:
        stem = Path(im.file_name).stem
        label = np.asarray(Image.open(realdata / "dc1000_caries" / "labels" / f"{stem}.png"))
        colors = np.asarray(Image.open(realdata / "dc1000_caries" / "colors" / f"{stem}.png"))
        anns = [a for a in batch.annotations if a.image_id == im.image_id]
        extras = [json.loads(a.extra) for a in anns]
        assert all(a.category == Category.CARIES for a in anns)
        assert sum(e["mask_area"] for e in extras) == int((label > 0).sum())
        assert {e["depth"] for e in extras} <= set(np.unique(colors[colors > 0]).tolist()) <= {102, 153, 255}
        for a in anns:  # every component box holds caries pixels on all four edges
            x1, y1, x2, y2 = (int(v) for v in a.box)
            crop = label[y1:y2, x1:x2] > 0
            assert crop[0].any() and crop[-1].any() and crop[:, 0].any() and crop[:, -1].any()
    assert Counter(a.image_id for a in batch.annotations) == {"dc1000-images_306": 3, "dc1000-images_350": 10}


# --------------------------------------------------------------------------- Tufts


def test_parse_tufts_demo_records(realdata: Path):
    bbox_doc = json.loads((realdata / "tufts_demo" / "tufts_bbox_demo.json").read_text())
    poly_doc = json.loads((realdata / "tufts_demo" / "tufts_polygon_demo.json").read_text())
    ((ext, objs),) = parse_tufts(bbox_doc, "yxyx")
    assert ext == "986.jpg" and [o.label.fdi for o in objs] == [18, 17]
    t18, t17 = (o.box for o in objs)
    # only y-first order makes these molars taller than wide and puts 17 medial (right) of 18
    assert all(b[3] - b[1] > b[2] - b[0] for b in (t18, t17)) and t17[0] > t18[0]
    ((_, xyxy_objs),) = parse_tufts(bbox_doc, "xyxy")
    assert all(b.box[3] - b.box[1] < b.box[2] - b.box[0] for b in xyxy_objs)
    polys = parse_tufts(poly_doc, "yxyx")
    assert [(e, [o.label.fdi for o in os_]) for e, os_ in polys] == [("986.jpg", [18, 48]), ("987.jpg", [])]
    assert polys[0][1][0].extra == {"polygon_parts": 2} and polys[0][1][0].polygon is None  # parts under 3 points


def test_tufts_reader(realdata: Path, tmp_path: Path, ingest):
    missing = ingest(
        realdata / "tufts_demo", "tufts", annotations="tufts_polygon_demo.json", options={"box_order": "yxyx"}
    )
    assert reasons(missing) == {"image_missing": 4}  # 2 images + 2 objects
    root = tmp_path / "tufts"
    (root / "images").mkdir(parents=True)
    shutil.copy(realdata / "tufts_demo" / "tufts_bbox_demo.json", root / "teeth_bbox.json")
    Image.new("L", (1615, 840)).save(root / "images" / "986.jpg")
    batch = ingest(root, "tufts", options={"box_order": "yxyx"})
    assert [(a.fdi, a.box) for a in batch.annotations] == [
        (18, [416.0, 381.0, 484.0, 500.0]),
        (17, [472.0, 376.0, 557.0, 506.0]),
    ]
    assert wrong_half_share(batch, (1,)) == 0.0
