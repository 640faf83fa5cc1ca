"""Generic COCO detection JSON (also the layout our synthetic generator writes).

Layout: `<root>/<annotations>` (default `annotations.json`), images under `<root>/<images>`
(default `images/`), `images[].file_name` relative to that folder.

- Items: the distinct `images[].file_name` values, sorted. When the document has problems that
  belong to no image (unparseable JSON, malformed entries, annotations whose `image_id` names no
  image) one more item, `<annotation file>#document`, carries them, so exactly one shard
  reports them.
- Categories by name through `unify_category` (optional `options.class_map`, source name ->
  unified name); a category named like an FDI tooth ('11'..'48', 'tooth 36') is a tooth with
  that number. FDI also from `attributes.fdi` / `attributes.tooth` (or a top-level `fdi`).
- `bbox` is `[x, y, w, h]`; without a bbox the box comes from the polygon `segmentation`.
- Score from `options.score_field` (default `score`), top level or in `attributes`;
  `attributes.lesion_type` (granuloma / cyst / abscess); everything else left over
  (`attributes.region`, the source `id`, ...) goes to `extra`.
- Duplicates: a second `images[]` entry with an id already taken is `duplicate_id` (the
  annotations with that id belong to the first); a second entry with the same `file_name` is
  `duplicate_image`; a second annotation with an id already taken is `duplicate_id`.
"""

from __future__ import annotations

import functools
import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmoral_pipeline.config import SourcesFile, SourceSpec
from mmoral_pipeline.domain.geometry import xywh_to_xyxy
from mmoral_pipeline.domain.records import IngestBatch, Rejection, RejectReason
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
    polygon_box,
    reject_annotation,
    reject_for_image,
    reject_image,
    rel_to,
    score_field,
)

# Standard COCO annotation keys that are consumed (or derived) and so not copied to `extra`.
_CONSUMED_ANN_KEYS = {"image_id", "category_id", "bbox", "segmentation", "area", "attributes", "fdi", "lesion_type"}
_CONSUMED_ATTR_KEYS = {"fdi", "tooth", "lesion_type"}


@dataclass
class DocProblem:
    kind: str  # "image" | "annotation"
    record: str
    reason: RejectReason
    message: str


@dataclass
class CocoIndex:
    """The structure of one COCO document, independent of which shard is read."""

    doc: dict[str, Any] | None
    images_by_name: dict[str, list[int]] = field(default_factory=dict)  # file_name -> images[] indices
    owner_of_id: dict[Any, int] = field(default_factory=dict)  # image id -> first images[] index
    anns_by_image: dict[Any, list[int]] = field(default_factory=lambda: defaultdict(list))
    duplicate_ann: dict[int, int] = field(default_factory=dict)  # annotations[] index -> first index
    problems: list[DocProblem] = field(default_factory=list)


def _hashable(v: Any) -> bool:
    return isinstance(v, (int, str)) and not isinstance(v, bool)


def index_coco(doc: Any) -> CocoIndex:
    """Index a parsed COCO document; structural problems become DocProblems (never exceptions)."""
    if (
        not isinstance(doc, dict)
        or not isinstance(doc.get("images", []), list)
        or not isinstance(doc.get("annotations", []), list)
    ):
        return CocoIndex(
            doc=None,
            problems=[
                DocProblem(
                    "annotation", "$", RejectReason.MALFORMED_JSON, "not a COCO document (no images/annotations lists)"
                )
            ],
        )
    idx = CocoIndex(doc=doc)
    for i, entry in enumerate(doc.get("images", [])):
        if not isinstance(entry, dict) or not isinstance(entry.get("file_name"), str) or not _hashable(entry.get("id")):
            idx.problems.append(
                DocProblem(
                    "image",
                    f"images[{i}]",
                    RejectReason.MALFORMED_RECORD,
                    "image entry needs a string file_name and an id",
                )
            )
            continue
        idx.images_by_name.setdefault(entry["file_name"], []).append(i)
        idx.owner_of_id.setdefault(entry["id"], i)
    seen_ann_ids: dict[Any, int] = {}
    for j, ann in enumerate(doc.get("annotations", [])):
        if not isinstance(ann, dict) or not _hashable(ann.get("image_id")):
            idx.problems.append(
                DocProblem(
                    "annotation", f"annotations[{j}]", RejectReason.MALFORMED_RECORD, "annotation needs an image_id"
                )
            )
            continue
        if ann["image_id"] not in idx.owner_of_id:
            idx.problems.append(
                DocProblem(
                    "annotation",
                    f"annotations[{j}]",
                    RejectReason.IMAGE_MISSING,
                    f"image_id {ann['image_id']!r} names no image",
                )
            )
            continue
        aid = ann.get("id")
        if _hashable(aid):
            if aid in seen_ann_ids:
                idx.duplicate_ann[j] = seen_ann_ids[aid]
            else:
                seen_ann_ids[aid] = j
        idx.anns_by_image[ann["image_id"]].append(j)
    return idx


