"""Tufts Dental Database, Labelbox export (`teeth_bbox.json` / `teeth_polygon.json`).

A JSON list of records `{"External ID": "<image>", "Label": {"objects": [{"title": "<Universal>",
"bounding box": [...], "polygons": [[[x, y], ...], ...]}]}}`.

- Annotation file `spec.annotations` (default `teeth_bbox.json`), images under `spec.images`
  (default `images`), `External ID` relative to that folder.
- Titles are Universal tooth numbers ('1'-'32', 'A'-'T') -> FDI via `universal_to_fdi`; a
  title that is not a Universal number is resolved as a taxonomy name (else `unknown_class`).
- `options.box_order`: `xyxy` (default) or `yxyx`. Public sources disagree; on the shared
  `tufts_demo` record only `yxyx` gives tooth-shaped (taller than wide), correctly ordered boxes,
  so configure `box_order: yxyx` for Tufts data. Polygon points are `[x, y]` either way.
- Polygon variant: the largest polygon part becomes `polygon`; the box comes from
  `bounding box` when present, else from all polygon points; the number of parts goes to extra.
- Items: External IDs, sorted (+ `<file>#document` when the file cannot be parsed or holds
  malformed records). A repeated External ID is `duplicate_image` (its objects `image_rejected`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmoral_pipeline.config import SourcesFile, SourceSpec
from mmoral_pipeline.domain import fdi as fdi_rules
from mmoral_pipeline.domain.records import IngestBatch, Rejection, RejectReason
from mmoral_pipeline.domain.taxonomy import Category
from mmoral_pipeline.sources.base import resolve_inside
from mmoral_pipeline.sources.common import (
    DOCUMENT_ITEM_SUFFIX,
    Label,
    add_image,
    as_floats,
    clean_extra,
    emit_annotation,
    flat_polygon,
    folder,
    load_json,
    name_map,
    parse_label,
    polygon_box,
    reject_annotation,
    reject_for_image,
    reject_image,
    rel_to,
)

BOX_ORDERS = ("xyxy", "yxyx")


@dataclass(frozen=True)
class TuftsObject:
    record: str  # e.g. '[0].Label.objects[3]'
    title: str
    label: Label | RejectReason
    box: Any  # [x1, y1, x2, y2] or the raw value when malformed
    polygon: list[float] | None
    extra: dict[str, Any]


def tufts_label(title: Any, names: dict[str, str] | None = None) -> Label | RejectReason:
    """Universal number -> tooth with FDI; otherwise a taxonomy name."""
    try:
        return Label(Category.TOOTH, None, fdi_rules.universal_to_fdi(str(title)))
    except ValueError:
        parsed = parse_label(title, names)
        # a bare two-digit number here is a Universal number out of range, not an FDI label
        return RejectReason.INVALID_TOOTH if str(title).strip().isdigit() else parsed


def parse_tufts_object(
    obj: Any, record: str, box_order: str = "xyxy", names: dict[str, str] | None = None
) -> TuftsObject:
    if box_order not in BOX_ORDERS:
        raise ValueError(f"box_order must be one of {BOX_ORDERS}, got {box_order!r}")
    if not isinstance(obj, dict):
        return TuftsObject(record, "", RejectReason.MALFORMED_RECORD, None, None, {})
    title = str(obj.get("title"))
    parts = obj.get("polygons") if isinstance(obj.get("polygons"), list) else []
    polys = [p for p in (flat_polygon(part) for part in parts) if p]
    polygon = max(polys, key=len) if polys else None
    raw = obj.get("bounding box", obj.get("bbox"))
    box: Any = raw
    values = as_floats(raw)
    if values is not None and len(values) == 4:
        box = values if box_order == "xyxy" else [values[1], values[0], values[3], values[2]]
    elif raw is None and polys:
        box = polygon_box([c for p in polys for c in p])
    extra = {k: v for k, v in obj.items() if k not in {"title", "bounding box", "bbox", "polygons"}}
    if parts:
        extra["polygon_parts"] = len(parts)
    return TuftsObject(record, title, tufts_label(title, names), box, polygon, clean_extra(extra))


def parse_tufts(doc: Any, box_order: str = "xyxy") -> list[tuple[str, list[TuftsObject]]]:
    """(External ID, objects) per record of a Tufts Labelbox export (pure)."""
    out = []
    for i, rec in enumerate(doc if isinstance(doc, list) else []):
        if not isinstance(rec, dict) or not isinstance(rec.get("External ID"), str):
            continue
        objs = ((rec.get("Label") or {}).get("objects") or []) if isinstance(rec.get("Label"), dict) else []
        out.append(
            (
                rec["External ID"],
                [parse_tufts_object(o, f"[{i}].Label.objects[{k}]", box_order) for k, o in enumerate(objs)],
            )
        )
    return out


class TuftsReader:
    """Tufts Labelbox JSON (see module docstring)."""

    def _paths(self, spec: SourceSpec, sources: SourcesFile) -> tuple[Path, Path, Path, str]:
        root = sources.root_of(spec)
        ann = folder(spec, sources, spec.annotations, "teeth_bbox.json")
        return root, ann, folder(spec, sources, spec.images, "images"), rel_to(ann, root)

    def _doc(self, ann: Path) -> tuple[list[Any] | None, str | None]:
        if not os.path.exists(ann):
            return None, f"annotation file not found: {ann}"
        try:
            doc = load_json(ann)
        except (OSError, ValueError) as exc:
            return None, f"cannot parse {ann.name}: {exc}"
        if not isinstance(doc, list):
            return None, f"{ann.name} is not a JSON list of Labelbox records"
        return doc, None

    @staticmethod
    def _by_id(doc: list[Any]) -> tuple[dict[str, list[int]], list[int]]:
        by_id: dict[str, list[int]] = {}
        bad: list[int] = []
        for i, rec in enumerate(doc):
            if isinstance(rec, dict) and isinstance(rec.get("External ID"), str):
                by_id.setdefault(rec["External ID"], []).append(i)
            else:
                bad.append(i)
        return by_id, bad

    def list_items(self, spec: SourceSpec, sources: SourcesFile) -> list[str]:
        _, ann, _, ann_rel = self._paths(spec, sources)
        doc, _ = self._doc(ann)
        if doc is None:
            return [ann_rel + DOCUMENT_ITEM_SUFFIX]
        by_id, bad = self._by_id(doc)
        return sorted(list(by_id) + ([ann_rel + DOCUMENT_ITEM_SUFFIX] if bad else []))

    def read(self, spec: SourceSpec, sources: SourcesFile, items: Sequence[str] | None = None) -> IngestBatch:
        root, ann, images_dir, ann_rel = self._paths(spec, sources)
        box_order = str(spec.options.get("box_order", "xyxy")).lower()
        if box_order not in BOX_ORDERS:
            raise ValueError(f"source {spec.name!r}: options.box_order must be one of {BOX_ORDERS}, got {box_order!r}")
        batch = IngestBatch()
        src = spec.name
        doc_key = ann_rel + DOCUMENT_ITEM_SUFFIX
        want = None if items is None else set(items)
        doc, err = self._doc(ann)
        if doc is None:
            if want is None or doc_key in want:
                reason = RejectReason.MISSING_ANNOTATIONS if "not found" in (err or "") else RejectReason.MALFORMED_JSON
                reject_annotation(batch, source=src, path=str(ann), record="$", reason=reason, message=err or "")
            return batch
        by_id, bad = self._by_id(doc)
        if want is None or doc_key in want:
            for i in bad:
                reject_image(
                    batch,
                    source=src,
                    path=str(ann),
                    record=f"[{i}]",
                    reason=RejectReason.MALFORMED_RECORD,
                    message="record needs a string 'External ID'",
                )
        names = name_map(spec)
        keys = sorted(by_id) if want is None else sorted(k for k in want if k in by_id)
        for ext_id in keys:
            for order, i in enumerate(by_id[ext_id]):
                rec = doc[i]
                label = rec.get("Label")
                objs = (
                    label.get("objects") if isinstance(label, dict) and isinstance(label.get("objects"), list) else []
                )
                parsed = [
                    parse_tufts_object(o, f"[{i}].Label.objects[{k}]", box_order, names) for k, o in enumerate(objs)
                ]
                records = [p.record for p in parsed]
                if order > 0:
                    rej = reject_image(
                        batch,
                        source=src,
                        path=str(ann),
                        record=f"[{i}]",
                        reason=RejectReason.DUPLICATE_IMAGE,
                        message=f"External ID {ext_id!r} already in record [{by_id[ext_id][0]}]",
                    )
                    reject_for_image(batch, rej, source=src, path=str(ann), records=records)
                    continue
                path = resolve_inside(images_dir, ext_id)
                if path is None:
                    rej = reject_image(
                        batch,
                        source=src,
                        path=ext_id,
                        record=f"[{i}]",
                        reason=RejectReason.PATH_ESCAPES_SOURCE,
                        message=f"External ID {ext_id!r} escapes the image folder",
                    )
                    reject_for_image(batch, rej, source=src, path=str(ann), records=records)
                    continue
                image = add_image(batch, path, source=src, root=root, max_pixels=sources.max_image_pixels)
                if isinstance(image, Rejection):
                    reject_for_image(batch, image, source=src, path=str(ann), records=records)
                    continue
                for p in parsed:
                    emit_annotation(
                        batch,
                        image=image,
                        source_file=ann_rel,
                        path=str(ann),
                        record=p.record,
                        source_category=p.title,
                        box=p.box,
                        label=p.label,
                        polygon=p.polygon,
                        extra=p.extra,
                    )
        return batch
