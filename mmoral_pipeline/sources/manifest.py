"""This project's own manifest: a Parquet or JSONL table of annotation rows.

File: `spec.annotations` (default `manifest.parquet`, else `manifest.jsonl`); `.parquet`/`.pq`
is read with pyarrow, `.jsonl`/`.ndjson` line by line, `.json` as a list of rows.

Columns (the `raw_annotations` columns plus the image's file name):
`file_name` (required, relative to `<root>/<images>`, default images folder: the root),
`category` (unified name or any synonym / FDI tooth label), `box` `[x1, y1, x2, y2]` pixels (or
columns `x1, y1, x2, y2`), optional `fdi`, `score` (or `options.score_field`), `polygon`,
`lesion_type`, `source_category`, `extra` (JSON string or object), `image_id`,
`annotation_id` (kept in extra as `source_annotation_id`; ids are recomputed from the record).
A row with neither category nor box lists an image without findings.

Items: the distinct file names, sorted (+ `<file>#document` when the file cannot be read or
holds rows without a file name). `record` is `row N` (Parquet/JSON, 0-based) or `line N`
(JSONL, 1-based); an unparseable JSONL line is a `malformed_json` annotation rejection.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmoral_pipeline.config import SourcesFile, SourceSpec
from mmoral_pipeline.domain.records import IngestBatch, Rejection, RejectReason
from mmoral_pipeline.sources.base import make_image_id, resolve_inside
from mmoral_pipeline.sources.common import (
    DOCUMENT_ITEM_SUFFIX,
    add_image,
    clean_extra,
    emit_annotation,
    flat_polygon,
    folder,
    name_map,
    parse_label,
    reject_annotation,
    reject_for_image,
    reject_image,
    rel_to,
    score_field,
)

_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]+$")
_CONSUMED = {
    "file_name", "category", "box", "x1", "y1", "x2", "y2", "fdi", "polygon", "lesion_type",
    "source_category", "extra", "image_id", "annotation_id", "source", "partition", "source_file", "record",
}


@dataclass
class ManifestIndex:
    rows_by_file: dict[str, list[tuple[str, dict[str, Any]]]] = field(default_factory=dict)
    problems: list[tuple[str, RejectReason, str]] = field(default_factory=list)  # annotation-level
    error: str | None = None


def _read_rows(path: Path) -> list[tuple[str, dict[str, Any] | str]]:
    """(record, row or error message) for every row of the file."""
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        return [(f"row {i}", r) for i, r in enumerate(pq.read_table(path).to_pylist())]
    if suffix in (".jsonl", ".ndjson"):
        out: list[tuple[str, dict[str, Any] | str]] = []
        with open(path, encoding="utf-8", errors="replace") as fh:
            for n, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError as exc:
                    out.append((f"line {n}", f"not JSON: {exc}"))
                    continue
                out.append((f"line {n}", row if isinstance(row, dict) else "not a JSON object"))
        return out
    doc = json.loads(path.read_bytes())
    if not isinstance(doc, list):
        raise ValueError("a .json manifest must be a list of rows")
    return [(f"row {i}", r if isinstance(r, dict) else "not a JSON object") for i, r in enumerate(doc)]


@functools.lru_cache(maxsize=4)
def _index_cached(path: str, mtime_ns: int, ctime_ns: int, size: int) -> ManifestIndex:
    idx = ManifestIndex()
    try:
        rows = _read_rows(Path(path))
    except Exception as exc:
        idx.error = f"cannot read {Path(path).name}: {exc}"
        return idx
    for record, row in rows:
        if isinstance(row, str):
            idx.problems.append((record, RejectReason.MALFORMED_JSON, row))
        elif not isinstance(row.get("file_name"), str) or not row.get("file_name"):
            idx.problems.append((record, RejectReason.MALFORMED_RECORD, "row has no file_name"))
        else:
            idx.rows_by_file.setdefault(row["file_name"], []).append((record, row))
    return idx


def _box(row: dict[str, Any]) -> Any:
    if row.get("box") is not None:
        return list(row["box"]) if isinstance(row["box"], (list, tuple)) else row["box"]
    if all(k in row for k in ("x1", "y1", "x2", "y2")):
        return [row["x1"], row["y1"], row["x2"], row["y2"]]
    return None


class ManifestReader:
    """Manifest rows (see module docstring)."""

    def _paths(self, spec: SourceSpec, sources: SourcesFile) -> tuple[Path, Path, Path, str]:
        root = sources.root_of(spec)
        if spec.annotations:
            ann = folder(spec, sources, spec.annotations, "")
        else:
            ann = root / "manifest.parquet"
            if not ann.exists() and (root / "manifest.jsonl").exists():
                ann = root / "manifest.jsonl"
        return root, ann, folder(spec, sources, spec.images, "."), rel_to(ann, root)

    def _index(self, ann: Path) -> ManifestIndex:
        try:
            st = os.stat(ann)
        except OSError:
            return ManifestIndex(error=f"manifest not found: {ann}")
        return _index_cached(str(ann), st.st_mtime_ns, st.st_ctime_ns, st.st_size)

    def list_items(self, spec: SourceSpec, sources: SourcesFile) -> list[str]:
        _, ann, _, ann_rel = self._paths(spec, sources)
        idx = self._index(ann)
        extra = [ann_rel + DOCUMENT_ITEM_SUFFIX] if idx.error or idx.problems else []
        return sorted(list(idx.rows_by_file) + extra)

    def read(self, spec: SourceSpec, sources: SourcesFile, items: Sequence[str] | None = None) -> IngestBatch:
        root, ann, images_dir, ann_rel = self._paths(spec, sources)
        idx = self._index(ann)
        batch = IngestBatch()
        src = spec.name
        doc_key = ann_rel + DOCUMENT_ITEM_SUFFIX
        want = None if items is None else set(items)
        if want is None or doc_key in want:
            if idx.error:
                reason = RejectReason.MISSING_ANNOTATIONS if "not found" in idx.error else RejectReason.MALFORMED_JSON
                reject_annotation(batch, source=src, path=str(ann), record="$", reason=reason, message=idx.error)
            for record, reason, message in idx.problems:
                reject_annotation(batch, source=src, path=str(ann), record=record, reason=reason, message=message)
        sf = score_field(spec)
        nmap = name_map(spec)
        keys = sorted(idx.rows_by_file) if want is None else sorted(k for k in want if k in idx.rows_by_file)
        for file_name in keys:
            rows = idx.rows_by_file[file_name]
            ann_rows = [
                (rec, row) for rec, row in rows if row.get("category") not in (None, "") or _box(row) is not None
            ]
            records = [rec for rec, _ in ann_rows]
            path = resolve_inside(images_dir, file_name)
            if path is None:
                rej = reject_image(
                    batch,
                    source=src,
                    path=file_name,
                    record=rows[0][0],
                    reason=RejectReason.PATH_ESCAPES_SOURCE,
                    message=f"file_name {file_name!r} escapes the image folder",
                )
                reject_for_image(batch, rej, source=src, path=str(ann), records=records)
                continue
            row_id = rows[0][1].get("image_id")
            image_id = (
                row_id if isinstance(row_id, str) and _SAFE_ID.match(row_id) else make_image_id(src, rel_to(path, root))
            )
            image = add_image(
                batch, path, source=src, root=root, max_pixels=sources.max_image_pixels, image_id=image_id
            )
            if isinstance(image, Rejection):
                reject_for_image(batch, image, source=src, path=str(ann), records=records)
                continue
            for record, row in ann_rows:
                extra: dict[str, Any] = {}
                raw_extra = row.get("extra")
                if isinstance(raw_extra, str) and raw_extra:
                    try:
                        parsed = json.loads(raw_extra)
                        extra.update(parsed if isinstance(parsed, dict) else {"extra": parsed})
                    except ValueError:
                        extra["extra"] = raw_extra
                elif isinstance(raw_extra, dict):
                    extra.update(raw_extra)
                extra.update({k: v for k, v in row.items() if k not in _CONSUMED and k != sf})
                if row.get("annotation_id"):
                    extra["source_annotation_id"] = row["annotation_id"]
                category = row.get("category")
                emit_annotation(
                    batch, image=image, source_file=ann_rel, path=str(ann), record=record,
                    source_category=str(row.get("source_category") or category),
                    label=parse_label(category, nmap),
                    box=_box(row), fdi=row.get("fdi"), polygon=flat_polygon(row.get("polygon")), score=row.get(sf),
                    lesion_type=row.get("lesion_type"), extra=clean_extra(extra),
                )
        return batch
