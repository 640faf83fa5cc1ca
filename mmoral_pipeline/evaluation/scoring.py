"""Scoring: closed-ended accuracy (with extraction-failure rate), open-ended judge score,
per dimension (a question counts in each of its labels) and overall; Avg = (closed + open) / 2,
laid out as the paper's table."""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from pydantic import BaseModel, Field

from mmoral_pipeline.evaluation.extraction import extract_choice
from mmoral_pipeline.evaluation.items import CLOSED_DIMENSIONS, OPEN_DIMENSIONS, ClosedItem, OpenItem, split_labels
from mmoral_pipeline.evaluation.judge import JudgeScore


class ClosedPrediction(BaseModel):
    model: str
    index: str
    category: str
    gold: str
    output: str
    letter: str | None
    method: str  # paren / letter / option_text / failed
    correct: bool


class OpenPrediction(BaseModel):
    model: str
    index: str
    category: str
    question: str
    ground_truth: str
    output: str
    score: float
    judge: str
    prompt_version: str
    cache_hit: bool = False
    parse_failed: bool = False
    rationale: str = ""


class BenchScores(BaseModel):
    """One model's row of the results table (percentages, 0-100)."""

    model: str
    closed: dict[str, float | None] = Field(default_factory=dict)  # dimension -> accuracy %, plus "Overall"
    closed_counts: dict[str, int] = Field(default_factory=dict)
    open: dict[str, float | None] = Field(default_factory=dict)  # dimension -> mean judge score %, plus "Overall"
    open_counts: dict[str, int] = Field(default_factory=dict)
    avg: float | None = None
    extraction_failure_rate: float | None = None  # % of closed answers nothing could be extracted from
    extraction_methods: dict[str, int] = Field(default_factory=dict)
    judge: str = ""
    judge_prompt_version: str = ""
    open_spread: list[float] = Field(default_factory=list)  # open Overall per LLM re-scoring, when asked


def score_closed(model: str, items: Sequence[ClosedItem], outputs: Sequence[str]) -> list[ClosedPrediction]:
    preds = []
    for it, out in zip(items, outputs, strict=True):
        ex = extract_choice(out, it.options)
        preds.append(ClosedPrediction(model=model, index=it.index, category=it.category, gold=it.answer, output=out,
                                      letter=ex.letter, method=ex.method, correct=ex.letter == it.answer))
    return preds


def score_open(
    model: str, items: Sequence[OpenItem], outputs: Sequence[str], judge_scores: Sequence[JudgeScore]
) -> list[OpenPrediction]:
    return [
        OpenPrediction(model=model, index=it.index, category=it.category, question=it.question, ground_truth=it.answer,
                       output=out, score=js.score, judge=js.judge, prompt_version=js.prompt_version,
                       cache_hit=js.cache_hit, parse_failed=js.parse_failed, rationale=js.rationale)
        for it, out, js in zip(items, outputs, judge_scores, strict=True)
    ]


def per_dimension(
    values: Sequence[tuple[str, float]], dimensions: Sequence[str]
) -> tuple[dict[str, float | None], dict[str, int]]:
    """(category, value in 0..1) pairs -> mean % per dimension and overall; a row counts in each label."""
    sums = {d: 0.0 for d in dimensions}
    counts = {d: 0 for d in dimensions}
    for category, v in values:
        for label in split_labels(category):
            if label in sums:
                sums[label] += v
                counts[label] += 1
    means: dict[str, float | None] = {d: (100.0 * sums[d] / counts[d] if counts[d] else None) for d in dimensions}
    means["Overall"] = 100.0 * sum(v for _, v in values) / len(values) if values else None
    counts["Overall"] = len(values)
    return means, counts


def summarise(model: str, closed: Sequence[ClosedPrediction] = (), open_: Sequence[OpenPrediction] = (),
              open_spread: Sequence[float] = ()) -> BenchScores:
    c_means, c_counts = per_dimension([(p.category, 1.0 if p.correct else 0.0) for p in closed], CLOSED_DIMENSIONS)
    o_means, o_counts = per_dimension([(p.category, p.score) for p in open_], OPEN_DIMENSIONS)
    methods: dict[str, int] = {}
    for p in closed:
        methods[p.method] = methods.get(p.method, 0) + 1
    c_all, o_all = c_means["Overall"], o_means["Overall"]
    return BenchScores(
        model=model, closed=c_means, closed_counts=c_counts, open=o_means, open_counts=o_counts,
        avg=(c_all + o_all) / 2 if c_all is not None and o_all is not None else None,
        extraction_failure_rate=100.0 * methods.get("failed", 0) / len(closed) if closed else None,
        extraction_methods=methods,
        judge=open_[0].judge if open_ else "", judge_prompt_version=open_[0].prompt_version if open_ else "",
        open_spread=list(open_spread),
    )


def spread_summary(values: Sequence[float]) -> dict[str, float]:
    """Min / max / std of the open Overall over repeated LLM scoring (the paper saw 37.17-38.08)."""
    if not values:
        return {}
    return {
        "min": min(values),
        "max": max(values),
        "std": statistics.pstdev(values) if len(values) > 1 else 0.0,
        "n": float(len(values)),
    }


def _fmt(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f}"


def results_table(rows: Sequence[BenchScores]) -> str:
    """Markdown table in the paper's layout: closed dimensions + overall, open dimensions + overall, Avg."""
    head = (["Model"] + [f"C-{d}" for d in CLOSED_DIMENSIONS] + ["Closed"] + [f"O-{d}" for d in OPEN_DIMENSIONS]
            + ["Open", "Avg", "Extract-fail %"])
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for r in rows:
        cells = ([r.model] + [_fmt(r.closed.get(d)) for d in CLOSED_DIMENSIONS] + [_fmt(r.closed.get("Overall"))]
                 + [_fmt(r.open.get(d)) for d in OPEN_DIMENSIONS] + [_fmt(r.open.get("Overall")), _fmt(r.avg),
                                                                      _fmt(r.extraction_failure_rate)])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
