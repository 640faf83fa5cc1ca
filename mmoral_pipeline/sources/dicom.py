"""DICOM X-rays: pixels as the model should see them, nothing of the patient but a salted key.

Any reader accepts DICOM images (`inspect_image` sends `.dcm`/`.dicom` files, and suffix-less
files with the `DICM` marker, here); `format: dicom` is the folder-of-DICOM source:

- `images` (default: the root): the DICOM files, searched recursively.
- `options.annotations_format` (coco, labelme, yolo, manifest, ...) with `annotations`: the
  annotations, read by that format's reader over the DICOM folder. Without it the source is
  images only: no annotations, which later stages read as nothing found (label them first).
- Annotations name their image by file name (`scan_001.dcm`, or the stem for YOLO / masks) or
  by **SOP Instance UID** (`1.2.826.0.1...`): a reference that names no file is looked up among
  the DICOM files of the folder it points into, in every annotation format.

Pixels (one pass, `decode_dicom`): modality LUT / rescale, then the VOI LUT or window
(centre/width, LINEAR / LINEAR_EXACT / SIGMOID) onto 0..255 (no VOI: the data's min..max),
MONOCHROME1 (or Presentation LUT Shape INVERSE) inverted, palette colour and YBR to RGB. The
8-bit image is written once as a content-addressed PNG (`ImageRecord.model_image_path`); the
DICOM file stays `path` for lineage.

Quarantined with a reason: several frames (`multi_frame`), a modality that is not a panoramic
X-ray (`not_panoramic`; accepted: `options.modalities`, default PX, DX, CR, OT), `BurnedInAnnotation
= YES` (`burned_in_text`, unless `options.accept_burned_in_text: true`), undecodable pixel data
(`image_corrupt`, naming the transfer syntax).

De-identification: no header value is copied anywhere except the technical ones above. The
patient key is `HMAC-SHA256(MMORAL_PATIENT_SALT, IssuerOfPatientID + PatientID)` (16 hex); a file
with a PatientID and no salt in the environment stops the read with a clear error.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mmoral_pipeline.config import SourcesFile, SourceSpec
from mmoral_pipeline.domain.records import ImageRecord, IngestBatch, Rejection, RejectReason

PATIENT_SALT_ENV = "MMORAL_PATIENT_SALT"
DEFAULT_MODALITIES = ("PX", "DX", "CR", "OT")  # panoramic, digital / computed radiography, other (scanned film)
_UID = re.compile(r"^[0-9]+(\.[0-9]+)+$")


class PatientSaltMissing(ValueError):
    """A DICOM file carries a PatientID but no salt is configured: refuse rather than hash weakly."""


def looks_like_uid(name: str) -> bool:
    return len(name) <= 64 and bool(_UID.match(name))


def patient_key(patient_id: str | None, issuer: str | None = None, *, salt: str | None = None) -> str | None:
    """Salted hash of a patient id (None when there is none); the id itself is never stored."""
    pid = str(patient_id or "").strip()
    if not pid:
        return None
    salt = os.environ.get(PATIENT_SALT_ENV) if salt is None else salt
    if not salt:
        raise PatientSaltMissing(
            f"DICOM files with a PatientID need a secret salt in ${PATIENT_SALT_ENV} to derive patient_key "
            "(an unsalted hash of a short id is reversible); set it and keep it stable across runs"
        )
    message = f"{str(issuer or '').strip()}\x1f{pid}".encode()
    return hmac.new(salt.encode(), message, hashlib.sha256).hexdigest()[:16]


# --------------------------------------------------------------------------- pixels


def decode_dicom(ds: Any) -> tuple[np.ndarray, str]:
    """(8-bit H x W or H x W x 3 array, what was done) for a single-frame dataset."""
    from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut

    from mmoral_pipeline.sources.base import to_8bit

    arr = ds.pixel_array  # YBR is converted to RGB by pydicom
    pi = str(ds.get("PhotometricInterpretation", "")).upper()
    bits = int(ds.get("BitsStored", 8) or 8)
    if pi == "PALETTE COLOR":
        rgb = apply_color_lut(arr, ds)
        depth = 8 if rgb.dtype == np.uint8 else 16
        return to_8bit(rgb, 0, 2**depth - 1), f"palette colour -> RGB ({depth}-bit LUT)"
    if arr.ndim == 3:  # RGB / YBR
        return (arr if arr.dtype == np.uint8 else to_8bit(arr, 0, 2**bits - 1)), f"{pi} colour -> RGB"
    steps = []
    values = apply_modality_lut(arr, ds)
    if "ModalityLUTSequence" in ds:
        steps.append("modality LUT")
    elif "RescaleSlope" in ds or "RescaleIntercept" in ds:
        steps.append(
            f"rescale x{float(ds.get('RescaleSlope', 1) or 1):g} {float(ds.get('RescaleIntercept', 0) or 0):+g}"
        )
    has_voi = "VOILUTSequence" in ds or ("WindowCenter" in ds and "WindowWidth" in ds)
    if has_voi:
        windowed = apply_voi_lut(values, ds)
        # the range the VOI transform maps onto: the transform applied to the extremes
        low, high = (float(v) for v in apply_voi_lut(np.array([-(2**31), 2**31 - 1], dtype=np.int64), ds))
        if "VOILUTSequence" in ds:
            steps.append("VOI LUT")
        else:
            c, w = (_first(ds.WindowCenter), _first(ds.WindowWidth))
            steps.append(f"window c={c:g} w={w:g} ({ds.get('VOILUTFunction', 'LINEAR')})")
    else:
        windowed = values
        low, high = float(np.min(values)), float(np.max(values))
        steps.append(f"range {low:g}..{high:g}")
    invert = (pi == "MONOCHROME1") != (str(ds.get("PresentationLUTShape", "")).upper() == "INVERSE")
    steps.append(f"{bits}-bit -> 0..255")
    if invert:
        steps.append(f"{pi} inverted" if pi == "MONOCHROME1" else "presentation LUT INVERSE")
    return to_8bit(windowed, low, high, invert=invert), "DICOM " + "; ".join(steps)


def _first(value: Any) -> float:
    """A window value (multi-valued: the first view)."""
    try:
        return float(value[0])
    except TypeError:
        return float(value)


def inspect_dicom(
    path: Path, *, source: str, rel: str, max_pixels: int, image_id: str, options: Mapping[str, Any]
) -> ImageRecord | Rejection:
    """Decode, check and normalise one DICOM file (see the module docstring for the rules)."""
    import pydicom
    from PIL import Image

    from mmoral_pipeline.sources.base import image_record, store_model_image

    def reject(reason: RejectReason, message: str) -> Rejection:
        return Rejection(source=source, path=str(path), reason=reason, message=f"{rel}: {message}")

    try:
        ds = pydicom.dcmread(path)
    except (pydicom.errors.InvalidDicomError, OSError, ValueError, EOFError) as exc:
        return reject(RejectReason.NOT_AN_IMAGE, f"not a readable DICOM file ({type(exc).__name__})")
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        return reject(RejectReason.NOT_AN_IMAGE, "DICOM without pixel data")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        return reject(RejectReason.MULTI_FRAME, f"{frames} frames; one panoramic X-ray is one frame")
    modality = str(ds.get("Modality", "") or "").upper()
    accepted = [str(m).upper() for m in options.get("modalities", DEFAULT_MODALITIES)]
    if modality and modality not in accepted:
        return reject(
            RejectReason.NOT_PANORAMIC,
            f"modality {modality} is not a panoramic X-ray (accepted: {', '.join(accepted)})",
        )
    if str(ds.get("BurnedInAnnotation", "")).upper() == "YES" and not options.get("accept_burned_in_text", False):
        return reject(
            RejectReason.BURNED_IN_TEXT,
            "BurnedInAnnotation = YES: patient data may be written in the pixels (options.accept_burned_in_text to "
            "accept)",
        )
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    if rows * cols > max_pixels:
        return reject(
            RejectReason.IMAGE_TOO_LARGE, f"{cols}x{rows} = {rows * cols} pixels exceeds the limit of {max_pixels}"
        )
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    try:
        pixels, steps = decode_dicom(ds)
    except Exception as exc:
        name = getattr(syntax, "name", None) or str(syntax)
        return reject(
            RejectReason.IMAGE_CORRUPT, f"cannot decode pixel data ({name}): {type(exc).__name__}: {str(exc)[:200]}"
        )
    key = patient_key(ds.get("PatientID"), ds.get("IssuerOfPatientID"))
    image = Image.fromarray(pixels, mode="RGB" if pixels.ndim == 3 else "L")
    mode = f"DICOM {ds.get('PhotometricInterpretation', '?')} {int(ds.get('BitsStored', 8) or 8)}-bit"
    return image_record(
        path, source=source, rel=rel, image_id=image_id, model_image=image, model_path=store_model_image(image),
        mode=mode, normalisation=steps, patient_key=key,
    )


# --------------------------------------------------------------------------- SOP Instance UID keys


def dicom_files(folder: Path) -> list[Path]:
    from mmoral_pipeline.sources.base import is_dicom

    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.is_file() and is_dicom(p))


@functools.lru_cache(maxsize=16)
def _uid_index(files: tuple[tuple[str, int, int], ...]) -> dict[str, Path]:
    import pydicom

    out: dict[str, Path] = {}
    for name, _, _ in files:
        try:
            ds = pydicom.dcmread(name, stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
        except Exception:
            continue
        uid = str(ds.get("SOPInstanceUID", "") or "")
        if uid:
            out.setdefault(uid, Path(name))
    return out


def sop_uid_index(folder: Path) -> dict[str, Path]:
    """SOP Instance UID -> file for the DICOM files under `folder` (headers read once per change)."""
    files = []
    for p in dicom_files(folder):
        st = p.stat()
        files.append((str(p), st.st_mtime_ns, st.st_size))
    return _uid_index(tuple(files))


def find_by_sop_uid(reference: Path) -> Path | None:
    """The DICOM file whose SOP Instance UID is `reference.name`, in `reference.parent` (recursively)."""
    if not looks_like_uid(reference.name):
        return None
    return sop_uid_index(reference.parent).get(reference.name)


def alias_sop_uids(images: dict[str, list[Path]], wanted: Iterable[str], folder: Path) -> dict[str, list[Path]]:
    """Stem-keyed image maps (YOLO, masks; every file of a stem, first one paired): keys in `wanted` that
    name no image but a SOP Instance UID of a DICOM file under `folder` now point at that file, and the
    file's own stem key goes."""
    missing = [k for k in wanted if k not in images and looks_like_uid(Path(k).name)]
    if not missing:
        return images
    index = sop_uid_index(folder)
    found = {k: [index[Path(k).name]] for k in missing if Path(k).name in index}
    if not found:
        return images
    taken = {paths[0].resolve() for paths in found.values()}
    return {**{k: v for k, v in images.items() if not any(p.resolve() in taken for p in v)}, **found}


