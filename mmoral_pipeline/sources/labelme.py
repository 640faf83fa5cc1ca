"""labelme JSON: one document per image, shapes with labels and point lists.

- Items: the `*.json` files under `<root>/<annotations>` (default: the root), relative to the
  root, sorted. A JSON that cannot be parsed is one rejected image (`malformed_json`); its shapes
  cannot be enumerated and so are not counted.
- Image: like labelme itself, the embedded `imageData` (base64) wins when present; otherwise
  `imagePath`, relative to the JSON's folder, which must stay inside the source root
  (`path_escapes_source`).
- Embedded images are decoded once and written to
  `$MMORAL_HOME/_extracted/<source>/<sha256>.<ext>` (or `options.extract_dir`), so later stages
  can open `ImageRecord.path` like any other image; `sha256`/`bytes` describe the decoded image.
  `ImageRecord.file_name` is then `<json relative path>#imageData` (the image lives inside the
  JSON); `image_id` is `make_image_id(source, <json relative path>)`.
- Labels: taxonomy names/synonyms (`options.class_map` extra synonyms) or FDI tooth labels,
  AKUDENTAL style: `'11 - Central Incisor'` -> tooth 11, `'Filling - Filling'` -> filling,
  `'Bridge - Bridge'` -> bridge. A shape-level score key (`options.score_field`, default
  `score`) is the score; a shape-level `fdi` key is the tooth, and with
  `options.group_id_is_fdi: true` (our synthetic labelme writer) a `group_id` that is an FDI
  number too. A `description` naming a lesion type (granuloma/cyst/abscess), a jaw region
  ('upper'/'lower') or a side ('upper left') sets lesion_type / extra.region / extra.side;
  `group_id`, `description`, `flags`, non-polygon `shape_type` also go to extra.
- Box from the points (polygon, rectangle; circle = centre + rim point); polygon shapes also keep
  the flat polygon.
- Size guards: a labelme file larger than an image of `max_image_pixels` could be is refused before
  it is parsed, and an embedded image whose header declares more than `max_image_pixels` pixels is
  refused before it is written or decoded (`image_too_large`).
- Duplicates: within a batch, a second JSON whose image is the same file (or the same embedded
  bytes) is `duplicate_image`, and its shapes are rejected (`image_rejected`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import math
import os
import re
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from mmoral_pipeline.config import SourcesFile, SourceSpec, mmoral_home
from mmoral_pipeline.domain import fdi as fdi_rules
from mmoral_pipeline.domain.records import ImageRecord, IngestBatch, Rejection, RejectReason
from mmoral_pipeline.domain.taxonomy import normalise_name, parse_lesion_type
from mmoral_pipeline.sources.base import make_image_id, resolve_inside
from mmoral_pipeline.sources.common import (
    add_image,
    as_floats,
    clean_extra,
    emit_annotation,
    flat_polygon,
    folder,
    name_map,
    reject_annotation,
    reject_for_image,
    reject_image,
    rel_to,
    score_field,
)

_FORMAT_SUFFIX = {"JPEG": ".jpg", "PNG": ".png", "TIFF": ".tif", "BMP": ".bmp", "GIF": ".gif", "WEBP": ".webp"}
_CONSUMED_SHAPE_KEYS = {"label", "points", "shape_type", "mask"}


def extract_dir(spec: SourceSpec) -> Path:
    """Where embedded images of this source are written (created on demand)."""
    configured = spec.options.get("extract_dir")
    if configured:
        return Path(configured).resolve() / spec.name
    home = mmoral_home()
    if "://" in home:  # remote MMORAL_HOME: extraction is a local cache
        return Path(tempfile.gettempdir()) / "mmoral_extracted" / spec.name
    return Path(home) / "_extracted" / spec.name


def extract_embedded(data: bytes, target_dir: Path) -> Path:
    """Write decoded image bytes once, content-addressed; returns the file path."""
    digest = hashlib.sha256(data).hexdigest()
    try:
        with Image.open(io.BytesIO(data)) as im:
            suffix = _FORMAT_SUFFIX.get(im.format or "", ".img")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        suffix = ".img"  # inspect_image will reject it with the right reason
    target = target_dir / f"{digest}{suffix}"
    if not target.exists() or target.stat().st_size != len(data):
        target_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target_dir, prefix=".part-")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
    return target


def max_document_bytes(max_pixels: int) -> int:
    """Largest labelme file read: base64 of an image of `max_pixels` at 8 bytes a pixel (uncompressed
    16-bit RGBA, the worst case), plus 16 MB of shapes."""
    return max_pixels * 8 * 4 // 3 + (16 << 20)


def embedded_too_large(data: bytes, max_pixels: int) -> str | None:
    """Why an embedded image is refused from its header alone (size over `max_pixels`, or a header
    Pillow calls a decompression bomb); None when it may be decoded."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                width, height = im.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        return f"embedded image: {exc}"
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return None  # not an image at all: inspect_image gives the right reason
    if width * height > max_pixels:
        return f"embedded image {width}x{height} = {width * height} pixels exceeds the limit of {max_pixels}"
    return None


