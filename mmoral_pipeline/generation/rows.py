"""`InstructionItem`: the one row schema every generation asset emits (and rejected_generations).

The dataset contributor assembles all generation tables into one instruction table; keeping one
schema (task-specific extras in the JSON column `extra`) makes that a plain concat.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

import polars as pl
from pydantic import BaseModel, Field

TaskType = Literal[
    "report", "vqa_closed", "vqa_open", "loc_closed", "loc_open", "count_closed", "dialogue", "attribute"
]
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
DIMENSIONS: tuple[str, ...] = ("Teeth", "Patho", "HisT", "Jaw", "SumRec", "Report")


class InstructionItem(BaseModel):
    item_id: str  # stable content hash of (image, task, question, answer/turns, options)
    image_id: str
    partition: str
    task_type: TaskType
    question: str  # the user turn as the trained model sees it (image instead of caption)
    answer: str = ""  # assistant turn ("" for dialogues: see turns)
    turns: list[dict[str, str]] | None = None  # dialogues: [{role: user|assistant, content}], patient = user
    options: list[str] | None = None  # closed items only
    answer_letter: str | None = None  # closed items only
    dimensions: list[str] = Field(default_factory=list)
    attribute_row_hash: str
    prompt_template_id: str
    prompt_version: str
    backend: str  # "offline" / "openai" / "rules"
    model: str
    params: str = "{}"  # JSON of sampling parameters (never the API key)
    request_hash: str = ""
    cache_hit: bool = False
    raw_response: str = ""
    run_id: str = ""
    validators_passed: list[str] = Field(default_factory=list)
    extra: str = "{}"  # JSON: task-specific extras (audit verdict, revision log, rule fact, usage, ...)
    # rejected_generations only
    rejected_by: str | None = None
    reject_reason: str | None = None


INSTRUCTION_SCHEMA: dict[str, pl.DataType] = {
    "item_id": pl.String,
    "image_id": pl.String,
    "partition": pl.String,
    "task_type": pl.String,
    "question": pl.String,
    "answer": pl.String,
    "turns": pl.List(pl.Struct({"role": pl.String, "content": pl.String})),
    "options": pl.List(pl.String),
    "answer_letter": pl.String,
    "dimensions": pl.List(pl.String),
    "attribute_row_hash": pl.String,
    "prompt_template_id": pl.String,
    "prompt_version": pl.String,
    "backend": pl.String,
    "model": pl.String,
    "params": pl.String,
    "request_hash": pl.String,
    "cache_hit": pl.Boolean,
    "raw_response": pl.String,
    "run_id": pl.String,
    "validators_passed": pl.List(pl.String),
    "extra": pl.String,
    "rejected_by": pl.String,
    "reject_reason": pl.String,
}


def item_id(
    image_id: str,
    task_type: str,
    question: str,
    answer: str = "",
    options: list[str] | None = None,
    turns: list[dict[str, str]] | None = None,
) -> str:
    """Stable content hash: the same image, task, question, answer and options give the same id."""
    parts = [image_id, task_type, question, answer, "\x1e".join(options) if options is not None else "\x00",
             "\x1e".join(f"{t['role']}\x1d{t['content']}" for t in turns) if turns is not None else "\x00"]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:20]


def to_frame(items: list[InstructionItem] | list[dict[str, Any]]) -> pl.DataFrame:
    """Rows -> a polars frame with the fixed schema (typed even when empty); built column-wise (fast)."""
    if not items:
        return pl.DataFrame(schema=INSTRUCTION_SCHEMA)
    rows = [i if isinstance(i, dict) else i.__dict__ for i in items]
    columns = {name: [r.get(name) for r in rows] for name in INSTRUCTION_SCHEMA}
    return pl.DataFrame(columns, schema=INSTRUCTION_SCHEMA)
