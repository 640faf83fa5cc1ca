"""Building blocks every reader shares, so that accounting balances by construction.

Each *input* a reader meets passes through exactly one of these calls, which also counts it:

- images:      `add_image` (inspects the file; accepts or rejects) or `reject_image`
- annotations: `emit_annotation` (validates category, FDI, box; accepts or rejects),
               `reject_annotation`, or `reject_for_image` (the image was missing / rejected)

So `IngestBatch.counts_balance()` holds whatever a reader does, as long as it never touches
`images_seen` / `annotations_seen` itself. Each image seen also ticks the ingest's progress.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from mmoral_pipeline import progress
from mmoral_pipeline.config import PanoramicLimits, SourcesFile, SourceSpec
from mmoral_pipeline.domain import fdi as fdi_rules
from mmoral_pipeline.domain.records import (
    AnnotationRecord,
    ImageRecord,
    IngestBatch,
    Rejection,
    RejectReason,
    stable_id,
)
from mmoral_pipeline.domain.taxonomy import Category, parse_lesion_type, unify_category
from mmoral_pipeline.sources.base import check_box, inspect_image, panoramic_problem

# Pseudo item for problems that belong to no image (unparseable document, orphan annotations).
# It appears in `list_items` only when such problems exist, so that exactly one shard reports them.
DOCUMENT_ITEM_SUFFIX = "#document"


# --------------------------------------------------------------------------- labels


@dataclass(frozen=True)
class Label:
    """A source label resolved onto the taxonomy."""

    category: Category
    lesion_type: str | None = None
    fdi: int | None = None


_FDI_LABEL = re.compile(r"^\s*(?:tooth[\s_\-]*)?(\d{2})(?:\s*[-:_\s]\s*.*)?\s*$", re.IGNORECASE)


def parse_label(name: Any, name_map: dict[str, str] | None = None) -> Label | RejectReason:
    """Resolve a source label: a taxonomy name/synonym, or an FDI tooth label.

    Tooth labels: '36', 'tooth 36', '11 - Central Incisor' (AKUDENTAL). A two-digit label that is
    not an FDI tooth gives INVALID_TOOTH; anything else unknown gives UNKNOWN_CLASS.
    """
    if name is None:
        return RejectReason.UNKNOWN_CLASS
    text = str(name)
    unified = unify_category(text, name_map)
    if unified is not None:
        return Label(unified[0], unified[1])
    m = _FDI_LABEL.match(text)
    if m:
        number = int(m.group(1))
        if fdi_rules.is_valid_fdi(number):
            return Label(Category.TOOTH, None, number)
        return RejectReason.INVALID_TOOTH
    return RejectReason.UNKNOWN_CLASS


def parse_fdi(value: Any) -> int | RejectReason | None:
    """An FDI number from a source attribute; None when absent, INVALID_TOOTH when not a tooth."""
    if value is None or value == "":
        return None
    if isinstance(value, float):  # e.g. a Float64 manifest column: 36.0 is tooth 36
        if not value.is_integer():
            return RejectReason.INVALID_TOOTH
        value = int(value)
    try:
        number = int(str(value).strip())
    except ValueError:
        return RejectReason.INVALID_TOOTH
    return number if fdi_rules.is_valid_fdi(number) else RejectReason.INVALID_TOOTH


def as_floats(values: Any) -> list[float] | None:
    """Numbers as floats (NaN kept so `check_box` reports it); None when not a list of numbers."""
    if not isinstance(values, (list, tuple)):
        return None
    out: list[float] = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            if v is None:
                out.append(math.nan)
                continue
            try:
                out.append(float(v))
            except (TypeError, ValueError):
                return None
            continue
        out.append(float(v))
    return out


def as_score(value: Any) -> float | RejectReason | None:
    if value is None:
        return None
    try:
        score = float(value)
    except (TypeError, ValueError):
        return RejectReason.MALFORMED_RECORD
    if math.isnan(score) or math.isinf(score):
        return RejectReason.MALFORMED_RECORD
    return score


def flat_polygon(points: Any) -> list[float] | None:
    """[[x, y], ...] or [x, y, ...] as a flat float list; None when malformed or under 3 points."""
    if not isinstance(points, (list, tuple)) or not points:
        return None
    if isinstance(points[0], (list, tuple)):
        flat: list[float] = []
        for p in points:
            if not isinstance(p, (list, tuple)) or len(p) < 2:
                return None
            xy = as_floats(list(p[:2]))
            if xy is None:
                return None
            flat.extend(xy)
    else:
        flat = as_floats(list(points)) or []
        if len(flat) % 2:
            return None
    if len(flat) < 6 or any(math.isnan(v) or math.isinf(v) for v in flat):
        return None
    return flat


def polygon_box(flat: Sequence[float]) -> list[float]:
    xs, ys = flat[0::2], flat[1::2]
    return [min(xs), min(ys), max(xs), max(ys)]


def clean_extra(d: dict[str, Any]) -> dict[str, Any]:
    """Leftover attributes without empty values (None, '', {}, [])."""
    return {k: v for k, v in d.items() if v not in (None, "", {}, [])}


# --------------------------------------------------------------------------- accounting


def reject_image(
    batch: IngestBatch, *, source: str, path: str, reason: RejectReason, message: str, record: str | None = None
) -> Rejection:
    batch.images_seen += 1
    progress.tick(rejected=1)
    rej = Rejection(source=source, path=path, record=record, reason=reason, message=message, kind="image")
    batch.reject(rej)
    return rej


def add_image(
    batch: IngestBatch,
    path: Path,
    *,
    source: str,
    root: Path,
    max_pixels: int,
    image_id: str | None = None,
    file_name: str | None = None,
) -> ImageRecord | Rejection:
    """Inspect one image file and record the outcome (counted as one image seen).

    Image ids are unique by construction: an image whose id an accepted image of the batch already
    holds (`a/b.png`, `a_b.png` and `a b.jpg` all clean to `<source>-a_b`) is quarantined as
    `id_collision`, never merged with the first (shards keep such files together: `batches.shard_items`).
    """
    batch.images_seen += 1
    result = inspect_image(path, source=source, root=root, max_pixels=max_pixels, image_id=image_id)
    progress.tick(rejected=int(isinstance(result, Rejection)))
    if isinstance(result, Rejection):
        batch.reject(result)
        return result
    if file_name is not None:
        result = result.model_copy(update={"file_name": file_name})
    owner = batch.id_owner(result.image_id)
    if owner is not None:
        rej = Rejection(
            source=source,
            path=str(path),
            reason=RejectReason.ID_COLLISION,
            message=f"image id {result.image_id!r} of {result.file_name} is already taken by {owner}: "
            "rename one of them",
        )
        batch.reject(rej)
        return rej
    batch.accept_image(result)
    return result


def reject_annotation(
    batch: IngestBatch, *, source: str, path: str, record: str, reason: RejectReason, message: str
) -> None:
    batch.annotations_seen += 1
    batch.reject(Rejection(source=source, path=path, record=record, reason=reason, message=message, kind="annotation"))


def reject_for_image(
    batch: IngestBatch, image: Rejection, *, source: str, path: str, records: Iterable[str]
) -> None:
    """Reject the annotations of an image that is missing (image_missing) or was quarantined (image_rejected)."""
    missing = image.reason == RejectReason.IMAGE_MISSING
    reason = RejectReason.IMAGE_MISSING if missing else RejectReason.IMAGE_REJECTED
    why = "image missing" if missing else f"image rejected ({image.reason.value})"
    for record in records:
        reject_annotation(batch, source=source, path=path, record=record, reason=reason, message=f"{why}: {image.path}")


def quarantine_not_panoramic(batch: IngestBatch, limits: PanoramicLimits) -> int:
    """Move accepted images whose shape rules out an OPG (`panoramic_problem`) to the quarantine,
    with their annotations (`image_rejected`). Counts still balance: nothing is seen twice."""
    bad = {i.image_id: (i, why) for i in batch.images if (why := panoramic_problem(i.width, i.height, limits))}
    if not bad:
        return 0
    batch.images = [i for i in batch.images if i.image_id not in bad]
    for image, why in bad.values():
        batch.reject(
            Rejection(
                source=image.source, path=image.path, reason=RejectReason.NOT_PANORAMIC, message=why, kind="image"
            )
        )
    kept = []
    for ann in batch.annotations:
        if ann.image_id in bad:
            batch.reject(
                Rejection(
                    source=ann.source,
                    path=ann.source_file,
                    record=ann.record,
                    reason=RejectReason.IMAGE_REJECTED,
                    message=f"image rejected (not_panoramic): {bad[ann.image_id][0].path}",
                    kind="annotation",
                )
            )
        else:
            kept.append(ann)
    batch.annotations = kept
    return len(bad)


def add_paired_image(
    batch: IngestBatch,
    image_path: Path | None,
    *,
    source: str,
    root: Path,
    max_pixels: int,
    expected_path: Path,
    missing_message: str,
    annotations_path: str,
    records: Iterable[str],
) -> ImageRecord | None:
    """The image paired with an annotation file (mask formats), or None after rejecting the image
    (missing or quarantined) together with every annotation record that depended on it."""
    if image_path is None:
        rej = reject_image(
            batch, source=source, path=str(expected_path), reason=RejectReason.IMAGE_MISSING, message=missing_message
        )
        reject_for_image(batch, rej, source=source, path=annotations_path, records=records)
        return None
    image = add_image(batch, image_path, source=source, root=root, max_pixels=max_pixels)
    if isinstance(image, Rejection):
        reject_for_image(batch, image, source=source, path=annotations_path, records=records)
        return None
    return image


def emit_annotation(
    batch: IngestBatch,
    *,
    image: ImageRecord,
    source_file: str,
    path: str,
    record: str,
    source_category: str,
    box: Sequence[float] | None,
    label: Label | RejectReason | None = None,
    name_map: dict[str, str] | None = None,
    fdi: Any = None,
    polygon: Sequence[float] | None = None,
    score: Any = None,
    lesion_type: str | None = None,
    extra: dict[str, Any] | None = None,
    annotation_id: str | None = None,
) -> AnnotationRecord | Rejection:
    """Validate and record one annotation (counted as one annotation seen).

    `label` is the resolved label (or the reason it could not be resolved); when None it is
    resolved from `source_category`. An explicit `fdi` wins over one found in the label.
    `source_file` is relative to the source root (stable ids); `path` is the file to point at in
    rejections.
    """
    source = image.source

    def _reject(reason: RejectReason, message: str) -> Rejection:
        reject_annotation(batch, source=source, path=path, record=record, reason=reason, message=message)
        return batch.rejections[-1]

    if label is None:
        label = parse_label(source_category, name_map)
    if isinstance(label, RejectReason):
        return _reject(
            label,
            f"{'not an FDI tooth' if label == RejectReason.INVALID_TOOTH else 'unknown class'}: {source_category!r}",
        )
    tooth = parse_fdi(fdi) if fdi is not None else label.fdi
    if isinstance(tooth, RejectReason):
        return _reject(tooth, f"not an FDI tooth: {fdi!r}")
    # A tooth without a number is still accepted: the attribute stage decides what to do with it.
    s = as_score(score)
    if isinstance(s, RejectReason):
        return _reject(s, f"score is not a number: {score!r}")
    values = as_floats(box) if box is not None else None
    if values is None or len(values) != 4:
        return _reject(RejectReason.BOX_MALFORMED, f"box is not four numbers: {box!r}")
    problem = check_box(values, image.width, image.height, source=source, path=path, record=record)
    if problem is not None:
        batch.annotations_seen += 1
        batch.reject(problem)
        return problem
    lesion = parse_lesion_type(lesion_type) if lesion_type else label.lesion_type
    try:
        ann = AnnotationRecord(
            annotation_id=annotation_id or stable_id(source, source_file, record),
            image_id=image.image_id,
            source=source,
            source_file=source_file,
            record=record,
            source_category=str(source_category),
            category=label.category,
            lesion_type=lesion,
            fdi=tooth,
            box=values,
            polygon=list(polygon) if polygon else None,
            score=s,
            extra=AnnotationRecord.dump_extra(extra),
        )
    except (ValidationError, TypeError, ValueError) as exc:  # last safety net: never abort a batch
        return _reject(RejectReason.MALFORMED_RECORD, f"invalid record: {exc}")
    batch.annotations_seen += 1
    batch.annotations.append(ann)
    return ann


# --------------------------------------------------------------------------- files


def folder(spec: SourceSpec, sources: SourcesFile, value: str | None, default: str) -> Path:
    """A configured folder/file under the source root (config is trusted: it may point elsewhere)."""
    root = sources.root_of(spec)
    p = Path(value if value is not None else default)
    return (p if p.is_absolute() else root / p).resolve()


def rel_to(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


@functools.lru_cache(maxsize=8)
def _load_json_cached(path: str, mtime_ns: int, ctime_ns: int, size: int) -> Any:
    with open(path, "rb") as fh:
        return json.loads(fh.read())


def load_json(path: Path) -> Any:
    """Parse a JSON file, cached by (path, mtime, ctime, size): shard reads re-use one parse.

    Callers must not mutate the result. Raises OSError / ValueError like json.load.
    """
    st = os.stat(path)
    return _load_json_cached(str(path), st.st_mtime_ns, st.st_ctime_ns, st.st_size)


def score_field(spec: SourceSpec) -> str:
    return str(spec.options.get("score_field", "score"))


def name_map(spec: SourceSpec) -> dict[str, str] | None:
    m = spec.options.get("class_map")
    return {str(k): str(v) for k, v in m.items()} if isinstance(m, dict) else None
