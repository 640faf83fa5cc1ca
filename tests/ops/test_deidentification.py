"""De-identification through the real pipeline: DICOM files full of patient data go from ingest to the exports
(`mmoral materialize` in its own process, the persistent Dagster instance under DAGSTER_HOME, the offline LLM backend
and its response cache); then every file under MMORAL_HOME and DAGSTER_HOME (Parquet decoded, SQLite dumped, event log,
compute logs, exports, HF dataset, cache) and the terminal output (DEBUG logs) is searched for every PHI value.
The patient key is what remains."""

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

from mmoral_pipeline.synth import generate

REPO_ROOT = Path(__file__).resolve().parents[2]

# ingest -> exports (training and the model-scored benchmark are out of the question here)
SELECTION = (
    "group:ingest or group:attributes or group:generation or group:dataset or group:export or key:benchmark_items"
)
N_IMAGES = 6


def searchable_text(path: Path) -> bytes:
    """The bytes a reader of `path` could see: raw bytes, plus decoded Parquet and a dump of SQLite databases."""
    data = path.read_bytes()
    if path.suffix == ".parquet":
        data += json.dumps(pq.read_table(path).to_pylist(), default=str).encode()
    elif data[:16] == b"SQLite format 3\x00":
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            data += "\n".join(db.iterdump()).encode()
    return data


def find_phi(folder: Path, values: dict[str, str]) -> dict[str, list[str]]:
    """PHI tag -> files under `folder` that contain its value."""
    hits: dict[str, list[str]] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        text = searchable_text(path)
        for tag, value in values.items():
            if value.encode() in text:
                hits.setdefault(tag, []).append(str(path.relative_to(folder)))
    return hits


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory, phi: dict[str, str]):
    """Synthetic OPGs rewritten as 12-bit DICOMs with PHI; COCO annotations keyed by SOP Instance UID."""
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    tmp = tmp_path_factory.mktemp("deid")
    synth = tmp / "synth"
    generate(n=N_IMAGES, seed=5, out=synth, fmt="coco", width=700, height=350, scores=True)
    coco = json.loads((synth / "annotations.json").read_text())
    clinic = tmp / "clinic"
    uids: dict[str, str] = {}
    (clinic / "dicom").mkdir(parents=True)
    for k, entry in enumerate(coco["images"]):
        with Image.open(synth / "images" / entry["file_name"]) as im:
            grey = np.asarray(im.convert("L")).astype(np.uint16) * 16  # 12-bit
        mono1 = k % 2 == 1
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
        ds.Modality = "PX"
        for tag, value in phi.items():
            setattr(ds, tag, value if tag != "PatientID" else f"{value}-{k // 2}")  # two X-rays per patient
        ds.Rows, ds.Columns = grey.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME1" if mono1 else "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.WindowCenter, ds.WindowWidth = 2048, 4096
        ds.PixelData = (4095 - grey if mono1 else grey).astype(np.uint16).tobytes()
        ds.save_as(clinic / "dicom" / f"opg_{k:02d}.dcm", enforce_file_format=True)
        uids[f"SOPInstanceUID_{k}"] = str(ds.SOPInstanceUID)
        uids[f"StudyInstanceUID_{k}"] = str(ds.StudyInstanceUID)
        entry["file_name"] = str(ds.SOPInstanceUID)  # annotations keyed by SOP Instance UID
        assert pydicom.dcmread(clinic / "dicom" / f"opg_{k:02d}.dcm").PatientName == phi["PatientName"]
    (clinic / "annotations.json").write_text(json.dumps(coco))
    sources = tmp / "sources.yaml"
    sources.write_text(yaml.safe_dump({"sources": [{
        "name": "clinic", "format": "dicom", "root": str(clinic), "images": "dicom", "annotations": "annotations.json",
        "options": {"annotations_format": "coco"},
    }]}))
    home, dagster_home = tmp / "mmoral_home", tmp / "dagster_home"
    dagster_home.mkdir()
    shutil.copy(REPO_ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
    env = {
        **os.environ,
        "MMORAL_HOME": str(home), "DAGSTER_HOME": str(dagster_home), "MMORAL_SOURCES": str(sources),
        "MMORAL_PATIENT_SALT": "clinic-secret-salt", "MMORAL_LOG_LEVEL": "DEBUG",  # everything that could be logged, is
    }
    # `mmoral materialize` in a process of its own: the persistent instance under DAGSTER_HOME, the real definitions
    proc = subprocess.run(
        [sys.executable, "-m", "mmoral_pipeline.cli", "materialize", "--select", SELECTION, "--sources", str(sources)],
        env=env, capture_output=True, text=True, timeout=900, check=False,
    )
    logs = tmp / "terminal"
    logs.mkdir()
    (logs / "stdout.txt").write_text(proc.stdout)
    (logs / "stderr.txt").write_text(proc.stderr)
    return {"proc": proc, "home": home, "dagster_home": dagster_home, "terminal": logs, "clinic": clinic, "uids": uids}


def test_the_pipeline_ran_to_the_exports(pipeline) -> None:
    proc, home = pipeline["proc"], pipeline["home"]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "FAIL" not in proc.stdout and len(proc.stderr) > 1000  # DEBUG logs went to the terminal
    images = pl.read_parquet(home / "raw_images" / "clinic.parquet")
    assert images.height == N_IMAGES and images["path"].str.ends_with(".dcm").all()
    keys = images.sort("file_name")["patient_key"].to_list()
    assert all(keys) and keys[0] == keys[1] != keys[2] == keys[3]  # two X-rays per patient, one key each
    assert (home / "exports" / "llamafactory" / "dataset_info.json").exists()
    assert (home / "exports" / "trl" / "hf_dataset").is_dir() and (
        home / "exports" / "bench" / "closed_ended.tsv"
    ).exists()
    trl = [json.loads(line) for line in (home / "exports" / "trl" / "train.jsonl").read_text().splitlines()]
    assert trl and all(not Path(r["images"][0]).is_absolute() for r in trl)


def test_no_phi_reaches_any_output(pipeline, phi: dict[str, str]) -> None:
    values = {**phi, **pipeline["uids"], "GivenName": "Janet", "FamilyName": "Doe^"}
    # the search finds PHI where it is: in the inputs, and in a compressed Parquet file
    assert set(find_phi(pipeline["clinic"], values)) >= set(phi)
    probe = pipeline["home"].parent / "probe"
    probe.mkdir(exist_ok=True)
    pl.DataFrame({"x": [phi["AccessionNumber"]] * 1000}).write_parquet(probe / "t.parquet", compression="zstd")
    assert find_phi(probe, values) == {"AccessionNumber": ["t.parquet"]}
    for folder in (pipeline["home"], pipeline["dagster_home"], pipeline["terminal"]):
        files = [p for p in folder.rglob("*") if p.is_file()]
        assert len(files) > (1 if folder == pipeline["terminal"] else 10), f"nothing to search in {folder}"
        assert find_phi(folder, values) == {}, f"PHI found under {folder}"