@functools.lru_cache(maxsize=8)
def _index_cached(path: str, mtime_ns: int, ctime_ns: int, size: int) -> CocoIndex | str:
    try:
        doc = load_json(Path(path))
    except (OSError, ValueError) as exc:
        return f"cannot parse {Path(path).name}: {exc}"
    return index_coco(doc)


@dataclass
class Candidate:
    """One annotation a source record yields, before validation against its image."""

    record: str
    source_category: str
    label: Label | RejectReason | None
    box: Any
    fdi: Any = None
    polygon: list[float] | None = None
    score: Any = None
    lesion_type: str | None = None
    extra: dict[str, Any] | None = None


class CocoReader:
    """COCO detection JSON (see module docstring)."""

    default_annotations = "annotations.json"
    default_images = "images"

    # ---------------------------------------------------------------- hooks
    def candidates(self, ann: dict[str, Any], j: int, doc: dict[str, Any], spec: SourceSpec) -> list[Candidate]:
        categories = _categories(doc.get("categories"))
        cat_id = ann.get("category_id")
        name = categories.get(cat_id) if _hashable(cat_id) else None
        attrs = ann.get("attributes") if isinstance(ann.get("attributes"), dict) else {}
        sf = score_field(spec)
        fdi = attrs.get("fdi", attrs.get("tooth", ann.get("fdi")))
        score = ann.get(sf, attrs.get(sf))
        lesion = attrs.get("lesion_type", ann.get("lesion_type"))
        polygon = _segmentation_polygon(ann.get("segmentation"))
        extra = {k: v for k, v in ann.items() if k not in _CONSUMED_ANN_KEYS and k != sf}
        if not ann.get("iscrowd"):
            extra.pop("iscrowd", None)
        extra.update({k: v for k, v in attrs.items() if k not in _CONSUMED_ATTR_KEYS and k != sf})
        if ann.get("attributes") is not None and not isinstance(ann.get("attributes"), dict):
            extra["attributes"] = ann["attributes"]
        return [
            Candidate(
                record=f"annotations[{j}]",
                source_category=str(name if name is not None else cat_id),
                label=None if name is not None else RejectReason.UNKNOWN_CLASS,
                box=_coco_box(ann, polygon),
                fdi=fdi,
                polygon=polygon,
                score=score,
                lesion_type=str(lesion) if lesion is not None else None,
                extra=clean_extra(extra),
            )
        ]

    # ---------------------------------------------------------------- contract
    def _paths(self, spec: SourceSpec, sources: SourcesFile) -> tuple[Path, Path, Path, str]:
        root = sources.root_of(spec)
        ann_path = folder(spec, sources, spec.annotations, self.default_annotations)
        images_dir = folder(spec, sources, spec.images, self.default_images)
        return root, ann_path, images_dir, rel_to(ann_path, root)

    def _index(self, ann_path: Path) -> CocoIndex | str:
        try:
            st = os.stat(ann_path)
        except OSError:
            return f"annotation file not found: {ann_path}"
        return _index_cached(str(ann_path), st.st_mtime_ns, st.st_ctime_ns, st.st_size)

    def list_items(self, spec: SourceSpec, sources: SourcesFile) -> list[str]:
        _, ann_path, _, ann_rel = self._paths(spec, sources)
        index = self._index(ann_path)
        if isinstance(index, str):
            return [ann_rel + DOCUMENT_ITEM_SUFFIX]
        keys = list(index.images_by_name)
        if index.problems:
            keys.append(ann_rel + DOCUMENT_ITEM_SUFFIX)
        return sorted(keys)

    def read(self, spec: SourceSpec, sources: SourcesFile, items: Sequence[str] | None = None) -> IngestBatch:
        root, ann_path, images_dir, ann_rel = self._paths(spec, sources)
        batch = IngestBatch()
        src = spec.name
        doc_key = ann_rel + DOCUMENT_ITEM_SUFFIX
        want = None if items is None else set(items)
        index = self._index(ann_path)
        if isinstance(index, str):
            if want is None or doc_key in want:
                reason = RejectReason.MISSING_ANNOTATIONS if "not found" in index else RejectReason.MALFORMED_JSON
                reject_annotation(batch, source=src, path=str(ann_path), record="$", reason=reason, message=index)
            return batch
        if want is None or doc_key in want:
            for p in index.problems:
                if p.kind == "image":
                    reject_image(
                        batch, source=src, path=str(ann_path), record=p.record, reason=p.reason, message=p.message
                    )
                else:
                    reject_annotation(
                        batch, source=src, path=str(ann_path), record=p.record, reason=p.reason, message=p.message
                    )
        if index.doc is None:
            return batch
        doc = index.doc
        images, anns = doc.get("images", []), doc.get("annotations", [])
        max_pixels = sources.max_image_pixels
        names = sorted(index.images_by_name) if want is None else sorted(k for k in want if k in index.images_by_name)
        for name in names:
            entries = index.images_by_name[name]
            for order, i in enumerate(entries):
                entry = images[i]
                owns_id = index.owner_of_id[entry["id"]] == i
                ann_idx = index.anns_by_image.get(entry["id"], []) if owns_id else []
                cands = [(j, c) for j in ann_idx for c in self.candidates(anns[j], j, doc, spec)]
                records = [c.record for _, c in cands]
                if not owns_id:
                    reject_image(
                        batch, source=src, path=str(ann_path), record=f"images[{i}]", reason=RejectReason.DUPLICATE_ID,
                        message=f"image id {entry['id']!r} already used by images[{index.owner_of_id[entry['id']]}]",
                    )
                    continue
                if order > 0:
                    rej = reject_image(
                        batch,
                        source=src,
                        path=str(ann_path),
                        record=f"images[{i}]",
                        reason=RejectReason.DUPLICATE_IMAGE,
                        message=f"file_name {name!r} already listed as images[{entries[0]}]",
                    )
                    reject_for_image(batch, rej, source=src, path=str(ann_path), records=records)
                    continue
                path = resolve_inside(images_dir, name)
                if path is None:
                    rej = reject_image(
                        batch, source=src, path=name, record=f"images[{i}]", reason=RejectReason.PATH_ESCAPES_SOURCE,
                        message=f"file_name {name!r} escapes the image folder",
                    )
                    reject_for_image(batch, rej, source=src, path=str(ann_path), records=records)
                    continue
                result = add_image(batch, path, source=src, root=root, max_pixels=max_pixels)
                if isinstance(result, Rejection):
                    reject_for_image(batch, result, source=src, path=str(ann_path), records=records)
                    continue
                for j, c in cands:
                    if j in index.duplicate_ann:
                        reject_annotation(
                            batch,
                            source=src,
                            path=str(ann_path),
                            record=c.record,
                            reason=RejectReason.DUPLICATE_ID,
                            message=f"annotation id {anns[j].get('id')!r} already used by "
                            f"annotations[{index.duplicate_ann[j]}]",
                        )
                        continue
                    emit_annotation(
                        batch, image=result, source_file=ann_rel, path=str(ann_path), record=c.record,
                        source_category=c.source_category, box=c.box, label=c.label, name_map=name_map(spec),
                        fdi=c.fdi, polygon=c.polygon, score=c.score, lesion_type=c.lesion_type, extra=c.extra,
                    )
        return batch


def _categories(cats: Any) -> dict[Any, str]:
    out: dict[Any, str] = {}
    if isinstance(cats, list):
        for c in cats:
            if isinstance(c, dict) and _hashable(c.get("id")) and c.get("name") is not None:
                out[c["id"]] = str(c["name"])
    return out


def _segmentation_polygon(seg: Any) -> list[float] | None:
    """The largest polygon of a COCO segmentation (RLE masks give None)."""
    if not isinstance(seg, list) or not seg:
        return None
    parts = seg if isinstance(seg[0], list) else [seg]
    polys = [p for p in (flat_polygon(part) for part in parts) if p]
    return max(polys, key=len) if polys else None


def _coco_box(ann: dict[str, Any], polygon: list[float] | None) -> Any:
    bbox = ann.get("bbox")
    if bbox is None and polygon:
        return polygon_box(polygon)
    values = as_floats(bbox)
    if values is None or len(values) != 4:
        return bbox  # emit_annotation reports it as malformed
    return list(xywh_to_xyxy(*values))
