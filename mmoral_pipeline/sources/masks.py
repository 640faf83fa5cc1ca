"""Mask formats: UFBA per-tooth OME-TIFF masks and DC1000 binary caries masks.

Masks become boxes with pure numpy (no scipy): foreground pixels are cut into horizontal runs,
runs are joined into connected components with a union-find over overlapping runs of adjacent
rows (8-connected by default), and the polygon is the convex hull of the component's pixel
corners (cheap: hull of run end points). Boxes use pixel edges: a component covering columns
10..20 has x1 = 10, x2 = 21.

UFBA (`ufba_masks`): `<images>/<name>.<ext>` (default images folder: the root) and
`<masks>/<name>/<name>_<FDI>.ome.tiff` (default masks folder `masks`), one file per tooth,
zero outside the tooth and one constant value inside. `<name>_background.*` is ignored (it is
not an annotation). One tooth annotation per mask file (all its pixels, even if split), FDI from
the file name; record = the mask file name. Items: image stems (plus mask folders without an image).

DC1000 (`dc1000_masks`): `images/<name>.png`, `labels/<name>.png` (binary 0/255 caries mask of
the same size); each connected component is one caries box (`options.category`, default
`caries`). Components under `options.min_area` pixels (default 1, i.e. keep all) are treated as
noise and are not inputs. Optional `colors/<name>.png` splits the same pixels into grey levels
102 / 153 / 255: undocumented by the dataset, probably lesion depth; the component's highest
level goes to extra as `depth` and the pixel count per level as `depth_pixels` (with a note).
Items: stems.

Both: two images (or two label masks) with one stem are `duplicate_stem` (the first in name order is
used). Every mask's header is read before its pixels: a header declaring more values than
`max_image_pixels` is `image_too_large`, and a UFBA mask whose header size differs from its image is
refused without decoding.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from mmoral_pipeline.config import SourcesFile, SourceSpec
from mmoral_pipeline.domain.records import ImageRecord, IngestBatch, RejectReason
from mmoral_pipeline.domain.taxonomy import Category
from mmoral_pipeline.sources.base import IMAGE_SUFFIXES
from mmoral_pipeline.sources.common import (
    Label,
    add_paired_image,
    emit_annotation,
    folder,
    reject_annotation,
    reject_image,
    rel_to,
)
from mmoral_pipeline.sources.dicom import alias_sop_uids

MASK_SUFFIXES = (".ome.tiff", ".ome.tif", ".tiff", ".tif", ".png")


# --------------------------------------------------------------------------- mask geometry


@dataclass
class Component:
    box: list[float]  # [x1, y1, x2, y2], pixel edges
    area: int  # pixels
    polygon: list[float]  # convex hull, flat
    runs: list[tuple[int, int, int]]  # (row, start, end exclusive)


class MaskTooLarge(ValueError):
    """The mask's header declares more pixels than the source allows (a decompression bomb)."""


def mask_header_shape(path: Path) -> tuple[int, ...]:
    """The array shape a mask file's header declares, read without decoding any pixel data.

    Pillow reads the header of PNG/TIFF/BMP lazily; TIFFs Pillow cannot open (e.g. some OME-TIFF
    layouts) are asked through `tifffile.TiffFile` (its series shape, from the IFDs). A header that
    Pillow itself calls a decompression bomb (over twice its pixel limit) is too large outright.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                bands = len(im.getbands())
                return (im.height, im.width) if bands == 1 else (im.height, im.width, bands)
    except Image.DecompressionBombError as exc:
        raise MaskTooLarge(str(exc)) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        import tifffile

        with tifffile.TiffFile(path) as tif:
            return tuple(int(n) for n in tif.series[0].shape)


def read_mask(path: Path, max_pixels: int, expected_size: tuple[int, int] | None = None) -> np.ndarray:
    """A 2-D mask array, decoded only after its header passed the size guard.

    `max_pixels`: the header's declared values (all planes) may not exceed it (MaskTooLarge).
    `expected_size` (width, height): a header of another size is refused before decoding (ValueError).
    PIL reads LZW int32 TIFFs without extra codecs; tifffile is the fallback decoder.
    """
    shape = mask_header_shape(path)
    declared = math.prod(shape)
    if declared > max_pixels:
        raise MaskTooLarge(
            f"header declares {'x'.join(map(str, shape))} = {declared} values, over the limit of {max_pixels}"
        )
    plane = tuple(d for d in shape if d > 1)[:2] if len(shape) > 2 else shape
    if expected_size is not None and len(plane) == 2 and plane != (expected_size[1], expected_size[0]):
        raise ValueError(f"mask {plane[1]}x{plane[0]} differs from image {expected_size[0]}x{expected_size[1]}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                arr = np.asarray(im)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise MaskTooLarge(str(exc)) from exc
    except Exception:
        import tifffile

        arr = tifffile.imread(path)
    arr = np.squeeze(arr)
    if arr.ndim == 3:  # colour mask: any channel set
        arr = arr.max(axis=-1)
    if arr.ndim != 2:
        raise ValueError(f"mask has shape {arr.shape}, expected 2-D")
    if expected_size is not None and arr.shape != (expected_size[1], expected_size[0]):
        raise ValueError(f"mask {arr.shape[1]}x{arr.shape[0]} differs from image {expected_size[0]}x{expected_size[1]}")
    return arr


def mask_runs(fg: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows, starts, ends (exclusive) of the horizontal foreground runs, in row-major order."""
    b = fg.astype(np.int8)
    d = np.diff(b, axis=1, prepend=0, append=0)
    rows_s, starts = np.nonzero(d == 1)
    _, ends = np.nonzero(d == -1)
    return rows_s, starts, ends


