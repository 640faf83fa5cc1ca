"""Generated rows (reports, VQA, dialogues, attribute tasks) -> one `instruction_samples` table.

Every instance kind ends up in one schema (`SAMPLE_SCHEMA`): a content-hash `sample_id`, the
conversation as `messages` (JSON; the image is a reference `{"type": "image", "image_id": ...}` in
the first user turn, never pixels), the image id and path, dimension labels, the provenance of the
generation request and the validator verdicts. Then:

1. exact de-duplication: same image, task and conversation -> same `sample_id`, the first kept;
2. near-duplicate de-duplication: same image and the same *normalised* conversation text
   (case, punctuation and whitespace folded) -> the first kept;
3. the split by content (`split.split_images`): train / val / bench, copies of one X-ray and one
   patient's X-rays in one split.

Every row dropped (invalid, no image, failed validation, duplicate) or altered (dialogue turns
merged or trimmed) gets a row in the `DropLog` (`dataset.drops`), which becomes `dropped_samples`.

The generation contributor's rows follow `InstructionItem` (mmoral_pipeline/generation/rows.py);
the normalisers below accept the loose forms a field may take in Parquet (JSON strings or
native lists/dicts) so the assembly does not break on a representation choice upstream.
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from mmoral_pipeline import progress
from mmoral_pipeline.dataset.drops import DropLog
from mmoral_pipeline.dataset.split import SplitResult, split_images
from mmoral_pipeline.domain.near_duplicates import NEAR_DUPLICATE_MAX_DISTANCE
from mmoral_pipeline.domain.records import stable_id

TASK_TYPES: tuple[str, ...] = (
    "report",
    "vqa_closed",
    "vqa_open",
    "loc_closed",
    "loc_open",
    "count_closed",
    "dialogue",
    "attribute",
)
CLOSED_TASKS: frozenset[str] = frozenset({"vqa_closed", "loc_closed", "count_closed"})
OPEN_BENCH_TASKS: frozenset[str] = frozenset({"vqa_open", "loc_open", "report"})
# The generation tables instruction_samples reads, in this order (the order decides which duplicate is kept).
GENERATION_TABLES: tuple[str, ...] = ("reports", "vqa_items", "dialogues", "attribute_tasks")
DEFAULT_REPORT_QUESTION = "Please write a structured radiology report for this panoramic X-ray."
ASSEMBLY_VERSION = "assemble-v2"  # bump when messages, ids or de-dup rules change (v2: content split, drop log)

SAMPLE_SCHEMA: dict[str, pl.DataType] = {
    "sample_id": pl.String,
    "item_id": pl.String,
    "task_type": pl.String,
    "messages": pl.String,  # JSON list of {"role", "content": [parts]}; image as {"type":"image","image_id"}
    "question": pl.String,  # first user text as shown to the model (closed: with options)
    "answer": pl.String,  # first assistant text (closed: the letter)
    "options": pl.List(pl.String),
    "answer_letter": pl.String,
    "question_stem": pl.String,  # the item's own question, without the option block
    "n_turns": pl.Int64,
    "image_id": pl.String,
    "image_path": pl.String,  # the image the model sees (raw_images.model_image_path)
    "image_sha256": pl.String,  # of the source file (raw_images.sha256)
    "image_phash": pl.String,  # perceptual hash from raw_images (near-duplicate copies share the split)
    "patient_key": pl.String,  # from raw_images, where the source declares one
    "file_name": pl.String,
    "source": pl.String,
    "partition": pl.String,
    "dimensions": pl.List(pl.String),
    "category": pl.String,  # comma-joined dimensions, the benchmark's column
    "generation_table": pl.String,
    "attribute_row_hash": pl.String,
    "prompt_template_id": pl.String,
    "prompt_version": pl.String,
    "backend": pl.String,
    "model": pl.String,
    "params": pl.String,  # JSON
    "request_hash": pl.String,
    "cache_hit": pl.Boolean,
    "run_id": pl.String,
    "validators_passed": pl.String,  # JSON: the verdicts as generation recorded them
    "validated": pl.Boolean,
    "near_dup_key": pl.String,
    "split_group": pl.String,  # the key the split decided this image's group by
    "split": pl.String,
}


@dataclass
class AssemblyStats:
    """Counts the asset shows in its metadata (what went in, what each step removed), and the drop log."""

    input_rows: dict[str, int] = field(default_factory=dict)
    invalid: int = 0
    missing_image: int = 0
    ambiguous_image: int = 0
    failed_validation: int = 0
    exact_duplicates: int = 0
    near_duplicates: int = 0
    altered_dialogues: int = 0
    output_rows: int = 0
    drops: DropLog = field(default_factory=DropLog)
    split: SplitResult = field(default_factory=SplitResult)

    def as_dict(self) -> dict[str, Any]:
        return {
            "input_rows": dict(self.input_rows),
            "invalid": self.invalid,
            "missing_image": self.missing_image,
            "ambiguous_image": self.ambiguous_image,
            "failed_validation": self.failed_validation,
            "exact_duplicates": self.exact_duplicates,
            "near_duplicates": self.near_duplicates,
            "altered_dialogues": self.altered_dialogues,
            "output_rows": self.output_rows,
            "split_groups": self.split.as_dict(),
        }


# ---------------------------------------------------------------- normalisers


def _json_value(v: Any) -> Any:
    """A JSON string decoded, anything else as is (Parquet columns may hold either)."""
    if isinstance(v, str):
        s = v.strip()
        if s[:1] in ("[", "{"):
            try:
                return json.loads(s)
            except json.JSONDecodeError:
                return v
    return v


def as_str_list(v: Any) -> list[str]:
    """None / 'A,B' / '["A","B"]' / ['A','B'] -> ['A', 'B']."""
    v = _json_value(v)
    if v is None:
        return []
    if isinstance(v, str):
        return [p.strip() for p in v.split(",") if p.strip()]
    if isinstance(v, Sequence) or hasattr(v, "__iter__"):
        return [str(x).strip() for x in v if x is not None and str(x).strip()]
    return [str(v)]


def _as_json_text(v: Any) -> str:
    if isinstance(v, str):
        return _json_text_of_string(v)
    if isinstance(v, list) and all(isinstance(x, str) for x in v):
        return _json_text_of_strings(tuple(v))
    v = _json_value(v)
    if v is None:
        return "{}"
    return json.dumps(v, sort_keys=True, default=str)


@functools.lru_cache(maxsize=4096)
def _json_text_of_string(v: str) -> str:
    """Cached: a table's `params` string repeats on every row (1.3M json round trips otherwise)."""
    decoded = _json_value(v)
    return json.dumps(decoded) if isinstance(decoded, str) else json.dumps(decoded, sort_keys=True, default=str)


