"""What every reader shares: safe paths, image inspection, the reader contract.

One home for "is this image usable": every reader calls `inspect_image`.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from PIL import Image, UnidentifiedImageError

from mmoral_pipeline.config import PanoramicLimits, SourceSpec, SourcesFile
from mmoral_pipeline.domain.geometry import box_problem
from mmoral_pipeline.domain.records import IngestBatch, ImageRecord, RejectReason, Rejection

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


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


def inspect_image(
    path: Path, *, source: str, root: Path, max_pixels: int, image_id: str | None = None
) -> ImageRecord | Rejection:
    """Open, fully decode and describe one image, or say exactly why it cannot be used."""
    rel = str(path.relative_to(root)) if path.is_relative_to(root) else path.name
    if not path.exists():
        return Rejection(source=source, path=str(path), reason=RejectReason.IMAGE_MISSING, message=f"image file not found: {rel}")
    size = path.stat().st_size
    if size == 0:
        return Rejection(source=source, path=str(path), reason=RejectReason.EMPTY_FILE, message=f"zero-byte file: {rel}")
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
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        return Rejection(source=source, path=str(path), reason=RejectReason.IMAGE_TOO_LARGE, message=str(exc))
    except UnidentifiedImageError:
        return Rejection(source=source, path=str(path), reason=RejectReason.NOT_AN_IMAGE, message=f"not a readable image: {rel}")
    except (OSError, SyntaxError, ValueError) as exc:
        return Rejection(source=source, path=str(path), reason=RejectReason.IMAGE_CORRUPT, message=f"cannot decode {rel}: {exc}")
    return ImageRecord(
        image_id=image_id or make_image_id(source, rel),
        source=source,
        path=str(path),
        file_name=rel,
        sha256=sha256_file(path),
        width=width,
        height=height,
        mode=mode,
        bytes=size,
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
        return f"{width}x{height} is smaller than a readable panoramic X-ray (min {limits.min_width}x{limits.min_height})"
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