def _hull(points: list[tuple[float, float]]) -> list[float]:
    """Convex hull (Andrew's monotone chain), flat [x, y, ...], counter-clockwise."""
    pts = sorted(set(points))
    if len(pts) <= 2:
        return [c for p in pts for c in p]

    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower: list[tuple[float, float]] = []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    upper: list[tuple[float, float]] = []
    for p in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return [float(c) for p in lower[:-1] + upper[:-1] for c in p]


def _component(runs: list[tuple[int, int, int]]) -> Component:
    ys = [r[0] for r in runs]
    x1 = min(r[1] for r in runs)
    x2 = max(r[2] for r in runs)
    corners = [pt for (y, s, e) in runs for pt in ((s, y), (e, y), (s, y + 1), (e, y + 1))]
    return Component(
        box=[float(x1), float(min(ys)), float(x2), float(max(ys) + 1)],
        area=int(sum(e - s for _, s, e in runs)),
        polygon=_hull(corners),
        runs=runs,
    )


def whole_mask(fg: np.ndarray) -> Component | None:
    """All foreground pixels as one component; None when the mask is empty."""
    rows, starts, ends = mask_runs(fg)
    if len(rows) == 0:
        return None
    return _component(list(zip(rows.tolist(), starts.tolist(), ends.tolist(), strict=True)))


def connected_components(fg: np.ndarray, connectivity: int = 8) -> list[Component]:
    """Connected foreground components (4- or 8-connected), sorted top-to-bottom, left-to-right."""
    rows, starts, ends = mask_runs(fg)
    n = len(rows)
    if n == 0:
        return []
    rows_l, starts_l, ends_l = rows.tolist(), starts.tolist(), ends.tolist()
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    slack = 1 if connectivity == 8 else 0
    # index range of runs per row
    row_start: dict[int, int] = {}
    row_end: dict[int, int] = {}
    for i, r in enumerate(rows_l):
        row_start.setdefault(r, i)
        row_end[r] = i + 1
    for r in row_start:
        if r - 1 not in row_start:
            continue
        a, a_end = row_start[r - 1], row_end[r - 1]
        for i in range(row_start[r], row_end[r]):
            s, e = starts_l[i] - slack, ends_l[i] + slack
            k = a
            while k < a_end and ends_l[k] <= s:
                k += 1
            while k < a_end and starts_l[k] < e:
                ri, rk = find(i), find(k)
                if ri != rk:
                    parent[max(ri, rk)] = min(ri, rk)
                k += 1
            # runs of the previous row that end beyond this run may touch the next run too,
            # so the scan restarts from `a` each time; rows hold few runs, this stays cheap.
    groups: dict[int, list[tuple[int, int, int]]] = {}
    for i in range(n):
        groups.setdefault(find(i), []).append((rows_l[i], starts_l[i], ends_l[i]))
    comps = [_component(runs) for runs in groups.values()]
    comps.sort(key=lambda c: (c.box[1], c.box[0]))
    return comps


# --------------------------------------------------------------------------- helpers


def _stem_of(path: Path) -> str:
    name = path.name
    for suf in MASK_SUFFIXES + IMAGE_SUFFIXES:
        if name.lower().endswith(suf):
            return name[: -len(suf)]
    return path.stem


def _images_by_stem(images_dir: Path, exclude: Path | None = None, recursive: bool = True) -> dict[str, list[Path]]:
    """Stem (relative folder + name without suffix) -> every image file with it, in name order."""
    out: dict[str, list[Path]] = {}
    if not images_dir.is_dir():
        return out
    it = images_dir.rglob("*") if recursive else images_dir.iterdir()
    for p in sorted(it):
        if not p.is_file() or p.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if exclude is not None and p.is_relative_to(exclude):
            continue
        key = p.relative_to(images_dir).parent / _stem_of(p)
        out.setdefault(key.as_posix(), []).append(p)
    return out