def shape_box(shape_type: str, points: Any) -> list[float] | None:
    """Pixel box of a labelme shape; None when the points are malformed."""
    pts = []
    if not isinstance(points, list):
        return None
    for p in points:
        xy = as_floats(p[:2]) if isinstance(p, (list, tuple)) and len(p) >= 2 else None
        if xy is None:
            return None
        pts.append(xy)
    if not pts:
        return None
    if shape_type == "circle" and len(pts) >= 2:
        (cx, cy), (px, py) = pts[0], pts[1]
        r = math.hypot(px - cx, py - cy)
        return [cx - r, cy - r, cx + r, cy + r]
    xs = [p[0] for p in pts]
    ys = [p[1] for p in pts]
    if any(math.isnan(v) for v in xs + ys):
        return [math.nan] * 4
    return [min(xs), min(ys), max(xs), max(ys)]


def _int_or_none(v: Any) -> int | None:
    try:
        return int(v) if v is not None and not isinstance(v, bool) else None
    except (TypeError, ValueError):
        return None


_SIDE = re.compile(r"^(upper|lower)?\s*(left|right)?$")


def description_attrs(description: Any) -> tuple[str | None, dict[str, str]]:
    """Lesion type / jaw region / side named by a shape description ('cyst', 'lower', 'upper left')."""
    if not isinstance(description, str) or not description.strip():
        return None, {}
    lesion = parse_lesion_type(description)
    text = normalise_name(description)
    m = _SIDE.match(text)
    if lesion or not m or not text:
        return lesion, {}
    if m.group(1) and not m.group(2):
        return None, {"region": text}
    return None, {"side": text}


