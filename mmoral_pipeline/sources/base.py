"""What every reader shares: safe paths, image inspection and normalisation, the reader contract.

One home for "is this image usable" and "what does the model see": every reader calls
`inspect_image`, which fully decodes the file and, when the file is not already an 8-bit L/RGB
image in display orientation, writes the normalised image once (`normalise_image`, `to_8bit`).
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import io
import re
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from mmoral_pipeline.config import PanoramicLimits, SourcesFile, SourceSpec, mmoral_home
from mmoral_pipeline.domain.geometry import box_problem
from mmoral_pipeline.domain.near_duplicates import perceptual_hash
from mmoral_pipeline.domain.records import ImageRecord, IngestBatch, Rejection, RejectReason

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".dcm", ".dicom")
DICOM_SUFFIXES = (".dcm", ".dicom")
MODEL_IMAGE_MODES = ("L", "RGB")  # what the model sees: 8-bit grey or colour, display orientation
NORMALISE_VERSION = "normalise-v1"  # part of the ingest code version: bump when the pixels change

# The options of the source being read (`read_source` sets them): DICOM policy knobs reach
# `inspect_image` through every reader without each reader passing them on.
_SOURCE_OPTIONS: contextvars.ContextVar[Mapping[str, Any] | None] = contextvars.ContextVar(
    "source_options", default=None
)


@contextlib.contextmanager
def source_options(options: Mapping[str, Any]) -> Iterator[None]:
    token = _SOURCE_OPTIONS.set(options)
    try:
        yield
    finally:
        _SOURCE_OPTIONS.reset(token)


def current_source_options() -> Mapping[str, Any]:
    return _SOURCE_OPTIONS.get() or {}


class SourceReader(Protocol):
    """A reader turns one source (or one shard of it) into records and rejections.

    `list_items` returns stable, sorted keys (usually image paths relative to the root) that
    shards are cut from; `read` reads only those items (all when `items` is None).
    """

    def list_items(self, spec: SourceSpec, sources: SourcesFile) -> list[str]: ...

    def read(self, spec: SourceSpec, sources: SourcesFile, items: Sequence[str] | None = None) -> IngestBatch: ...


def make_image_id(source: str, file_name: str) -> str:
    """Stable, filesystem-safe image id: '<source>-<relative path without suffix>'."""
    stem = str(Path(file_name).with_suffix(""))
    return f"{source}-" + re.sub(r"[^A-Za-z0-9._-]+", "_", stem)


def resolve_inside(root: Path, relative: str) -> Path | None:
    """The file `relative` under `root`, or None when it escapes `root` ('../', absolute paths)."""
    root = root.resolve()
    candidate = (root / relative).resolve()
    try:
        candidate.relative_to(root)
    except ValueError:
        return None
    return candidate


def list_images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def is_dicom(path: Path) -> bool:
    """A DICOM file: by suffix, or any other file (archives name them by UID) with the 'DICM' marker."""
    suffix = path.suffix.lower()
    if suffix in DICOM_SUFFIXES:
        return True
    if suffix in IMAGE_SUFFIXES:
        return False
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def to_8bit(arr: np.ndarray, low: float, high: float, *, invert: bool = False) -> np.ndarray:
    """Map [low, high] linearly onto 0..255 (values outside clipped); `invert` flips black and white.

    The one 16-bit -> 8-bit rule: DICOM windows and 16-bit PNG/TIFF data ranges both end here.
    """
    a = np.asarray(arr, dtype=np.float64)
    if high == low:
        out = np.where(a > low, 255.0, 0.0)
    else:
        out = (a - low) * (255.0 / (high - low))
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return 255 - out if invert else out


def normalise_image(im: Image.Image) -> tuple[Image.Image, list[str]]:
    """An 8-bit L or RGB image in display orientation, and the steps taken ([] = usable as it is).

    - EXIF orientation is applied (labelme, CVAT and Ultralytics label the image as displayed, so
      boxes are read in the rotated frame; width/height are the rotated size).
    - 16-bit and 32-bit grey (PNG/TIFF `I;16`, `I`, `F`): the image's own min..max -> 0..255
      (`to_8bit`); a DICOM file goes through its window instead (sources/dicom.py).
    - palette -> RGB (or L when the palette is grey), CMYK / YCbCr / LAB / HSV -> RGB,
      bilevel -> L, alpha dropped (LA -> L, RGBA -> RGB).
    """
    steps: list[str] = []
    orientation = im.getexif().get(0x0112, 1)
    if orientation not in (None, 1):
        im = ImageOps.exif_transpose(im)
        steps.append(f"EXIF orientation {orientation} applied")
    mode = im.mode
    if mode in MODEL_IMAGE_MODES:
        return im, steps
    if mode.startswith("I") or mode == "F":
        arr = np.asarray(im)
        low, high = float(arr.min()), float(arr.max())
        steps.append(f"{mode} range {low:g}..{high:g} -> 0..255")
        return Image.fromarray(to_8bit(arr, low, high), mode="L"), steps
    if mode in ("1", "LA", "La"):
        steps.append(f"{mode} -> L")
        return im.convert("L"), steps
    rgb = im.convert("RGB")
    a = np.asarray(rgb)
    if mode in ("P", "PA") and (a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all():
        steps.append(f"{mode} (grey palette) -> L")
        return rgb.convert("L"), steps
    steps.append(f"{mode} -> RGB")
    return rgb, steps


def model_images_dir() -> Path:
    """Where normalised images live: `$MMORAL_HOME/_model_images` (a local cache for a remote home)."""
    home = mmoral_home()
    if "://" in home:
        return Path(tempfile.gettempdir()) / "mmoral_model_images"
    return Path(home) / "_model_images"


def store_model_image(im: Image.Image) -> Path:
    """Write the image as PNG once, content-addressed (`<sha256 of the PNG>.png`); returns its path."""
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    data = buf.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    folder = model_images_dir() / digest[:2]
    target = folder / f"{digest}.png"
    if not target.exists():
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{digest}.{id(data)}.tmp"
        tmp.write_bytes(data)
        tmp.replace(target)
    return target


def inspect_image(
    path: Path, *, source: str, root: Path, max_pixels: int, image_id: str | None = None
) -> ImageRecord | Rejection:
    """Open, fully decode and describe one image, or say exactly why it cannot be used.

    DICOM files go to `sources.dicom.inspect_dicom`; other images are normalised here when they
    are not 8-bit L/RGB in display orientation (`model_image_path` then names the written PNG).
    """
    if not path.exists() and path.suffix.lower() not in IMAGE_SUFFIXES:  # a reference by SOP Instance UID?
        from mmoral_pipeline.sources.dicom import find_by_sop_uid

        path = find_by_sop_uid(path) or path
    rel = str(path.relative_to(root)) if path.is_relative_to(root) else path.name
    if not path.exists():
        return Rejection(
            source=source, path=str(path), reason=RejectReason.IMAGE_MISSING, message=f"image file not found: {rel}"
        )
    size = path.stat().st_size
    if size == 0:
        return Rejection(
            source=source, path=str(path), reason=RejectReason.EMPTY_FILE, message=f"zero-byte file: {rel}"
        )
    if is_dicom(path):
        from mmoral_pipeline.sources.dicom import inspect_dicom

        return inspect_dicom(
            path, source=source, rel=rel, max_pixels=max_pixels, image_id=image_id or make_image_id(source, rel),
            options=current_source_options(),
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                width, height = im.size
                if width * height > max_pixels:
                    return Rejection(
                        source=source,
                        path=str(path),
                        reason=RejectReason.IMAGE_TOO_LARGE,
                        message=f"{width}x{height} = {width * height} pixels exceeds the limit of {max_pixels}",
                    )
                mode = im.mode
                im.load()  # full decode: catches truncated files that open() alone accepts
                model_image, steps = normalise_image(im)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        return Rejection(source=source, path=str(path), reason=RejectReason.IMAGE_TOO_LARGE, message=str(exc))
    except UnidentifiedImageError:
        return Rejection(
            source=source, path=str(path), reason=RejectReason.NOT_AN_IMAGE, message=f"not a readable image: {rel}"
        )
    except (OSError, SyntaxError, ValueError) as exc:
        return Rejection(
            source=source, path=str(path), reason=RejectReason.IMAGE_CORRUPT, message=f"cannot decode {rel}: {exc}"
        )
    model_path = store_model_image(model_image) if steps else path
    return image_record(
        path, source=source, rel=rel, image_id=image_id or make_image_id(source, rel), model_image=model_image,
        model_path=model_path, mode=mode, normalisation="; ".join(steps) or None,
    )


def image_record(
    path: Path, *, source: str, rel: str, image_id: str, model_image: Image.Image, model_path: Path, mode: str,
    normalisation: str | None, patient_key: str | None = None,
) -> ImageRecord:
    """The accepted image's row: the source file (path, sha256, bytes) and the image the model sees (size, path)."""
    return ImageRecord(
        image_id=image_id,
        source=source,
        path=str(path),
        file_name=rel,
        sha256=sha256_file(path),
        width=model_image.width,
        height=model_image.height,
        mode=mode,
        bytes=path.stat().st_size,
        patient_key=patient_key,
        model_image_path=str(model_path),
        normalisation=normalisation,
        phash=perceptual_hash(model_image),  # of the pixels the model sees: DICOM and 16-bit images alike
    )