def _first_of_stem(batch: IngestBatch, src: str, key: str, paths: list[Path] | None) -> Path | None:
    """The first image of a stem; the others are quarantined as `duplicate_stem` (a mask cannot say which it fits)."""
    if not paths:
        return None
    first, *others = paths
    for other in others:
        reject_image(
            batch,
            source=src,
            path=str(other),
            reason=RejectReason.DUPLICATE_STEM,
            message=f"{other.name} has the same stem {key!r} as {first.name}; "
            f"only {first.name} is paired with its masks",
        )
    return first


# --------------------------------------------------------------------------- UFBA


_UFBA_MASK = re.compile(r"^(?P<stem>.+)_(?P<tag>[^_]+)$")


class UfbaMasksReader:
    """UFBA-UESC per-tooth masks (see module docstring)."""

    def _dirs(self, spec: SourceSpec, sources: SourcesFile) -> tuple[Path, Path, Path]:
        root = sources.root_of(spec)
        return (
            root,
            folder(spec, sources, spec.images, "."),
            folder(spec, sources, spec.options.get("masks") or spec.annotations, "masks"),
        )

    def _maps(self, spec: SourceSpec, sources: SourcesFile) -> tuple[dict[str, list[Path]], dict[str, Path]]:
        _, images_dir, masks_dir = self._dirs(spec, sources)
        images = _images_by_stem(images_dir, exclude=masks_dir)
        masks = {p.name: p for p in sorted(masks_dir.iterdir()) if p.is_dir()} if masks_dir.is_dir() else {}
        return alias_sop_uids(images, masks, images_dir), masks

    def list_items(self, spec: SourceSpec, sources: SourcesFile) -> list[str]:
        images, masks = self._maps(spec, sources)
        return sorted(set(images) | set(masks))

    def read(self, spec: SourceSpec, sources: SourcesFile, items: Sequence[str] | None = None) -> IngestBatch:
        root, images_dir, _ = self._dirs(spec, sources)
        images, masks = self._maps(spec, sources)
        known = set(images) | set(masks)
        keys = sorted(known) if items is None else sorted(k for k in items if k in known)
        batch = IngestBatch()
        src = spec.name
        for key in keys:
            stem = Path(key).name
            mask_dir = masks.get(key) or masks.get(stem)
            mask_files = []
            if mask_dir is not None:
                for p in sorted(mask_dir.iterdir()):
                    if not p.is_file() or not p.name.lower().endswith(MASK_SUFFIXES):
                        continue
                    m = _UFBA_MASK.match(_stem_of(p))
                    if m and m.group("tag").lower() == "background":
                        continue  # the non-tooth pixels: not an annotation
                    mask_files.append(p)
            records = [p.name for p in mask_files]
            image_path = _first_of_stem(batch, src, key, images.get(key))
            image = add_paired_image(
                batch, image_path, source=src, root=root, max_pixels=sources.max_image_pixels,
                expected_path=images_dir / key, missing_message=f"no image for mask folder {key}",
                annotations_path=str(mask_dir or image_path), records=records,
            )
            if image is None:
                continue
            for p in mask_files:
                self._tooth(batch, image, root, p, sources.max_image_pixels)
        return batch

    def _tooth(self, batch: IngestBatch, image: ImageRecord, root: Path, path: Path, max_pixels: int) -> None:
        src = image.source
        record = path.name
        m = _UFBA_MASK.match(_stem_of(path))
        tag = m.group("tag") if m else _stem_of(path)
        common = dict(source=src, path=str(path), record=record)
        if not tag.isdigit():
            reject_annotation(
                batch, **common, reason=RejectReason.UNKNOWN_CLASS, message=f"mask tag {tag!r} is not an FDI tooth"
            )
            return
        try:
            arr = read_mask(path, max_pixels, expected_size=(image.width, image.height))
        except MaskTooLarge as exc:
            reject_annotation(batch, **common, reason=RejectReason.IMAGE_TOO_LARGE, message=f"mask not decoded: {exc}")
            return
        except Exception as exc:
            reject_annotation(batch, **common, reason=RejectReason.MALFORMED_RECORD, message=f"cannot read mask: {exc}")
            return
        fg = arr != 0
        comp = whole_mask(fg)
        if comp is None:
            reject_annotation(batch, **common, reason=RejectReason.BOX_ZERO_AREA, message="empty mask")
            return
        values = np.unique(arr[fg]).tolist()
        emit_annotation(
            batch, image=image, source_file=rel_to(path, root), path=str(path), record=record, source_category=tag,
            box=comp.box, label=Label(Category.TOOTH), fdi=tag, polygon=comp.polygon,
            extra={"mask_area": comp.area, "mask_value": values[0] if len(values) == 1 else values},
        )


# --------------------------------------------------------------------------- DC1000