class LabelmeReader:
    """labelme per-image JSON (see module docstring)."""

    def _dirs(self, spec: SourceSpec, sources: SourcesFile) -> tuple[Path, Path]:
        root = sources.root_of(spec)
        return root, folder(spec, sources, spec.annotations, ".")

    def list_items(self, spec: SourceSpec, sources: SourcesFile) -> list[str]:
        root, ann_dir = self._dirs(spec, sources)
        if not ann_dir.is_dir():
            return []
        return sorted(rel_to(p, root) for p in ann_dir.rglob("*.json") if p.is_file())

    def read(self, spec: SourceSpec, sources: SourcesFile, items: Sequence[str] | None = None) -> IngestBatch:
        root, _ = self._dirs(spec, sources)
        batch = IngestBatch()
        keys = self.list_items(spec, sources) if items is None else sorted(items)
        seen_images: dict[str, str] = {}  # resolved image path or embedded sha256 -> first JSON
        for key in keys:
            self._read_one(spec, sources, root, key, batch, seen_images)
        return batch

    def _read_one(
        self,
        spec: SourceSpec,
        sources: SourcesFile,
        root: Path,
        key: str,
        batch: IngestBatch,
        seen_images: dict[str, str],
    ) -> None:
        src = spec.name
        json_path = resolve_inside(root, key)
        if json_path is None:
            reject_image(
                batch,
                source=src,
                path=key,
                reason=RejectReason.PATH_ESCAPES_SOURCE,
                message=f"{key!r} escapes the source folder",
            )
            return
        try:
            size = json_path.stat().st_size
            limit = max_document_bytes(sources.max_image_pixels)
            if size > limit:  # guard before parsing: the embedded image cannot be that large
                reject_image(
                    batch,
                    source=src,
                    path=str(json_path),
                    reason=RejectReason.IMAGE_TOO_LARGE,
                    message=f"{key}: {size} bytes exceeds the limit of {limit} for a labelme file (max_image_pixels)",
                )
                return
            with open(json_path, "rb") as fh:
                doc = json.loads(fh.read())
            if not isinstance(doc, dict) or not isinstance(doc.get("shapes", []), list):
                raise ValueError("not a labelme document (no shapes list)")
        except FileNotFoundError:
            reject_image(
                batch,
                source=src,
                path=str(json_path),
                reason=RejectReason.MISSING_ANNOTATIONS,
                message=f"{key} not found",
            )
            return
        except (OSError, ValueError) as exc:
            reject_image(
                batch, source=src, path=str(json_path), reason=RejectReason.MALFORMED_JSON, message=f"{key}: {exc}"
            )
            return
        shapes = doc.get("shapes") or []
        records = [f"shapes[{i}]" for i in range(len(shapes))]
        image = self._image(spec, sources, root, key, json_path, doc, batch, seen_images)
        if isinstance(image, Rejection):
            reject_for_image(batch, image, source=src, path=str(json_path), records=records)
            return
        sf = score_field(spec)
        nmap = name_map(spec)
        group_fdi = bool(spec.options.get("group_id_is_fdi", False))
        for i, shape in enumerate(shapes):
            record = records[i]
            if not isinstance(shape, dict):
                reject_annotation(
                    batch,
                    source=src,
                    path=str(json_path),
                    record=record,
                    reason=RejectReason.MALFORMED_RECORD,
                    message="shape is not an object",
                )
                continue
            shape_type = str(shape.get("shape_type") or "polygon")
            points = shape.get("points")
            box = shape_box(shape_type, points)
            polygon = flat_polygon(points) if shape_type == "polygon" else None
            extra = {k: v for k, v in shape.items() if k not in _CONSUMED_SHAPE_KEYS and k != sf}
            if shape_type != "polygon":
                extra["shape_type"] = shape_type
            fdi = shape.get("fdi")
            if fdi is None and group_fdi and fdi_rules.is_valid_fdi(_int_or_none(shape.get("group_id"))):
                fdi = shape.get("group_id")
            lesion, described = description_attrs(shape.get("description"))
            extra.update({k: v for k, v in described.items() if k not in extra})
            emit_annotation(
                batch, image=image, source_file=key, path=str(json_path), record=record,
                source_category=str(shape.get("label")), box=box, name_map=nmap, polygon=polygon,
                score=shape.get(sf), fdi=fdi, lesion_type=lesion, extra=clean_extra(extra),
            )

    def _image(
        self, spec: SourceSpec, sources: SourcesFile, root: Path, key: str, json_path: Path, doc: dict[str, Any],
        batch: IngestBatch, seen_images: dict[str, str],
    ) -> ImageRecord | Rejection:
        src = spec.name
        max_pixels = sources.max_image_pixels
        image_id = make_image_id(src, key)
        data = doc.get("imageData")
        if data:
            try:
                raw = base64.b64decode(data, validate=False)
            except (binascii.Error, ValueError, TypeError) as exc:
                return reject_image(
                    batch,
                    source=src,
                    path=str(json_path),
                    record="imageData",
                    reason=RejectReason.IMAGE_CORRUPT,
                    message=f"imageData is not base64: {exc}",
                )
            if not raw:
                return reject_image(
                    batch,
                    source=src,
                    path=str(json_path),
                    record="imageData",
                    reason=RejectReason.EMPTY_FILE,
                    message="imageData decodes to zero bytes",
                )
            too_large = embedded_too_large(raw, max_pixels)
            if too_large:  # refused from its header: never written to disk, never decoded
                return reject_image(
                    batch,
                    source=src,
                    path=str(json_path),
                    record="imageData",
                    reason=RejectReason.IMAGE_TOO_LARGE,
                    message=too_large,
                )
            digest = hashlib.sha256(raw).hexdigest()
            if digest in seen_images:
                return reject_image(
                    batch,
                    source=src,
                    path=str(json_path),
                    record="imageData",
                    reason=RejectReason.DUPLICATE_IMAGE,
                    message=f"same embedded image as {seen_images[digest]}",
                )
            seen_images[digest] = key
            target = extract_embedded(raw, extract_dir(spec))
            return add_image(
                batch,
                target,
                source=src,
                root=target.parent,
                max_pixels=max_pixels,
                image_id=image_id,
                file_name=f"{key}#imageData",
            )
        image_path = doc.get("imagePath")
        if not isinstance(image_path, str) or not image_path:
            return reject_image(
                batch,
                source=src,
                path=str(json_path),
                record="imagePath",
                reason=RejectReason.IMAGE_MISSING,
                message="neither imageData nor imagePath",
            )
        rel = (
            (Path(key).parent / image_path.replace("\\", "/")).as_posix()
            if not os.path.isabs(image_path)
            else image_path
        )
        path = resolve_inside(root, rel)
        if path is None:
            return reject_image(
                batch,
                source=src,
                path=image_path,
                record="imagePath",
                reason=RejectReason.PATH_ESCAPES_SOURCE,
                message=f"imagePath {image_path!r} escapes the source folder",
            )
        if str(path) in seen_images:
            return reject_image(
                batch,
                source=src,
                path=str(json_path),
                record="imagePath",
                reason=RejectReason.DUPLICATE_IMAGE,
                message=f"image {image_path!r} already used by {seen_images[str(path)]}",
            )
        seen_images[str(path)] = key
        return add_image(batch, path, source=src, root=root, max_pixels=max_pixels, image_id=image_id)