@functools.lru_cache(maxsize=4096)
def _json_text_of_strings(v: tuple[str, ...]) -> str:
    """Cached: validator lists repeat across rows."""
    return json.dumps(list(v), sort_keys=True, default=str)


def _verdict(v: Any) -> bool:
    """validators_passed: a bool, a list of passed validator names, or a {name: bool} map."""
    v = _json_value(v)
    if v is None:
        return True  # the table only holds rows that passed; absence of detail is not failure
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.strip().lower() in ("false", "failed", "no", "0"):
        return False
    if isinstance(v, Mapping):
        return all(bool(x) if not isinstance(x, Mapping) else bool(x.get("passed", True)) for x in v.values())
    return True


_USER_ROLES = {"user", "human", "patient", "question"}
_ASSISTANT_ROLES = {"assistant", "gpt", "radiologist", "doctor", "dentist", "model", "answer"}


def _turn_role(raw: Any) -> str:
    r = str(raw or "").strip().lower()
    if r in _USER_ROLES:
        return "user"
    if r in _ASSISTANT_ROLES:
        return "assistant"
    raise ValueError(f"unknown dialogue role {raw!r}")


def dialogue_turns(turns: Any) -> list[tuple[str, str]]:
    """Dialogue turns in any of the usual shapes -> alternating (role, text), user first, assistant last."""
    return dialogue_turns_explained(turns)[0]


