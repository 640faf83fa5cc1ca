"""Row-level lineage: one instruction sample walked back to the pixels it came from.

sample -> the generation request (template id and version, backend, model, parameters, raw
response, cache hit) -> the location caption -> the attribute rows -> the annotations (source
file, record, original and unified category) -> the raw image (path, sha256, re-hashed now).

Dagster's lineage stops at asset/partition level; this module follows the ids every row carries.
It reads tables through a `TableReader` (name -> frame or None), so the CLI, the Dagster job and
the tests use the same code. A reader may return lazy scans: then only the rows of the sample, its
partition and its image are read (what keeps `mmoral lineage` fast among 1.3M samples). Rendering:
plain text (CLI), Markdown (Dagster metadata), a self-contained HTML page with the X-ray and the boxes
the sample depends on.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import polars as pl
from pydantic import BaseModel, Field

from mmoral_pipeline.dataset.assemble import message_texts, normalise_text

TableReader = Callable[[str], "pl.DataFrame | pl.LazyFrame | None"]


# What a sample's generation request recorded, in the order lineage shows it.
REQUEST_FIELDS: tuple[str, ...] = (
    "generation_table",
    "item_id",
    "prompt_template_id",
    "prompt_version",
    "backend",
    "model",
    "params",
    "request_hash",
    "cache_hit",
    "run_id",
    "validators_passed",
)


class UnknownSampleError(LookupError):
    """The id is not in instruction_samples; the message says how to find ids."""


class LineageChain(BaseModel):
    sample: dict[str, Any]
    messages: list[dict[str, Any]] = Field(default_factory=list)
    request: dict[str, Any] | None = None
    caption: dict[str, Any] | None = None
    attributes: dict[str, Any] | None = None
    teeth: list[dict[str, Any]] = Field(default_factory=list)
    dependency_rule: str = ""
    annotations: list[dict[str, Any]] = Field(default_factory=list)
    image: dict[str, Any] | None = None
    problems: list[str] = Field(default_factory=list)


# ---------------------------------------------------------------- helpers


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _jsonable(v: Any) -> Any:
    if isinstance(v, str):
        s = v.strip()
        if s[:1] in ("{", "["):
            try:
                return json.loads(s)
            except json.JSONDecodeError:
                return v
    return v


def _safe_read(read: TableReader, name: str) -> pl.DataFrame | pl.LazyFrame | None:
    try:
        return read(name)
    except FileNotFoundError:
        return None


def _matching(read: TableReader, name: str, hints: dict[str, Any], **equal: Any) -> pl.DataFrame | None:
    """Rows of a table whose columns equal the given values (none when one of those columns is absent);
    `hints` (the partition) narrow the scan where the table has the column. None when the table is missing."""
    frame = _safe_read(read, name)
    if frame is None:
        return None
    lf = frame.lazy()
    names = set(lf.collect_schema().names())
    if not set(equal) <= names:
        return lf.head(0).collect()
    narrow = [pl.col(k) == v for k, v in hints.items() if k in names and v is not None and k not in equal]
    if narrow:  # before the row index, so the scan skips the other partitions' files by their statistics
        lf = lf.filter(pl.all_horizontal(narrow))
    return _rows_where(lf, dict(equal))


def _rows_where(lf: pl.LazyFrame, equal: dict[str, Any]) -> pl.DataFrame:
    """The rows where every column equals its value (see `_rows_matching`)."""
    cond = pl.lit(True)
    for col, value in equal.items():
        cond = cond & (pl.col(col) == value)
    return _rows_matching(lf, cond, list(equal))


def _rows_matching(lf: pl.LazyFrame, cond: pl.Expr, columns: list[str]) -> pl.DataFrame:
    """The rows where `cond` (on `columns`) holds, reading whole rows only around the matches.

    A filtered scan decodes every column of every row group; finding the row numbers on the condition's
    columns first and then slicing each run of matches reads a row group or two (what keeps a lookup
    among 1.3M rows fast).
    """
    rows = lf.select(columns).with_row_index("__row").filter(cond).select("__row").collect()["__row"].to_list()
    if not rows:
        return lf.head(0).collect()
    runs, start = [], rows[0]
    for prev, cur in zip(rows, rows[1:] + [None], strict=True):
        if cur is None or cur - prev > 1000:  # a new run of matches far from the last
            runs.append(lf.slice(start, prev - start + 1).filter(cond))
            start = cur
    return pl.concat(runs).collect()


def read_annotations(read: TableReader) -> pl.DataFrame | pl.LazyFrame | None:
    """Every box a document can cite: `raw_annotations` plus the visual experts' (`expert_annotations`),
    with `expert` ('<name>@<version>') on an expert's box and null on a human label. Lazy when the reader
    scans (the human labels stay a scan; the experts' table is converted whole)."""
    from mmoral_pipeline.experts.frames import EXPERT_COLUMN, with_expert_annotations

    human = _safe_read(read, "raw_annotations")
    if human is None:
        return None
    experts = _safe_read(read, "expert_annotations")
    if not isinstance(human, pl.LazyFrame):
        return with_expert_annotations(human, experts)
    if EXPERT_COLUMN not in human.collect_schema().names():
        human = human.with_columns(pl.lit(None, dtype=pl.String).alias(EXPERT_COLUMN))
    if experts is None:
        return human
    merged = with_expert_annotations(human.head(0).collect(), experts.lazy().collect())
    return pl.concat([human, merged.lazy()], how="diagonal_relaxed")


_BRACKETS = re.compile(r"\[[^\]]*\]")
_WHOLE_IMAGE_TASKS = frozenset({"report", "attribute", "dialogue"})


def mentioned(texts: Iterable[str]) -> tuple[set[int], set[str], bool]:
    """(FDI numbers, categories, 'teeth' as a whole) named in the texts; bracketed coordinates skipped.

    Teeth and categories are read by the one claim extractor (`generation.claims`)."""
    from mmoral_pipeline.generation.claims import categories_in, teeth_in

    blob = _BRACKETS.sub(" ", " ".join(texts))
    teeth = set(teeth_in(blob))
    cats = {c.value for c in categories_in(blob)}
    norm = " " + normalise_text(blob) + " "
    whole_teeth = bool(re.search(r"\b(teeth|tooth count|how many)\b", norm))
    return teeth, cats, whole_teeth


def all_annotation_ids(doc: dict[str, Any]) -> list[str]:
    """Every annotation id the attribute document cites (teeth, their findings, jaw, missing, unknown)."""
    ids: list[str] = []
    for t in doc.get("teeth", []):
        ids += t.get("annotation_ids") or []
        for c in t.get("conditions") or []:
            ids += c.get("annotation_ids") or []
    for group in (doc.get("jaw") or {}).values():
        for c in group or []:
            ids += c.get("annotation_ids") or []
    for key in ("missing_teeth", "unknown_tooth_findings"):
        for c in doc.get(key) or []:
            ids += c.get("annotation_ids") or []
    return list(dict.fromkeys(ids))


_NUMS = r"\s*(-?\d+(?:\.\d+)?)\s*"
_BOX = re.compile(r"\[" + ",".join([_NUMS] * 4) + r"\]")
_POINT = re.compile(r"\[" + ",".join([_NUMS] * 2) + r"\]")


def named_geometry(texts: Iterable[str]) -> tuple[list[list[float]], list[tuple[float, float]]]:
    """Boxes `[x1, y1, x2, y2]` and points `[x, y]` written in the texts (box_2d / point_2d answers)."""
    blob = " ".join(texts)
    boxes = [[float(v) for v in m.groups()] for m in _BOX.finditer(blob)]
    points = [(float(m.group(1)), float(m.group(2))) for m in _POINT.finditer(blob)]
    return boxes, points


def _entries(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Every boxed thing of the document: teeth and findings, with their annotation ids."""
    out: list[dict[str, Any]] = []
    for t in doc.get("teeth", []):
        out.append(
            {
                "kind": "tooth",
                "tooth_id": t["tooth_id"],
                "category": "tooth",
                "bbox": t.get("bbox"),
                "ids": t.get("annotation_ids") or [],
            }
        )
        for c in t.get("conditions") or []:
            out.append(
                {
                    "kind": "condition",
                    "tooth_id": t["tooth_id"],
                    "category": c.get("category"),
                    "bbox": c.get("bbox"),
                    "ids": c.get("annotation_ids") or [],
                }
            )
    for group in (doc.get("jaw") or {}).values():
        for c in group or []:
            out.append(
                {
                    "kind": "condition",
                    "tooth_id": None,
                    "category": c.get("category"),
                    "bbox": c.get("bbox"),
                    "ids": c.get("annotation_ids") or [],
                }
            )
    for key in ("missing_teeth", "unknown_tooth_findings"):
        for c in doc.get(key) or []:
            out.append(
                {
                    "kind": "condition",
                    "tooth_id": None,
                    "teeth": c.get("teeth") or [],
                    "category": c.get("category"),
                    "bbox": c.get("bbox"),
                    "ids": c.get("annotation_ids") or [],
                }
            )
    return out


def _contains(box: list[float] | None, p: tuple[float, float]) -> bool:
    return bool(box) and box[0] <= p[0] <= box[2] and box[1] <= p[1] <= box[3]


def dependent_annotations(doc: dict[str, Any], task_type: str, texts: list[str]) -> tuple[list[str], set[int], str]:
    """Annotation ids the sample depends on, the teeth involved, and the rules that chose them.

    Reports, attribute tasks and dialogues describe the whole image. Other tasks depend on what
    their question and answer name (for closed questions: the stem and the correct option, never
    the distractors): boxes (annotations overlapping them, IoU >= 0.5), points (the tooth boxes
    containing them), FDI tooth numbers (those tooth boxes, plus their findings of the named
    categories), categories alone (their findings anywhere), or "teeth" for counting questions
    (every tooth box). When nothing is named, the whole image.
    """
    from mmoral_pipeline.domain.geometry import iou

    entries = _entries(doc)
    every = {t["tooth_id"] for t in doc.get("teeth", [])}
    if task_type in _WHOLE_IMAGE_TASKS:
        return all_annotation_ids(doc), every, f"whole image ({task_type})"
    boxes, points = named_geometry(texts)
    teeth_named, cats, whole_teeth = mentioned(texts)
    teeth_named &= every | {t for e in entries for t in e.get("teeth", [])}
    chosen: list[dict[str, Any]] = []
    rules = []
    for b in boxes:
        hits = [e for e in entries if e["bbox"] and iou(e["bbox"], b) >= 0.5]
        chosen += hits
    if boxes:
        rules.append(f"{len(boxes)} box(es) named")
    for p in points:
        hits = [e for e in entries if e["kind"] == "tooth" and _contains(e["bbox"], p)]
        chosen += hits or [e for e in entries if _contains(e["bbox"], p)]
    if points:
        rules.append(f"{len(points)} point(s) named")
    for e in entries:
        on_named_tooth = e["tooth_id"] in teeth_named or bool(set(e.get("teeth", [])) & teeth_named)
        if (
            (e["kind"] == "tooth" and on_named_tooth)
            or (e["kind"] == "condition" and on_named_tooth and e["category"] in cats)
            or (e["kind"] == "condition" and cats and not teeth_named and e["category"] in cats)
        ):
            chosen.append(e)
    if teeth_named:
        rules.append(f"teeth named {sorted(teeth_named)}")
    if cats:
        rules.append(f"categories named {sorted(cats)}")
    if whole_teeth and not teeth_named and not cats and not boxes and not points:
        chosen += [e for e in entries if e["kind"] == "tooth"]
        rules.append("all tooth boxes (counting / whole dentition)")
    ids = list(dict.fromkeys(i for e in chosen for i in e["ids"]))
    if not ids:
        return all_annotation_ids(doc), every, "whole image (nothing specific named)"
    teeth = {e["tooth_id"] for e in chosen if e["tooth_id"] is not None}
    return ids, teeth, "; ".join(rules)


def dependency_texts(row: dict[str, Any], messages: list[dict[str, Any]]) -> list[str]:
    """What a sample asserts: the conversation, or for a closed question its stem and correct option."""
    options = row.get("options") or []
    letter = row.get("answer_letter")
    if row.get("task_type") == "count_closed":
        return [row.get("question_stem") or ""]  # the options are counts, not tooth numbers
    if row.get("task_type") in ("vqa_closed", "loc_closed") and letter and len(options) == 4:
        return [row.get("question_stem") or "", options["ABCD".index(letter)]]
    return [t for _, t in message_texts(messages)]


# ---------------------------------------------------------------- resolution


def find_sample(samples: pl.DataFrame | pl.LazyFrame, sample_id: str) -> dict[str, Any]:
    """The row of the id (a unique prefix of 6+ characters also works), or UnknownSampleError."""
    sample_id = sample_id.strip()
    lf = samples.lazy()
    hit = _rows_where(lf, {"sample_id": sample_id})
    if hit.height == 0 and len(sample_id) >= 6:
        ids = lf.select("sample_id").filter(pl.col("sample_id").str.starts_with(sample_id)).collect()["sample_id"]
        hit = _rows_where(lf, {"sample_id": ids[0]}) if len(ids) == 1 else hit
        if len(ids) > 1:
            raise UnknownSampleError(f"{sample_id!r} is a prefix of {len(ids)} sample ids: give more characters")
    if hit.height == 0:
        rows = lf.select(pl.len()).collect().item()
        examples = ", ".join(lf.select("sample_id").head(3).collect()["sample_id"].to_list()) if rows else "none"
        raise UnknownSampleError(
            f"no sample {sample_id!r} among the {rows} rows of instruction_samples. "
            "List some with `mmoral lineage --list 3`; every exported row also carries its id in the 'sample_id' field "
            "of $MMORAL_HOME/exports/trl/train.jsonl (val.jsonl, llamafactory/mmoral_train.json). "
            f"Examples: {examples}"
        )
    return hit.row(0, named=True)


def cached_response(cache_path: str | Path | None, request_hash: str | None) -> dict[str, Any] | None:
    """The response cache's entry for a request (read-only SQLite), or None when absent."""
    if not cache_path or not request_hash or not Path(cache_path).exists():
        return None
    import sqlite3

    try:
        conn = sqlite3.connect(f"file:{Path(cache_path)}?mode=ro", uri=True, timeout=5)
        try:
            row = conn.execute(
                "SELECT backend, model, response_json, created_at FROM responses WHERE request_hash = ?",
                (request_hash,),
            ).fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return None
    if row is None:
        return None
    resp = json.loads(row[2])
    return {
        "backend": row[0],
        "model": row[1],
        "created_at": row[3],
        "text": resp.get("text"),
        "usage": resp.get("usage"),
    }


def resolve_lineage(
    sample_id: str, read: TableReader, *, verify_sha256: bool = True, cache_path: str | Path | None = None
) -> LineageChain:
    """Walk the chain for one sample; missing links are recorded in `problems`, not raised.

    `cache_path`: the generation response cache (SQLite); when given, the request's cached entry is shown too.
    """
    samples = _safe_read(read, "instruction_samples")
    if samples is None:
        raise UnknownSampleError(
            "instruction_samples has not been materialised yet: run `mmoral materialize --select instruction_samples` "
            "first"
        )
    row = find_sample(samples, sample_id)
    messages = json.loads(row["messages"]) if isinstance(row["messages"], str) else row["messages"]
    sample = {k: v for k, v in row.items() if k != "messages"}
    chain = LineageChain(sample=sample, messages=messages)
    image_id = row["image_id"]
    hints = {"partition": row.get("partition")}  # every per-image table keeps the image in the sample's partition

    # the request
    table = row.get("generation_table")
    g = _matching(read, table, hints, item_id=row["item_id"]) if table else None
    request = {k: row.get(k) for k in REQUEST_FIELDS}
    request["params"] = _jsonable(request["params"])
    request["validators_passed"] = _jsonable(request["validators_passed"])
    if g is None:
        chain.problems.append(f"generation table {table!r} not found")
    else:
        if g.height == 0:
            chain.problems.append(f"item {row['item_id']!r} not in {table}")
        else:
            grow = g.row(0, named=True)
            request["raw_response"] = grow.get("raw_response")
            request["partition"] = grow.get("partition")
            request["extra"] = _jsonable(grow.get("extra"))
    cached = cached_response(cache_path, row.get("request_hash"))
    if cached is not None:
        cached["matches_raw_response"] = cached.get("text") == request.get("raw_response")
        request["cache_entry"] = cached
    chain.request = request

    # the caption
    attr_hash = row.get("attribute_row_hash")
    c = _matching(read, "location_captions", hints, image_id=image_id)
    if c is not None and c.height:
        if (
            attr_hash
            and "attribute_row_hash" in c.columns
            and c.filter(pl.col("attribute_row_hash") == attr_hash).height
        ):
            c = c.filter(pl.col("attribute_row_hash") == attr_hash)
        if c.height:
            crow = c.row(0, named=True)
            chain.caption = {
                k: crow.get(k) for k in ("image_id", "partition", "attribute_row_hash", "caption_version", "caption")
            }
    if chain.caption is None:
        chain.problems.append(f"no location caption for image {image_id}")

    # the attribute rows and the annotations the sample depends on
    a = _matching(read, "image_attributes", hints, image_id=image_id)
    doc: dict[str, Any] | None = None
    if a is not None and a.height:
        if attr_hash:
            exact = a.filter(pl.col("attribute_row_hash") == attr_hash)
            if exact.height == 0 and a.height:
                chain.problems.append(
                    f"attribute row {attr_hash} not found (image has {a['attribute_row_hash'].to_list()})"
                )
            a = exact if exact.height else a
        if a.height:
            arow = a.row(0, named=True)
            doc = json.loads(arow["document"]) if isinstance(arow.get("document"), str) else arow.get("document")
            chain.attributes = {k: v for k, v in arow.items() if k != "document"}
    if doc is None:
        chain.problems.append(f"no image_attributes row for image {image_id}")
    texts = dependency_texts(row, messages)
    anns = read_annotations(read)
    if doc is not None:
        ids, teeth, rule = dependent_annotations(doc, row["task_type"], texts)
        chain.dependency_rule = rule
        teeth_tab = _matching(read, "tooth_attributes", hints, image_id=image_id)
        if teeth_tab is not None and teeth_tab.height and "tooth_id" in teeth_tab.columns:
            t = teeth_tab.filter(pl.col("tooth_id").is_in(sorted(teeth)))
            if attr_hash and "attribute_row_hash" in t.columns:
                t = t.filter(pl.col("attribute_row_hash") == attr_hash)
            keep = [
                c
                for c in ("tooth_id", "side", "is_wisdom", "wisdom_status", "bbox", "n_conditions", "annotation_ids")
                if c in t.columns
            ]
            chain.teeth = t.select(keep).sort("tooth_id").to_dicts()
    else:
        ids, rule = [], "all annotations of the image (no attribute document)"
        chain.dependency_rule = rule
    if anns is None:
        chain.problems.append("raw_annotations not found")
    else:
        # By id, not by image: a merged document (one X-ray from several sources) cites its copies' annotations.
        chosen = (
            _rows_matching(anns.lazy(), pl.col("annotation_id").is_in(ids), ["annotation_id"])
            if ids
            else _rows_where(anns.lazy(), {"image_id": image_id})
        )
        missing = sorted(set(ids) - set(chosen["annotation_id"].to_list()))
        if missing:
            chain.problems.append(f"{len(missing)} annotation id(s) missing from raw_annotations, e.g. {missing[:3]}")
        keep = [
            c
            for c in (
                "annotation_id",
                "source",
                "image_id",
                "source_file",
                "record",
                "source_category",
                "category",
                "fdi",
                "box",
                "score",
                "lesion_type",
                "expert",
            )
            if c in chosen.columns
        ]
        chain.annotations = chosen.select(keep).sort("annotation_id").to_dicts()

    # the raw image
    img = _matching(read, "raw_images", hints, image_id=image_id)
    if img is None or img.height == 0:
        chain.problems.append(f"image {image_id} not in raw_images")
        chain.image = {"image_id": image_id, "path": row.get("image_path"), "sha256": row.get("image_sha256")}
    else:
        irow = img.row(0, named=True)
        keys = (
            "image_id",
            "source",
            "partition",
            "path",
            "file_name",
            "sha256",
            "width",
            "height",
            "model_image_path",
            "normalisation",
        )
        chain.image = {k: irow.get(k) for k in keys}
    path = chain.image.get("path")
    exists = bool(path) and Path(path).exists()
    chain.image["exists"] = exists
    if not exists:
        chain.problems.append(f"image file missing: {path}")
    elif verify_sha256:
        now = sha256_file(path)
        chain.image["sha256_now"] = now
        chain.image["sha256_matches"] = now == chain.image.get("sha256")
        if not chain.image["sha256_matches"]:
            chain.problems.append(
                f"image changed on disk since ingest: sha256 {now[:12]} != {str(chain.image.get('sha256'))[:12]}"
            )
    return chain


# ---------------------------------------------------------------- rendering


def _short(v: Any, n: int = 400) -> str:
    s = v if isinstance(v, str) else json.dumps(v, default=str, ensure_ascii=False)
    return s if len(s) <= n else s[: n - 1] + "…"


def _conversation_lines(chain: LineageChain) -> list[tuple[str, str]]:
    return message_texts(chain.messages)


def render_text(chain: LineageChain, *, full: bool = False) -> str:
    """The chain as indented plain text (CLI)."""
    s, n = chain.sample, (10**9 if full else 300)
    out = [f"sample {s['sample_id']}  task={s['task_type']}  split={s['split']}  dimensions={s.get('category') or '-'}"]
    for role, text in _conversation_lines(chain):
        out.append(f"    {role:>9}: {_short(text, n)}")
    r = chain.request or {}
    out.append(
        f"  <- request  table={r.get('generation_table')} item={r.get('item_id')} "
        f"template={r.get('prompt_template_id')} "
        f"v={r.get('prompt_version')} backend={r.get('backend')} model={r.get('model')} cache_hit={r.get('cache_hit')}"
    )
    out.append(
        f"       params={_short(r.get('params'), 200)} request_hash={r.get('request_hash')} run_id={r.get('run_id')}"
    )
    out.append(f"       validators={_short(r.get('validators_passed'), 200)}")
    out.append(f"       raw_response: {_short(r.get('raw_response'), n)}")
    if r.get("extra"):
        out.append(f"       extra: {_short(r.get('extra'), 200)}")
    if r.get("cache_entry"):
        out.append(f"       response cache: {_cache_summary(r['cache_entry'])}")
    c = chain.caption
    out.append(
        f"  <- caption  version={c.get('caption_version')} attribute_row_hash={c.get('attribute_row_hash')}: "
        f"{_short(c.get('caption'), n)}"
        if c
        else "  <- caption  (none)"
    )
    a = chain.attributes
    if a:
        out.append(
            f"  <- attributes  image_attributes row {a.get('attribute_row_hash')} ({a.get('n_teeth')} teeth, rules "
            f"{a.get('rules_version')})"
        )
        out.append(
            f"       assessed={a.get('assessed')} sources={a.get('sources')} merged copies={a.get('copies') or []}"
        )
    else:
        out.append("  <- attributes  (none)")
    for t in chain.teeth:
        out.append(
            f"       tooth {t.get('tooth_id')} {t.get('side')} box={_short(t.get('bbox'), 80)} "
            f"annotations={t.get('annotation_ids')}"
        )
    out.append(f"  <- annotations ({len(chain.annotations)}; {chain.dependency_rule})")
    for x in chain.annotations:
        who = f" expert={x['expert']} score={x.get('score')}" if x.get("expert") else ""
        out.append(
            f"       {x['annotation_id']} [{x.get('source')}] {x.get('source_category')!s} -> {x.get('category')} "
            f"fdi={x.get('fdi')} "
            f"box={_short(x.get('box'), 60)} file={x.get('source_file')} record={x.get('record')}{who}"
        )
    i = chain.image or {}
    out.append(f"  <- image  {i.get('image_id')} source={i.get('source')} path={i.get('path')}")
    out.append(f"       sha256={i.get('sha256')} exists={i.get('exists')} matches_now={i.get('sha256_matches')}")
    if chain.problems:
        out.append("problems:")
        out += [f"  - {p}" for p in chain.problems]
    return "\n".join(out)


def _when(ts: Any) -> str:
    import datetime as dt

    try:
        return dt.datetime.fromtimestamp(float(ts), dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (TypeError, ValueError, OverflowError):
        return str(ts)


def _cache_summary(entry: dict[str, Any] | None) -> str | None:
    if not entry:
        return None
    same = (
        "same text as the raw response" if entry.get("matches_raw_response") else "text differs from the raw response"
    )
    return f"stored {_when(entry.get('created_at'))} by {entry.get('backend')}/{entry.get('model')}; {same}"


def _md_escape(s: Any) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def render_markdown(chain: LineageChain) -> str:
    """The chain as Markdown (Dagster metadata)."""
    s, r, c, a, i = chain.sample, chain.request or {}, chain.caption, chain.attributes, chain.image or {}
    md = [
        f"## Sample `{s['sample_id']}`",
        "",
        f"task **{s['task_type']}**, split **{s['split']}**, dimensions `{s.get('category') or '-'}`, image "
        f"`{s['image_id']}`",
        "",
    ]
    md += ["| turn | text |", "|---|---|"] + [
        f"| {role} | {_md_escape(_short(t, 600))} |" for role, t in _conversation_lines(chain)
    ]
    md += ["", "### Request", "", "| field | value |", "|---|---|"]
    for k in (*REQUEST_FIELDS, "extra"):
        md.append(f"| {k} | {_md_escape(_short(r.get(k), 300))} |")
    if r.get("cache_entry"):
        md.append(f"| response cache | {_md_escape(_cache_summary(r['cache_entry']))} |")
    md += ["", "Raw response:", "", "```", str(r.get("raw_response") or "")[:4000], "```"]
    md += ["", "### Caption", ""]
    md += (
        [
            f"version `{c.get('caption_version')}`, attribute row `{c.get('attribute_row_hash')}`",
            "",
            "> " + _md_escape(c.get("caption") or ""),
        ]
        if c
        else ["_none_"]
    )
    md += ["", "### Attribute rows", ""]
    if a:
        md.append(
            f"image_attributes row `{a.get('attribute_row_hash')}` ({a.get('n_teeth')} teeth, rules "
            f"`{a.get('rules_version')}`); "
            f"assessed {a.get('assessed')}; sources {a.get('sources')}; merged copies {a.get('copies') or []}"
        )
    md += ["", "| tooth | side | box | annotation ids |", "|---|---|---|---|"]
    md += [
        f"| {t.get('tooth_id')} | {t.get('side')} | {_short(t.get('bbox'), 60)} | "
        f"{', '.join(t.get('annotation_ids') or [])} |"
        for t in chain.teeth
    ]
    md += [
        "",
        f"### Annotations ({len(chain.annotations)}; {chain.dependency_rule})",
        "",
        "| annotation_id | source | source file | record | original category | category | fdi | box | drawn by |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    md += [
        f"| {x['annotation_id']} | {_md_escape(x.get('source'))} | {_md_escape(x.get('source_file'))} | "
        f"{_md_escape(x.get('record'))} | {_md_escape(x.get('source_category'))} | "
        f"{x.get('category')} | {x.get('fdi')} | {_short(x.get('box'), 60)} | "
        f"{_md_escape(x.get('expert') or 'label')} |"
        for x in chain.annotations
    ]
    md += ["", "### Raw image", "", "| field | value |", "|---|---|"]
    md += [
        f"| {k} | {_md_escape(i.get(k))} |"
        for k in (
            "image_id",
            "source",
            "partition",
            "path",
            "sha256",
            "exists",
            "sha256_matches",
            "model_image_path",
            "normalisation",
        )
    ]
    if chain.problems:
        md += ["", "### Problems", ""] + [f"- {p}" for p in chain.problems]
    return "\n".join(md)


def overlay_jpeg(chain: LineageChain, max_width: int = 1400) -> bytes | None:
    """The X-ray with the boxes the sample depends on (annotation boxes, labelled by tooth / category)."""
    from PIL import Image

    from mmoral_pipeline.viz import DrawnBox, draw_boxes, to_jpeg

    image = chain.image or {}
    path = image.get("model_image_path") or image.get("path")  # the pixels the boxes are drawn on
    if not path or not Path(path).exists():
        return None
    with Image.open(path) as im:
        img = im.convert("L")
    scale = min(1.0, max_width / img.width)
    if scale < 1.0:
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))))
    boxes = []
    for x in chain.annotations:
        box = x.get("box")
        if box is None or len(box) != 4:
            continue
        label = str(x.get("fdi")) if x.get("category") == "tooth" and x.get("fdi") else str(x.get("category"))
        boxes.append(DrawnBox([float(v) * scale for v in box], str(x.get("category")), label))
    return to_jpeg(draw_boxes(img, boxes, width=2), 80)