# --------------------------------------------------------------------------- format: dicom


class DicomReader:
    """A folder of DICOM files, optionally with annotations in another format (module docstring)."""

    def _delegate(self, spec: SourceSpec) -> tuple[Any, SourceSpec] | None:
        from mmoral_pipeline.sources import get_reader

        fmt = spec.options.get("annotations_format")
        if not fmt:
            return None
        if fmt == "dicom":
            raise ValueError(
                f"source {spec.name!r}: options.annotations_format names the annotation format (coco, yolo, ...)"
            )
        return get_reader(str(fmt)), spec.model_copy(update={"format": str(fmt), "images": spec.images or "."})

    def _folder(self, spec: SourceSpec, sources: SourcesFile) -> tuple[Path, Path]:
        from mmoral_pipeline.sources.common import folder

        return sources.root_of(spec), folder(spec, sources, spec.images, ".")

    def list_items(self, spec: SourceSpec, sources: SourcesFile) -> list[str]:
        delegate = self._delegate(spec)
        if delegate is not None:
            reader, inner = delegate
            return reader.list_items(inner, sources)
        _, images = self._folder(spec, sources)
        return [p.relative_to(images).as_posix() for p in dicom_files(images)]

    def read(self, spec: SourceSpec, sources: SourcesFile, items: Sequence[str] | None = None) -> IngestBatch:
        from mmoral_pipeline.sources.common import add_image

        delegate = self._delegate(spec)
        if delegate is not None:
            reader, inner = delegate
            return reader.read(inner, sources, items)
        root, images = self._folder(spec, sources)
        keys = self.list_items(spec, sources) if items is None else sorted(items)
        batch = IngestBatch()
        for key in keys:
            add_image(batch, images / key, source=spec.name, root=root, max_pixels=sources.max_image_pixels)
        return batch