def dialogue_turns_explained(turns: Any) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """`dialogue_turns` plus what it changed: reason code -> detail (empty when the turns were clean).

    turns_merged: two turns of one speaker in a row became one; empty_turns_dropped; turns_trimmed:
    turns before the first user turn or after the last assistant turn were cut.
    """
    turns = _json_value(turns)
    out: list[tuple[str, str]] = []
    merged = empty = 0
    for t in turns or []:
        if isinstance(t, Mapping):
            role = t.get("role") or t.get("from") or t.get("speaker")
            text = t.get("content") if t.get("content") is not None else t.get("value", t.get("text"))
        else:
            role, text = t[0], t[1]
        role = _turn_role(role)
        text = str(text or "").strip()
        if not text:
            empty += 1
            continue
        if out and out[-1][0] == role:  # two turns of one speaker in a row: one turn
            out[-1] = (role, out[-1][1] + "\n" + text)
            merged += 1
        else:
            out.append((role, text))
    lead = trail = 0
    while out and out[0][0] != "user":
        out.pop(0)
        lead += 1
    while out and out[-1][0] != "assistant":
        out.pop()
        trail += 1
    changes: dict[str, str] = {}
    if merged:
        changes["turns_merged"] = f"{merged} turn(s) joined to the previous turn of the same speaker"
    if empty:
        changes["empty_turns_dropped"] = f"{empty} empty turn(s) dropped"
    if lead or trail:
        changes["turns_trimmed"] = (
            f"{lead} turn(s) before the first user turn and {trail} after the last assistant turn cut"
        )
    return out, changes


def closed_user_text(stem: str, options: Sequence[str]) -> str:
    """The benchmark's own closed prompt, so training sees what evaluation will ask."""
    from mmoral_pipeline.evaluation.items import ClosedItem
    from mmoral_pipeline.evaluation.runners import closed_prompt

    item = ClosedItem(index="0", question=stem, options=list(options), answer="A", category="")
    return closed_prompt(item)


def build_messages(item: Mapping[str, Any]) -> tuple[list[dict[str, Any]], str, str]:
    """One generation row -> (messages with the image as a reference, first user text, first answer)."""
    messages, question, answer, _ = build_messages_explained(item)
    return messages, question, answer


def build_messages_explained(item: Mapping[str, Any]) -> tuple[list[dict[str, Any]], str, str, dict[str, str]]:
    """`build_messages` plus what was changed on the way (dialogue turns merged or trimmed)."""
    task = item["task_type"]
    image_ref = {"type": "image", "image_id": item["image_id"]}
    changes: dict[str, str] = {}
    if task == "dialogue":
        turns, changes = dialogue_turns_explained(item.get("turns"))
        if not turns:
            raise ValueError("dialogue without a user and an assistant turn")
    elif task in CLOSED_TASKS:
        options = as_str_list(item.get("options"))
        letter = str(item.get("answer_letter") or "").strip().upper()[:1]
        if len(options) != 4 or letter not in ("A", "B", "C", "D"):
            raise ValueError(
                f"closed item needs 4 options and a letter A-D, got {len(options)} options, letter {letter!r}"
            )
        turns = [("user", closed_user_text(str(item.get("question") or "").strip(), options)), ("assistant", letter)]
    else:
        question = str(item.get("question") or "").strip()
        if not question and task == "report":
            question = DEFAULT_REPORT_QUESTION
        answer = str(item.get("answer") or "").strip()
        if not question or not answer:
            raise ValueError("empty question or answer")
        turns = [("user", question), ("assistant", answer)]
    messages: list[dict[str, Any]] = []
    for i, (role, text) in enumerate(turns):
        parts: list[dict[str, Any]] = [{"type": "text", "text": text}]
        if i == 0:
            parts.insert(0, image_ref)
        messages.append({"role": role, "content": parts})
    return messages, turns[0][1], turns[1][1], changes