def render_html(chain: LineageChain) -> str:
    """A self-contained page: the X-ray with the sample's boxes, the conversation and the chain."""
    e = html.escape
    s, r, c, a, i = chain.sample, chain.request or {}, chain.caption, chain.attributes, chain.image or {}
    jpeg = overlay_jpeg(chain)
    img_tag = (
        f'<img alt="X-ray {e(s["image_id"])}" src="data:image/jpeg;base64,{base64.b64encode(jpeg).decode()}">'
        if jpeg
        else f"<p class=problem>image file not found: {e(str(i.get('path')))}</p>"
    )

    def table(rows: list[tuple[str, Any]]) -> str:
        return (
            "<table>" + "".join(f"<tr><th>{e(k)}</th><td>{e(_short(v, 2000))}</td></tr>" for k, v in rows) + "</table>"
        )

    def grid(cols: list[str], rows: list[dict[str, Any]]) -> str:
        head = "".join(f"<th>{e(k)}</th>" for k in cols)
        body = "".join(
            "<tr>" + "".join(f"<td>{e(_short(row.get(k), 200))}</td>" for k in cols) + "</tr>" for row in rows
        )
        return f"<table><tr>{head}</tr>{body}</table>"

    convo = "".join(
        f'<div class="turn {e(role)}"><b>{e(role)}</b><pre>{e(t)}</pre></div>' for role, t in _conversation_lines(chain)
    )
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>lineage {e(s['sample_id'])}</title>",
        "<style>body{font-family:sans-serif;margin:1.5em;max-width:1500px}img{max-width:100%;border:1px solid #444}"
        "table{border-collapse:collapse;margin:.5em 0}"
        "td,th{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top;font-size:13px}"
        "pre{white-space:pre-wrap;margin:.2em 0}.turn{margin:.3em 0;padding:.3em;border-left:4px solid #4c72b0}"
        ".assistant{border-color:#55a868}"
        ".problem{color:#b00}h2{margin-top:1.2em}</style></head><body>",
        f"<h1>Sample {e(s['sample_id'])}</h1>",
        table(
            [
                ("task", s["task_type"]),
                ("split", s["split"]),
                ("dimensions", s.get("category")),
                ("image", s["image_id"]),
                ("source", s.get("source")),
            ]
        ),
        f"<h2>X-ray with the {len(chain.annotations)} boxes this sample depends "
        f"on</h2><p>{e(chain.dependency_rule)}</p>{img_tag}",
        f"<h2>Conversation</h2>{convo}",
        "<h2>&larr; Request</h2>",
        table(
            [(k, r.get(k)) for k in (*REQUEST_FIELDS, "extra")]
            + [("response cache", _cache_summary(r.get("cache_entry")) or "not in the cache (or no cache given)")]
        ),
        f"<h3>Raw response</h3><pre>{e(str(r.get('raw_response') or ''))}</pre>",
        "<h2>&larr; Caption</h2>",
        (
            table([("caption_version", c.get("caption_version")), ("attribute_row_hash", c.get("attribute_row_hash"))])
            + f"<pre>{e(str(c.get('caption') or ''))}</pre>"
        )
        if c
        else "<p>none</p>",
        "<h2>&larr; Attribute rows</h2>",
        table(list(a.items())) if a else "<p>none</p>",
        grid(["tooth_id", "side", "is_wisdom", "wisdom_status", "bbox", "n_conditions", "annotation_ids"], chain.teeth)
        if chain.teeth
        else "",
        "<h2>&larr; Annotations</h2>",
        grid(
            [
                "annotation_id",
                "source",
                "source_file",
                "record",
                "source_category",
                "category",
                "fdi",
                "box",
                "score",
                "expert",
            ],
            chain.annotations,
        ),
        "<h2>&larr; Raw image</h2>",
        table(
            [
                (k, i.get(k))
                for k in (
                    "image_id",
                    "source",
                    "partition",
                    "path",
                    "file_name",
                    "width",
                    "height",
                    "sha256",
                    "sha256_now",
                    "sha256_matches",
                    "model_image_path",
                    "normalisation",
                )
            ]
        ),
    ]
    if chain.problems:
        parts.append(
            "<h2 class=problem>Problems</h2><ul>"
            + "".join(f"<li class=problem>{e(p)}</li>" for p in chain.problems)
            + "</ul>"
        )
    parts.append("</body></html>")
    return "\n".join(parts)


def write_html(chain: LineageChain, path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(render_html(chain), encoding="utf-8")
    return p


__all__ = [
    "LineageChain",
    "TableReader",
    "UnknownSampleError",
    "all_annotation_ids",
    "dependent_annotations",
    "find_sample",
    "mentioned",
    "render_html",
    "render_markdown",
    "render_text",
    "resolve_lineage",
    "sha256_file",
    "write_html",
]