DEPTH_NOTE = "DC1000 colors/ grey level (undocumented; probably lesion depth)"


class Dc1000MasksReader:
    """DC1000 caries masks (see module docstring)."""

    def _dirs(self, spec: SourceSpec, sources: SourcesFile) -> tuple[Path, Path, Path, Path]:
        o = spec.options
        return (
            sources.root_of(spec),
            folder(spec, sources, spec.images, "images"),
            folder(spec, sources, o.get("labels") or spec.annotations, "labels"),
            folder(spec, sources, o.get("colors"), "colors"),
        )

    def list_items(self, spec: SourceSpec, sources: SourcesFile) -> list[str]:
        _, images_dir, labels_dir, _ = self._dirs(spec, sources)
        labels = _images_by_stem(labels_dir)
        return sorted(set(alias_sop_uids(_images_by_stem(images_dir), labels, images_dir)) | set(labels))

    def read(self, spec: SourceSpec, sources: SourcesFile, items: Sequence[str] | None = None) -> IngestBatch:
        root, images_dir, labels_dir, colors_dir = self._dirs(spec, sources)
        images, labels, colors = (_images_by_stem(d) for d in (images_dir, labels_dir, colors_dir))
        images = alias_sop_uids(images, labels, images_dir)
        known = set(images) | set(labels)
        keys = sorted(known) if items is None else sorted(k for k in items if k in known)
        category = str(spec.options.get("category", "caries"))
        min_area = int(spec.options.get("min_area", 1))
        connectivity = int(spec.options.get("connectivity", 8))
        batch = IngestBatch()
        src = spec.name
        max_pixels = sources.max_image_pixels
        for key in keys:
            label_path, *extra_labels = labels.get(key) or [None]
            for other in extra_labels:  # labels/x.png and labels/x.tif: one mask per image
                reject_annotation(
                    batch,
                    source=src,
                    path=str(other),
                    record=other.name,
                    reason=RejectReason.DUPLICATE_STEM,
                    message=f"{other.name} has the same stem {key!r} as {label_path.name}, which is the mask used",
                )
            comps: list[Component] = []
            label_arr = None
            label_error = None
            label_reason = RejectReason.MALFORMED_RECORD
            if label_path is not None:
                try:
                    label_arr = read_mask(label_path, max_pixels)
                    comps = [c for c in connected_components(label_arr != 0, connectivity) if c.area >= min_area]
                except MaskTooLarge as exc:
                    label_error, label_reason = f"mask not decoded: {exc}", RejectReason.IMAGE_TOO_LARGE
                except Exception as exc:
                    label_error = f"cannot read mask: {exc}"
            records = [f"{label_path.name}#component{k}" for k in range(len(comps))] if label_path else []
            if label_error:
                records = [label_path.name]
            image_path = _first_of_stem(batch, src, key, images.get(key))
            image = add_paired_image(
                batch, image_path, source=src, root=root, max_pixels=sources.max_image_pixels,
                expected_path=images_dir / key, missing_message=f"no image for mask {key}",
                annotations_path=str(label_path or image_path), records=records,
            )
            if image is None:
                continue
            if label_path is None:
                continue  # an image without a mask: no caries
            if label_error or label_arr is None:
                reject_annotation(
                    batch,
                    source=src,
                    path=str(label_path),
                    record=records[0],
                    reason=label_reason,
                    message=label_error or "unreadable",
                )
                continue
            if label_arr.shape != (image.height, image.width):
                for r in records:
                    reject_annotation(
                        batch,
                        source=src,
                        path=str(label_path),
                        record=r,
                        reason=RejectReason.MALFORMED_RECORD,
                        message=f"mask {label_arr.shape[::-1]} differs from image {image.width}x{image.height}",
                    )
                continue
            depth = None
            if key in colors:
                try:
                    depth = read_mask(colors[key][0], max_pixels)
                    if depth.shape != label_arr.shape:
                        depth = None
                except Exception:
                    depth = None
            for comp, record in zip(comps, records, strict=True):
                extra: dict = {"mask_area": comp.area}
                if depth is not None:
                    levels: dict[int, int] = {}
                    for y, s, e in comp.runs:
                        vals, counts = np.unique(depth[y, s:e], return_counts=True)
                        for v, c in zip(vals.tolist(), counts.tolist(), strict=True):
                            if v:
                                levels[v] = levels.get(v, 0) + c
                    if levels:
                        extra.update(
                            depth=max(levels),
                            depth_pixels={str(k): v for k, v in sorted(levels.items())},
                            depth_note=DEPTH_NOTE,
                        )
                emit_annotation(
                    batch, image=image, source_file=rel_to(label_path, root), path=str(label_path), record=record,
                    source_category=category, box=comp.box, polygon=comp.polygon, extra=extra,
                )
        return batch