def messages_version() -> str:
    """Version of how samples are worded: the assembly rules plus the closed-question prompt (shared with
    evaluation), so a changed prompt marks instruction_samples stale (sample ids change with it)."""
    probe = closed_user_text("Q", ["a", "b", "c", "d"])
    return f"{ASSEMBLY_VERSION}-{stable_id(probe, DEFAULT_REPORT_QUESTION, length=8)}"


def message_texts(messages: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """(role, text) per turn, image parts left out."""
    out = []
    for m in messages:
        content = m["content"]
        if isinstance(content, str):
            out.append((m["role"], content))
        else:
            out.append((m["role"], "".join(p.get("text") or "" for p in content if p.get("type") == "text")))
    return out


def normalise_text(text: str) -> str:
    """Case, accents, punctuation and whitespace folded: the near-duplicate key's text."""
    t = unicodedata.normalize("NFKC", text).lower()
    t = re.sub(r"[^\w\s]", " ", t)
    return re.sub(r"\s+", " ", t).strip()


def compute_sample_id(image_id: str, task_type: str, messages: Sequence[Mapping[str, Any]]) -> str:
    """Content hash: what the model is trained on (image, task, conversation), nothing run-specific."""
    blob = json.dumps(messages, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return stable_id("sample", image_id, task_type, blob)


def conversation_text(messages: Sequence[Mapping[str, Any]]) -> str:
    """Role-tagged text of the conversation; turns separated by a newline-free marker (normalised away)."""
    return " \u241e ".join(f"{r} {t}" for r, t in message_texts(messages))


def near_dup_key(image_id: str, messages: Sequence[Mapping[str, Any]]) -> str:
    """Same image + same normalised conversation -> same key (one row; see `near_dup_keys` for frames)."""
    return stable_id("near", image_id, normalise_text(conversation_text(messages)))


def normalise_texts(texts: pl.Series) -> pl.Series:
    """`normalise_text` for a whole column, in polars (the per-row Python regex is the slow path)."""
    return (
        texts.str.normalize("NFKC")
        .str.to_lowercase()
        .str.replace_all(r"[^\w\s]", " ")
        .str.replace_all(r"\s+", " ")
        .str.strip_chars()
    )


# ---------------------------------------------------------------- assembly

# What the assembly reads of the generation tables and raw_images (raw responses and `extra` stay on disk).
GENERATION_COLUMNS: tuple[str, ...] = (
    "item_id",
    "image_id",
    "partition",
    "task_type",
    "question",
    "answer",
    "turns",
    "options",
    "answer_letter",
    "dimensions",
    "attribute_row_hash",
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
IMAGE_COLUMNS: tuple[str, ...] = (
    "image_id",
    "path",
    "model_image_path",
    "sha256",
    "phash",
    "patient_key",
    "file_name",
    "source",
    "partition",
)

Frame = pl.DataFrame | pl.LazyFrame
TableInput = Frame | Mapping[str, Frame | None] | None  # one frame, or one per partition


def _select_known(frame: Frame, columns: Sequence[str]) -> pl.LazyFrame:
    lf = frame.lazy()
    have = set(lf.collect_schema().names())
    return lf.select([c for c in columns if c in have])


def _by_partition(table: TableInput, columns: Sequence[str]) -> dict[str, pl.LazyFrame]:
    """A table as {partition: lazy frame of the wanted columns}; one frame is split by its `partition` column."""
    if table is None:
        return {}
    if isinstance(table, Mapping):
        return {str(k): _select_known(f, columns) for k, f in table.items() if f is not None}
    lf = _select_known(table, columns)
    if "partition" not in lf.collect_schema().names():
        return {"": lf}
    keys = lf.select(pl.col("partition").unique()).collect()["partition"].to_list()
    return {str(k or ""): lf.filter(pl.col("partition").eq_missing(k)) for k in keys}


def _rows(frame: Frame | None) -> list[dict[str, Any]]:
    if frame is None:
        return []
    df = frame.collect() if isinstance(frame, pl.LazyFrame) else frame
    return [] if df.height == 0 else df.to_dicts()


def _candidate(
    item: dict[str, Any],
    table: str,
    sample_id: str,
    messages: list[dict[str, Any]],
    question: str,
    answer: str,
    img: Mapping[str, Any],
    validated: bool,
) -> dict[str, Any]:
    task = item["task_type"]
    dims = as_str_list(item.get("dimensions"))
    closed = task in CLOSED_TASKS
    return {
        "sample_id": sample_id,
        "item_id": str(item.get("item_id") or ""),
        "task_type": task,
        "messages": json.dumps(messages, ensure_ascii=False),
        "question": question,
        "answer": answer,
        "options": as_str_list(item.get("options")) if closed else [],
        "answer_letter": (str(item.get("answer_letter") or "").strip().upper()[:1] or None) if closed else None,
        "question_stem": str(item.get("question") or "").strip() or (question if task == "report" else ""),
        "n_turns": len(messages),
        "image_id": item["image_id"],
        "image_path": img.get("model_image_path") or img.get("path"),
        "image_sha256": img.get("sha256"),
        "image_phash": img.get("phash"),
        "patient_key": img.get("patient_key"),
        "file_name": img.get("file_name"),
        "source": img.get("source"),
        "partition": item.get("partition") or img.get("partition"),
        "dimensions": dims,
        "category": ",".join(dims),
        "generation_table": table,
        "attribute_row_hash": item.get("attribute_row_hash"),
        "prompt_template_id": item.get("prompt_template_id"),
        "prompt_version": None if item.get("prompt_version") is None else str(item.get("prompt_version")),
        "backend": item.get("backend"),
        "model": item.get("model"),
        "params": _as_json_text(item.get("params")),
        "request_hash": item.get("request_hash"),
        "cache_hit": None if item.get("cache_hit") is None else bool(item.get("cache_hit")),
        "run_id": item.get("run_id"),
        "validators_passed": _as_json_text(item.get("validators_passed")),
        "validated": validated,
        "near_dup_key": conversation_text(messages),  # replaced by its normalised hash below
        "split_group": None,
        "split": None,
    }


class _Deduplicator:
    """Exact (same sample_id) and near (same image + normalised conversation) duplicates: the first one is kept,
    every other one is logged in `dropped_samples` with the id of the one kept."""

    def __init__(self, stats: AssemblyStats):
        self.stats = stats
        self.by_id: dict[str, str] = {}  # sample_id -> the sample kept (itself)
        self.by_near: dict[str, str] = {}  # near-duplicate key -> the sample kept

    def keep(self, candidates: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if candidates:
            normalised = normalise_texts(pl.Series([c["near_dup_key"] for c in candidates], dtype=pl.String)).to_list()
            for c, text in zip(candidates, normalised, strict=True):
                c["near_dup_key"] = stable_id("near", c["image_id"], text)
        kept = []
        for row in candidates:
            me = row["sample_id"]
            for index, key, reason, what in (
                (self.by_id, row["sample_id"], "exact_duplicate", "same image, task and conversation as"),
                (self.by_near, row["near_dup_key"], "near_duplicate", "same image and normalised text as"),
            ):
                twin = index.get(key)
                if twin is not None:
                    if reason == "exact_duplicate":
                        self.stats.exact_duplicates += 1
                    else:
                        self.stats.near_duplicates += 1
                    self.stats.drops.drop(
                        stage="dedup",
                        table=row["generation_table"],
                        item_id=row["item_id"],
                        image_id=row["image_id"],
                        sample_id=row["sample_id"],
                        reason=reason,
                        kept_id=twin,
                        detail=f"{what} sample {twin}",
                    )
                    break
                index[key] = me
            else:
                kept.append(row)
        return kept


def _partition_candidates(
    rows_by_table: Mapping[str, list[dict[str, Any]]],
    images: Mapping[str, Mapping[str, Any]],
    id_count: Mapping[str, int],
    stats: AssemblyStats,
    require_validated: bool,
) -> list[dict[str, Any]]:
    """One partition's generation rows -> candidate samples; every invalid, imageless, ambiguous or unvalidated
    row is counted and logged in the drop log, every altered dialogue too."""
    drops = stats.drops
    candidates: list[dict[str, Any]] = []
    for table in sorted(rows_by_table, key=lambda t: (GENERATION_TABLES.index(t) if t in GENERATION_TABLES else 99, t)):
        rows = rows_by_table[table]
        stats.input_rows[table] = stats.input_rows.get(table, 0) + len(rows)
        rows.sort(key=lambda r: (str(r.get("image_id")), str(r.get("item_id"))))  # arrival order never matters
        for item in rows:
            reason = detail = None
            task = item.get("task_type")
            image_id = item.get("image_id")
            try:
                if task not in TASK_TYPES:
                    raise ValueError(f"unknown task_type {task!r}")
                messages, question, answer, changes = build_messages_explained(item)
            except (ValueError, TypeError, KeyError, IndexError) as exc:
                stats.invalid += 1
                reason, detail = "invalid", str(exc)
            if reason is None and image_id not in images:
                stats.missing_image += 1
                reason, detail = (
                    "image_missing",
                    "image_id not in raw_images (of the partitions that passed their checks)",
                )
            if reason is None and id_count.get(image_id, 0) > 1:
                stats.ambiguous_image += 1
                reason, detail = (
                    "image_id_ambiguous",
                    f"{id_count[image_id]} raw_images rows share this image_id (several partitions)",
                )
            validated = _verdict(item.get("validators_passed"))
            if reason is None and require_validated and not validated:
                stats.failed_validation += 1
                reason, detail = "failed_validation", f"validators_passed: {str(item.get('validators_passed'))[:200]}"
            if reason is not None:
                drops.drop(
                    stage="assembly",
                    table=table,
                    item_id=item.get("item_id"),
                    image_id=image_id,
                    reason=reason,
                    detail=detail or "",
                )
                continue
            sample_id = compute_sample_id(image_id, task, messages)
            for code, what in changes.items():
                drops.alter(
                    stage="dialogue",
                    table=table,
                    item_id=item.get("item_id"),
                    image_id=image_id,
                    sample_id=sample_id,
                    reason=code,
                    detail=what,
                )
            stats.altered_dialogues += bool(changes)
            candidates.append(
                _candidate(item, table, sample_id, messages, question, answer, images[image_id], validated)
            )
    return candidates


def assemble_samples(
    generated: Mapping[str, TableInput],
    raw_images: Frame,
    *,
    val_fraction: float,
    holdout_fraction: float,
    explicit_holdout: set[str] | None = None,
    require_validated: bool = True,
    near_duplicate_max_distance: int = NEAR_DUPLICATE_MAX_DISTANCE,
    spill_dir: Path | None = None,
) -> tuple[pl.DataFrame | pl.LazyFrame, AssemblyStats]:
    """All generation tables + raw_images -> (instruction_samples, stats). Pure and deterministic.

    With `spill_dir`, each partition's samples are written there as they are made and the result is a
    lazy scan of those files (memory stays at one batch's samples: 1.2M samples would hold ~3.5 GB);
    without it, one frame.

    A table is one frame, or a mapping {partition: frame} (what the asset gets: lazy scans). The work goes
    one partition at a time, so only one batch's rows are Python objects at once (MMOral's 1.3M samples fit
    on one machine). Duplicates are found within an image, where the order is the same however rows are
    spread over partitions: by table (reports, VQA, dialogues, attribute tasks), then item id. Output rows
    are ordered by partition, image, task and sample id. `stats.drops` holds one row per dropped or altered
    input row (`dropped_samples`); the split is by content (`split.split_images`).
    """
    stats = AssemblyStats()
    image_rows = _rows(_select_known(raw_images, IMAGE_COLUMNS))
    id_count: dict[str, int] = {}
    for r in image_rows:
        id_count[r["image_id"]] = id_count.get(r["image_id"], 0) + 1
    images = {r["image_id"]: r for r in image_rows}
    tables = {t: _by_partition(f, GENERATION_COLUMNS) for t, f in generated.items()}
    for t in tables:
        stats.input_rows[t] = 0
    dedup = _Deduplicator(stats)
    order = {t: i for i, t in enumerate(TASK_TYPES)}
    chunks: list[pl.DataFrame] = []
    spilled: list[Path] = []
    used: set[str] = set()
    for part in sorted({p for per in tables.values() for p in per}):
        rows_by_table = {t: _rows(per.get(part)) for t, per in tables.items()}
        kept = dedup.keep(_partition_candidates(rows_by_table, images, id_count, stats, require_validated))
        if kept:
            kept.sort(key=lambda r: (r["image_id"], order[r["task_type"]], r["sample_id"]))
            used.update(r["image_id"] for r in kept)
            # column by column: building a frame from 60k dicts is the slow path of polars
            chunk = pl.DataFrame({c: [r[c] for r in kept] for c in SAMPLE_SCHEMA}, schema=SAMPLE_SCHEMA)
            if spill_dir is None:
                chunks.append(chunk)
            else:
                spilled.append(spill_dir / f"{len(spilled):05d}.parquet")
                chunk.write_parquet(spilled[-1], compression="lz4")
        progress.tick(samples=len(kept))
    frame: pl.DataFrame | pl.LazyFrame
    if spill_dir is None:
        frame = pl.concat(chunks, rechunk=False) if chunks else pl.DataFrame(schema=SAMPLE_SCHEMA)
    else:
        frame = pl.scan_parquet(spilled) if spilled else pl.LazyFrame(schema=SAMPLE_SCHEMA)
    stats.split = split_images(
        [{**images[i], "image_id": i} for i in sorted(used)],
        val_fraction=val_fraction,
        holdout_fraction=holdout_fraction,
        explicit_holdout=explicit_holdout,
        near_duplicate_max_distance=near_duplicate_max_distance,
    )
    frame = frame.with_columns(
        pl.col("image_id").replace_strict(stats.split.split, default=None, return_dtype=pl.String).alias("split"),
        pl.col("image_id").replace_strict(stats.split.group, default=None, return_dtype=pl.String).alias("split_group"),
    )
    stats.output_rows = (
        frame.height if isinstance(frame, pl.DataFrame) else int(frame.select(pl.len()).collect().item())
    )
    return frame, stats


def partitions_of(generated: Mapping[str, TableInput]) -> int:
    """How many partitions `assemble_samples` will work through (the progress total)."""
    return len({p for f in generated.values() for p in _by_partition(f, ("partition",))})


def split_overlap(samples: pl.DataFrame) -> dict[str, list[str]]:
    """Images that appear in more than one split (must be empty), keyed by the pair of splits."""
    if samples.height == 0:
        return {}
    per_image = samples.group_by("image_id").agg(pl.col("split").unique().sort().alias("splits"))
    bad = per_image.filter(pl.col("splits").list.len() > 1)
    out: dict[str, list[str]] = {}
    for r in bad.iter_rows(named=True):
        out.setdefault("+".join(r["splits"]), []).append(r["image_id"])
    return out
