"""Result artefacts: Markdown table, per-dimension bar charts, raw predictions on disk."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from mmoral_pipeline.evaluation.items import CLOSED_DIMENSIONS, OPEN_DIMENSIONS
from mmoral_pipeline.evaluation.scoring import BenchScores, results_table, spread_summary


def dimension_bars_png(rows: Sequence[BenchScores]) -> bytes:
    """One panel per dimension (closed, open, overall and Avg), one bar per model."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (
        [("Closed", d) for d in (*CLOSED_DIMENSIONS, "Overall")]
        + [("Open", d) for d in (*OPEN_DIMENSIONS, "Overall")]
        + [("", "Avg")]
    )
    cols = 5
    nrows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(3.2 * cols, 2.6 * nrows), squeeze=False)
    names = [r.model for r in rows]
    for ax, (kind, dim) in zip(axes.flat, panels, strict=False):
        if kind == "Closed":
            vals = [r.closed.get(dim) for r in rows]
        elif kind == "Open":
            vals = [r.open.get(dim) for r in rows]
        else:
            vals = [r.avg for r in rows]
        ax.bar(
            range(len(rows)), [v or 0.0 for v in vals], color=["#4c72b0" if v is not None else "#cccccc" for v in vals]
        )
        ax.set_xticks(range(len(rows)), names, rotation=45, ha="right", fontsize=7)
        ax.set_ylim(0, 100)
        ax.set_title(f"{kind} {dim}".strip(), fontsize=9)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return buf.getvalue()


def results_markdown(rows: Sequence[BenchScores]) -> str:
    """The table plus judge/prompt version, extraction methods and, when asked, the LLM-judge spread."""
    lines = [results_table(rows), ""]
    for r in rows:
        extra = [f"extraction {r.extraction_methods}"] if r.extraction_methods else []
        if r.judge:
            extra.append(f"judge {r.judge} ({r.judge_prompt_version})")
        if r.open_spread:
            s = spread_summary(r.open_spread)
            extra.append(f"open score over {int(s['n'])} scorings: {s['min']:.2f}-{s['max']:.2f} (std {s['std']:.2f})")
        if extra:
            lines.append(f"- {r.model}: " + "; ".join(extra))
    return "\n".join(lines)


def write_outputs(out_dir: str | Path, results: Sequence) -> dict[str, Path]:
    """results: ModelResult list -> results.md, dimensions.png, predictions_{closed,open}.jsonl."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = [r.scores for r in results]
    paths = {
        "table": out / "results.md",
        "chart": out / "dimensions.png",
        "closed": out / "predictions_closed.jsonl",
        "open": out / "predictions_open.jsonl",
        "scores": out / "scores.json",
    }
    paths["table"].write_text(results_markdown(rows) + "\n", encoding="utf-8")
    paths["chart"].write_bytes(dimension_bars_png(rows))
    with open(paths["closed"], "w", encoding="utf-8") as fh:
        for r in results:
            fh.writelines(p.model_dump_json() + "\n" for p in r.closed)
    with open(paths["open"], "w", encoding="utf-8") as fh:
        for r in results:
            fh.writelines(p.model_dump_json() + "\n" for p in r.open)
    paths["scores"].write_text(json.dumps([r.model_dump() for r in rows], indent=1), encoding="utf-8")
    return paths
