"""DICOM sources: pixels through modality LUT, window and MONOCHROME1 inversion to 8 bits; quarantine; patient key;
compressed transfer syntaxes; annotations keyed by SOP Instance UID or file name in several formats."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
import yaml
from PIL import Image
from pydicom.uid import (
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

from mmoral_pipeline.sources import read_source
from mmoral_pipeline.sources.dicom import PATIENT_SALT_ENV, PatientSaltMissing, patient_key

from .conftest import balanced, make_sources, reasons

W, H = 400, 200  # panoramic aspect


@pytest.fixture(autouse=True)
def _salt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PATIENT_SALT_ENV, "test-salt-1")


def ramp12() -> np.ndarray:
    """12-bit data: a horizontal ramp 0..4095 (column x has value round(x * 4095 / (W - 1)))."""
    row = np.rint(np.arange(W) * 4095 / (W - 1)).astype(np.uint16)
    return np.tile(row, (H, 1))


def model_pixels(batch, i: int = 0) -> np.ndarray:
    rec = batch.images[i]
    with Image.open(rec.model_image_path) as im:
        assert im.mode in ("L", "RGB") and im.size == (rec.width, rec.height)
        return np.asarray(im)


def read_one(tmp_path: Path, **spec) -> object:
    s, sf = make_sources(tmp_path / "src", "dicom", **spec)
    return balanced_batch(read_source(s, sf))


def balanced_batch(batch):
    balanced(batch)
    return batch


def test_12bit_window_maps_onto_8bit_and_the_original_is_kept(tmp_path: Path, write_dicom) -> None:
    dcm = write_dicom(tmp_path / "src" / "scan.dcm", ramp12(), bits_stored=12, window=(1000, 501))
    batch = read_one(tmp_path)
    rec = batch.images[0]
    assert rec.path == str(dcm) and rec.file_name == "scan.dcm" and (rec.width, rec.height) == (W, H)
    assert rec.mode == "DICOM MONOCHROME2 12-bit" and "window c=1000 w=501" in rec.normalisation
    assert (
        Path(rec.model_image_path).suffix == ".png" and Path(rec.model_image_path).parent.parent.name == "_model_images"
    )
    px = model_pixels(batch)[0].astype(int)
    values = ramp12()[0].astype(int)
    assert (px[values <= 750] == 0).all() and (px[values >= 1250] == 255).all()  # clipped outside the window
    inside = (values > 760) & (values < 1240)
    expected = ((values[inside] - 999.5) / 500 + 0.5) * 255  # DICOM LINEAR window onto 0..255
    assert np.abs(px[inside] - expected).max() <= 1
    assert (np.diff(px) >= 0).all()


def test_monochrome1_is_inverted_and_rescale_is_applied(tmp_path: Path, write_dicom) -> None:
    write_dicom(tmp_path / "src" / "a_mono2.dcm", ramp12(), bits_stored=12, window=(2048, 4096))
    write_dicom(
        tmp_path / "src" / "b_mono1.dcm", ramp12(), bits_stored=12, window=(2048, 4096), photometric="MONOCHROME1"
    )
    # rescale: stored v -> 2v - 1000; a window centred on the rescaled middle gives the same picture
    write_dicom(tmp_path / "src" / "c_rescaled.dcm", ramp12(), bits_stored=12, rescale=(2, -1000), window=(3095, 8191))
    batch = read_one(tmp_path)
    mono2, mono1, rescaled = (model_pixels(batch, i).astype(int) for i in range(3))
    assert mono2[0, 0] == 0 and mono2[0, -1] == 255
    assert (mono1 == 255 - mono2).all()  # MONOCHROME1: low values are white
    assert "MONOCHROME1 inverted" in batch.images[1].normalisation
    assert "rescale x2 -1000" in batch.images[2].normalisation and np.abs(rescaled - mono2).max() <= 1


def test_16bit_without_window_uses_the_data_range(tmp_path: Path, write_dicom) -> None:
    data = (ramp12() // 4 + 300).astype(np.uint16)  # 300..1323 in a 16-bit container
    write_dicom(tmp_path / "src" / "x.dcm", data, bits_stored=16)
    batch = read_one(tmp_path)
    px = model_pixels(batch)
    assert px.min() == 0 and px.max() == 255 and "range 300..1323" in batch.images[0].normalisation


@pytest.mark.parametrize("syntax", [RLELossless, JPEG2000Lossless], ids=["rle", "jpeg2000-lossless"])
def test_compressed_lossless_syntaxes_decode_to_the_same_image(tmp_path: Path, write_dicom, syntax: str) -> None:
    write_dicom(tmp_path / "src" / "a_plain.dcm", ramp12(), bits_stored=12, window=(2048, 4096), phi={})
    write_dicom(tmp_path / "src" / "b_packed.dcm", ramp12(), bits_stored=12, window=(2048, 4096), phi={}, syntax=syntax)
    batch = read_one(tmp_path)
    assert len(batch.images) == 2
    assert (model_pixels(batch, 0) == model_pixels(batch, 1)).all()
    assert batch.images[0].model_image_path == batch.images[1].model_image_path  # content-addressed: written once


def test_jpeg_baseline_decodes(tmp_path: Path, write_dicom) -> None:
    grey = (ramp12() // 16).astype(np.uint8)
    write_dicom(tmp_path / "src" / "jpeg.dcm", grey, syntax=JPEGBaseline8Bit, phi={})
    batch = read_one(tmp_path)
    px = model_pixels(batch).astype(int)
    assert np.abs(px - grey.astype(int) * 255 / 255).max() <= 4  # lossy, 8-bit range 0..255 already


def test_the_plugins_cover_the_compressed_syntaxes_of_dental_archives() -> None:
    from pydicom.pixels import get_decoder

    for syntax in (JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLosslessSV1, JPEGLSLossless, JPEG2000Lossless, RLELossless):
        assert get_decoder(syntax).is_available, f"no decoder plugin for {syntax.name}"


def test_unusable_dicoms_are_quarantined_with_a_reason(tmp_path: Path, write_dicom) -> None:
    src = tmp_path / "src"
    write_dicom(src / "ok.dcm", ramp12(), bits_stored=12)
    write_dicom(src / "series.dcm", ramp12(), bits_stored=12, frames=3)
    write_dicom(src / "intraoral.dcm", ramp12(), bits_stored=12, modality="IO")
    write_dicom(src / "cbct.dcm", ramp12(), bits_stored=12, modality="CT")
    write_dicom(src / "burned.dcm", ramp12(), bits_stored=12, BurnedInAnnotation="YES")
    cut = write_dicom(src / "truncated.dcm", ramp12(), bits_stored=12)
    cut.write_bytes(cut.read_bytes()[:-W * H])  # half the pixel data gone
    (src / "notes.dcm").write_text("not a dicom file")
    batch = read_one(tmp_path)
    assert [i.file_name for i in batch.images] == ["ok.dcm"]
    assert reasons(batch) == {
        "multi_frame": 1,
        "not_panoramic": 2,
        "burned_in_text": 1,
        "image_corrupt": 1,
        "not_an_image": 1,
    }
    by_file = {Path(r.path).name: r.message for r in batch.rejections}
    assert "3 frames" in by_file["series.dcm"] and "modality IO" in by_file["intraoral.dcm"]
    # options widen the policy for a source that needs it
    batch = read_one(tmp_path, options={"modalities": ["PX", "IO"], "accept_burned_in_text": True})
    assert sorted(i.file_name for i in batch.images) == ["burned.dcm", "intraoral.dcm", "ok.dcm"]


def test_patient_key_is_a_salted_hash_shared_by_one_patients_xrays(tmp_path: Path, write_dicom, monkeypatch) -> None:
    src = tmp_path / "src"
    write_dicom(src / "a.dcm", ramp12(), bits_stored=12, phi={"PatientID": "P1"})
    write_dicom(src / "b.dcm", ramp12()[::-1], bits_stored=12, phi={"PatientID": "P1"})
    write_dicom(src / "c.dcm", ramp12()[:, ::-1], bits_stored=12, phi={"PatientID": "P2"})
    write_dicom(src / "d.dcm", ramp12() // 2, bits_stored=12, phi={})
    keys = [i.patient_key for i in read_one(tmp_path).images]
    assert keys[0] == keys[1] != keys[2] and keys[3] is None
    assert keys[0] == patient_key("P1") and len(keys[0]) == 16 and "P1" not in keys[0]
    assert patient_key("P1", salt="another") != keys[0]
    monkeypatch.delenv(PATIENT_SALT_ENV)
    s, sf = make_sources(src, "dicom")
    with pytest.raises(PatientSaltMissing, match=PATIENT_SALT_ENV):
        read_source(s, sf)


def test_a_suffixless_dicom_named_by_its_uid_is_found(tmp_path: Path, write_dicom) -> None:
    uid = generate_uid()
    write_dicom(tmp_path / "src" / "archive" / uid, ramp12(), bits_stored=12, sop_uid=uid)
    (tmp_path / "src" / "archive" / "README.txt").write_text("an archive folder")
    batch = read_one(tmp_path)
    assert [i.file_name for i in batch.images] == [f"archive/{uid}"]


# ---------------------------------------------------------------- annotations for DICOM images


def _two_scans(root: Path, write_dicom) -> dict[str, str]:
    """scan_1.dcm, scan_2.dcm under root/dicom; returns file name -> SOP Instance UID."""
    out = {}
    for k in (1, 2):
        uid = generate_uid()
        write_dicom(root / "dicom" / f"scan_{k}.dcm", np.roll(ramp12(), 40 * k, axis=1), bits_stored=12, sop_uid=uid)
        out[f"scan_{k}.dcm"] = uid
    return out


def _coco(names: list[str]) -> dict:
    return {
        "images": [{"id": i, "file_name": n, "width": W, "height": H} for i, n in enumerate(names)],
        "annotations": [
            {"id": i, "image_id": i, "category_id": 1, "bbox": [10 + i, 20, 30, 40]} for i in range(len(names))
        ],
        "categories": [{"id": 1, "name": "caries"}],
    }


@pytest.mark.parametrize("key", ["uid", "file_name"])
def test_coco_annotations_keyed_by_uid_or_file_name(tmp_path: Path, write_dicom, key: str) -> None:
    root = tmp_path / "src"
    uids = _two_scans(root, write_dicom)
    names = list(uids.values()) if key == "uid" else list(uids)
    (root / "labels.json").write_text(json.dumps(_coco(names)))
    # format: dicom with the annotation format named ...
    batch = read_one(tmp_path, images="dicom", annotations="labels.json", options={"annotations_format": "coco"})
    assert sorted(i.file_name for i in batch.images) == ["dicom/scan_1.dcm", "dicom/scan_2.dcm"]
    boxes = {i.file_name: a.box for i in batch.images for a in batch.annotations if a.image_id == i.image_id}
    assert boxes == {"dicom/scan_1.dcm": [10.0, 20.0, 40.0, 60.0], "dicom/scan_2.dcm": [11.0, 20.0, 41.0, 60.0]}
    # ... or the annotation format itself over the DICOM folder: the same records
    s, sf = make_sources(root, "coco", images="dicom", annotations="labels.json")
    plain = read_source(s, sf)
    assert [a.box for a in plain.annotations] == [a.box for a in batch.annotations]
    assert all(uid not in i.image_id + i.file_name for i in batch.images for uid in uids.values())


def test_yolo_labelme_and_manifest_annotations_keyed_by_uid(tmp_path: Path, write_dicom) -> None:
    root = tmp_path / "src"
    uids = _two_scans(root, write_dicom)
    uid1, uid2 = uids["scan_1.dcm"], uids["scan_2.dcm"]
    # YOLO: one label file named by UID, the other by file stem
    (root / "labels").mkdir()
    (root / "labels" / f"{uid1}.txt").write_text("0 0.5 0.5 0.1 0.2\n")
    (root / "labels" / "scan_2.txt").write_text("0 0.25 0.5 0.1 0.2\n")
    s, sf = make_sources(root, "yolo", images="dicom", options={"class_map": {0: "caries"}})
    yolo = read_source(s, sf)
    balanced(yolo)
    assert sorted(i.file_name for i in yolo.images) == ["dicom/scan_1.dcm", "dicom/scan_2.dcm"]  # each once
    assert len(yolo.annotations) == 2
    # labelme: imagePath is the UID, relative to the JSON's folder
    (root / "lm").mkdir()
    shape = {"label": "caries", "points": [[10, 10], [50, 40]], "shape_type": "rectangle"}
    (root / "lm" / "one.json").write_text(json.dumps({"shapes": [shape], "imagePath": f"../dicom/{uid2}"}))
    s, sf = make_sources(root, "labelme", annotations="lm")
    lm = read_source(s, sf)
    balanced(lm)
    assert [i.file_name for i in lm.images] == ["dicom/scan_2.dcm"] and len(lm.annotations) == 1
    # manifest rows keyed by UID
    rows = [{"file_name": uid1, "category": "caries", "box": [5, 5, 25, 25]}]
    (root / "manifest.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    s, sf = make_sources(root, "manifest", images="dicom", annotations="manifest.jsonl")
    mf = read_source(s, sf)
    balanced(mf)
    assert [i.file_name for i in mf.images] == ["dicom/scan_1.dcm"] and mf.annotations[0].box == [5.0, 5.0, 25.0, 25.0]


def test_a_uid_that_names_no_file_is_image_missing(tmp_path: Path, write_dicom) -> None:
    root = tmp_path / "src"
    _two_scans(root, write_dicom)
    (root / "labels.json").write_text(json.dumps(_coco([generate_uid()])))
    batch = read_one(tmp_path, images="dicom", annotations="labels.json", options={"annotations_format": "coco"})
    assert reasons(batch) == {"image_missing": 2} and not batch.images  # the image and its one annotation


def test_dicom_sources_validate_in_a_sources_file(tmp_path: Path) -> None:
    from mmoral_pipeline.config import load_sources

    doc = {"sources": [{"name": "clinic", "format": "dicom", "root": ".", "annotations": "coco.json",
                        "options": {"annotations_format": "coco", "modalities": ["PX"]}}]}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(doc))
    assert load_sources(tmp_path / "s.yaml").source("clinic").options["annotations_format"] == "coco"
    assert pydicom.__version__ >= "3"