def panoramic_problem(width: int, height: int, limits: PanoramicLimits) -> str | None:
    """Why an image of this size cannot be a panoramic X-ray (None when it can): its aspect ratio
    (periapical / bitewing films ~4:3, cephalograms ~5:4, CBCT slices square) or its size."""
    aspect = width / height if height else float("inf")
    if not limits.min_aspect <= aspect <= limits.max_aspect:
        return (
            f"{width}x{height} (width/height {aspect:.2f}) is not a panoramic X-ray's shape "
            f"(allowed {limits.min_aspect:g}-{limits.max_aspect:g}); a resized or cropped OPG source can widen "
            "the range with `panoramic: {min_aspect: ...}` on its entry in the sources file"
        )
    if width < limits.min_width or height < limits.min_height:
        return (
            f"{width}x{height} is smaller than a readable panoramic X-ray (min {limits.min_width}x{limits.min_height})"
        )
    return None


def check_box(
    box: Sequence[float], width: int, height: int, *, source: str, path: str, record: str
) -> Rejection | None:
    """A rejection for an unusable box, or None when the box is fine."""
    problem = box_problem(list(box), width, height)
    if problem is None:
        return None
    return Rejection(
        source=source,
        path=path,
        record=record,
        reason=RejectReason(problem),
        message=f"{problem.replace('_', ' ')}: {list(box)} in a {width}x{height} image",
        kind="annotation",
    )
