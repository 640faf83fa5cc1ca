"""Fixtures shared by every test folder (keep them generic)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def realdata_path() -> Path:
    """The shared real-data samples: $MMORAL_REALDATA, else <repo>/../shared/realdata."""
    return Path(os.environ.get("MMORAL_REALDATA") or REPO_ROOT.parent / "shared" / "realdata")


@pytest.fixture(scope="session")
def realdata() -> Path:
    """Path of the real-data samples (read-only); skips when the folder is absent."""
    p = realdata_path()
    if not p.is_dir():
        pytest.skip(f"real-data samples not found at {p} (set MMORAL_REALDATA to the shared/realdata folder)")
    return p


@pytest.fixture()
def mmoral_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private MMORAL_HOME for the test (outputs, extracted images)."""
    home = tmp_path / "mmoral_home"
    monkeypatch.setenv("MMORAL_HOME", str(home))
    return home


@pytest.fixture()
def write_image() -> Callable[..., Path]:
    """Factory: write a small image file (default 64x48 grey PNG) and return its path."""
    from PIL import Image

    def _write(
        path: Path, size: tuple[int, int] = (64, 48), mode: str = "L", color: int | tuple = 128, fmt: str | None = None
    ) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new(mode, size, color).save(path, format=fmt)
        return path

    return _write


# Patient data every DICOM the tests write carries: de-identification tests grep outputs for each value.
PHI = {
    "PatientName": "Doe^Janet^Q",
    "PatientID": "PID-7734-XK",
    "PatientBirthDate": "19710203",
    "AccessionNumber": "ACC99821X",
    "InstitutionName": "Saint Elsewhere Dental Clinic",
    "InstitutionAddress": "42 Molar Street, Toothville",
    "ReferringPhysicianName": "Kildare^James",
    "OtherPatientIDs": "ALT-5521-ZZ",
    "PatientAddress": "7 Enamel Road, Dentinburg",
    "StudyID": "STUDY-3141",
}


@pytest.fixture(scope="session")
def phi() -> dict[str, str]:
    return dict(PHI)


@pytest.fixture()
def write_dicom() -> Callable[..., Path]:
    """Factory: write a DICOM X-ray with pydicom (uncompressed or compressed) carrying the PHI above.

    `pixels` is a 2-D uint16/uint8 array (or H x W x 3 uint8 with photometric='RGB'); `frames` > 1 stacks copies;
    `syntax` is a pydicom transfer syntax UID (RLE / JPEG 2000 through pydicom's encoders, JPEG baseline through
    Pillow + encapsulation).
    """
    import numpy as np
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit, SecondaryCaptureImageStorage, generate_uid

    def _write(
        path: Path,
        pixels: np.ndarray,
        *,
        bits_stored: int | None = None,
        photometric: str = "MONOCHROME2",
        window: tuple[float, float] | None = None,
        rescale: tuple[float, float] | None = None,
        modality: str = "PX",
        frames: int = 1,
        syntax: str = ExplicitVRLittleEndian,
        phi: dict[str, str] | None = None,
        sop_uid: str | None = None,
        **extra: object,
    ) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
        meta.MediaStorageSOPInstanceUID = sop_uid or generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID = generate_uid()
        ds.SeriesInstanceUID = generate_uid()
        ds.Modality = modality
        for k, v in (PHI if phi is None else phi).items():
            setattr(ds, k, v)
        for k, v in extra.items():
            setattr(ds, k, v)
        arr = np.asarray(pixels)
        colour = arr.ndim == 3
        ds.Rows, ds.Columns = arr.shape[:2]
        ds.SamplesPerPixel = 3 if colour else 1
        if colour:
            ds.PlanarConfiguration = 0
        ds.PhotometricInterpretation = photometric
        ds.BitsAllocated = 8 if arr.dtype == np.uint8 else 16
        ds.BitsStored = bits_stored or ds.BitsAllocated
        ds.HighBit = ds.BitsStored - 1
        ds.PixelRepresentation = 0
        if window:
            ds.WindowCenter, ds.WindowWidth = window
        if rescale:
            ds.RescaleSlope, ds.RescaleIntercept = rescale
        if frames > 1:
            ds.NumberOfFrames = frames
            arr = np.stack([arr] * frames)
        if syntax == JPEGBaseline8Bit:
            import io

            from PIL import Image
            from pydicom.encaps import encapsulate

            buf = io.BytesIO()
            Image.fromarray(arr).save(buf, format="JPEG", quality=95)
            ds.PixelData = encapsulate([buf.getvalue()])
            ds["PixelData"].VR = "OB"
            ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
            ds.LossyImageCompression = "01"
        elif syntax != ExplicitVRLittleEndian:
            ds.PixelData = arr.tobytes()
            ds.compress(syntax, arr, encoding_plugin="pylibjpeg" if "1.2.840.10008.1.2.4.9" in syntax else "")
        else:
            ds.PixelData = arr.tobytes()
        ds.save_as(path, enforce_file_format=True)
        assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == syntax
        return path

    return _write
