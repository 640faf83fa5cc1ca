"""The dataset card: what is in the instruction dataset and what produced it.

Counts by task, dimension, source and split; a figure of those distributions; the prompt
templates and versions, the code versions and the configuration. Written as `DATASET_CARD.md`
beside the exports (the figure as `dataset_card.png`) and shown as Markdown metadata in Dagster.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

from mmoral_pipeline.config import REPO_ROOT

# The columns the card reads (the dataset_card asset loads only these of instruction_samples).
CARD_COLUMNS = [
    "task_type",
    "dimensions",
    "source",
    "split",
    "image_id",
    "prompt_template_id",
    "prompt_version",
    "backend",
    "model",
]


def distributions(samples: pl.DataFrame) -> dict[str, dict[str, int]]:
    """{'task': {...}, 'dimension': {...}, 'source': {...}, 'split': {...}}

    A sample counts in each of its dimensions.
    """
    dims: Counter[str] = Counter()
    for labels in samples["dimensions"].to_list() if samples.height else []:
        for d in labels or ["(none)"]:
            dims[d] += 1
    return {
        "task": _counts(samples, "task_type"),
        "dimension": dict(dims),
        "source": _counts(samples, "source"),
        "split": _counts(samples, "split"),
    }


def _counts(samples: pl.DataFrame, col: str) -> dict[str, int]:
    if samples.height == 0:
        return {}
    return {str(k): int(v) for k, v in samples.group_by(col).len().sort(col).iter_rows()}


def crosstab(
    samples: pl.DataFrame, row: str, col: str = "split"
) -> tuple[list[str], list[str], dict[tuple[str, str], int]]:
    if samples.height == 0:
        return [], [], {}
    cells = {(str(a), str(b)): int(n) for a, b, n in samples.group_by(row, col).len().iter_rows()}
    return sorted({a for a, _ in cells}), sorted({b for _, b in cells}), cells


def prompt_versions(samples: pl.DataFrame) -> list[dict[str, Any]]:
    """Distinct (template, version, backend, model) behind the samples, with counts."""
    if samples.height == 0:
        return []
    cols = ["prompt_template_id", "prompt_version", "backend", "model"]
    return samples.group_by(cols).len().sort(cols, nulls_last=True).to_dicts()


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def distribution_png(samples: pl.DataFrame) -> bytes:
    """One figure: bars by task (stacked by split), dimension, source and split."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dist = distributions(samples)
    fig, axes = plt.subplots(2, 2, figsize=(10, 6), dpi=80)
    tasks, splits, cells = crosstab(samples, "task_type")
    ax = axes[0][0]
    bottom = [0] * len(tasks)
    for s in splits:
        vals = [cells.get((t, s), 0) for t in tasks]
        ax.bar(tasks, vals, bottom=bottom, label=s)
        bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
    ax.set_title("samples by task (stacked by split)")
    if splits:
        ax.legend(fontsize=7)
    for ax, key in ((axes[0][1], "dimension"), (axes[1][0], "source"), (axes[1][1], "split")):
        items = sorted(dist[key].items(), key=lambda kv: (-kv[1], kv[0]))
        ax.bar([k for k, _ in items], [v for _, v in items], color="#4c72b0")
        ax.set_title(f"samples by {key}")
    for ax in axes.flat:
        ax.tick_params(axis="x", rotation=45, labelsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _table(counts: Mapping[str, int], key: str) -> list[str]:
    lines = [f"| {key} | samples |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    return lines


def card_markdown(
    samples: pl.DataFrame,
    *,
    config: Mapping[str, Any],
    code_versions: Mapping[str, str],
    assembly_stats: Mapping[str, Any] | None = None,
    exports: Mapping[str, Any] | None = None,
    figure: str | None = None,
) -> str:
    """DATASET_CARD.md text; `figure` is the image reference to embed (a file name or a data URL)."""
    dist = distributions(samples)
    images = samples["image_id"].n_unique() if samples.height else 0
    md = [
        "# MMOral instruction dataset",
        "",
        f"Generated {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')} by mmoral-pipeline"
        f" (commit `{code_versions.get('git_commit') or 'unknown'}`).",
        "",
        f"**{samples.height} samples** on **{images} images**. Images are split as a whole (every sample of an X-ray "
        "is in"
        " one split); the `bench` split is the benchmark hold-out and never appears in train/val.",
        "",
    ]
    if figure:
        md += [f"![distributions]({figure})", ""]
    md += ["## Samples by split", ""] + _table(dist["split"], "split") + [""]
    images_by_split = _counts(samples.unique("image_id"), "split") if samples.height else {}
    md += ["Images by split: " + ", ".join(f"{k} {v}" for k, v in sorted(images_by_split.items())), ""]
    tasks, splits, cells = crosstab(samples, "task_type")
    md += [
        "## Samples by task and split",
        "",
        "| task | " + " | ".join(splits) + " | total |",
        "|---" * (len(splits) + 2) + "|",
    ]
    for t in tasks:
        row = [cells.get((t, s), 0) for s in splits]
        md.append(f"| {t} | " + " | ".join(str(v) for v in row) + f" | {sum(row)} |")
    md += ["", "## Samples by dimension", "", "A sample counts once in each of its dimension labels.", ""] + _table(
        dist["dimension"], "dimension"
    )
    md += ["", "## Samples by source", ""] + _table(dist["source"], "source")
    if assembly_stats:
        md += ["", "## Assembly", "", "| step | count |", "|---|---|"]
        for k, v in assembly_stats.items():
            md.append(f"| {k} | {json.dumps(v) if isinstance(v, dict) else v} |")
    md += [
        "",
        "## Prompts and models",
        "",
        "| prompt template | version | backend | model | samples |",
        "|---|---|---|---|---|",
    ]
    for r in prompt_versions(samples):
        md.append(
            f"| {r['prompt_template_id'] or '(rule-based)'} | {r['prompt_version'] or '-'} | {r['backend'] or '-'} | "
            f"{r['model'] or '-'} | {r['len']} |"
        )
    md += ["", "## Code versions", "", "| component | version |", "|---|---|"] + [
        f"| {k} | `{v}` |" for k, v in code_versions.items()
    ]
    md += [
        "",
        "## Configuration",
        "",
        "```json",
        json.dumps(dict(config), indent=2, sort_keys=True, default=str),
        "```",
    ]
    if exports:
        md += ["", "## Files", ""]
        for name, info in exports.items():
            md.append(
                f"- **{name}**: "
                + ", ".join(f"`{f}`" for f in info.get("files", []))
                + (f" ({info.get('counts')})" if info.get("counts") else "")
            )
    md += [
        "",
        "## Lineage",
        "",
        "Every sample carries its `sample_id`; `mmoral lineage SAMPLE_ID [--html out.html]` prints the request, "
        "caption,",
        "attribute rows, annotations and raw image it came from.",
        "",
    ]
    return "\n".join(md)


def write_card(out_dir: str | Path, markdown: str, png: bytes | None) -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    if png is not None:
        (out / "dataset_card.png").write_bytes(png)
        written.append(out / "dataset_card.png")
    (out / "DATASET_CARD.md").write_text(markdown, encoding="utf-8")
    written.append(out / "DATASET_CARD.md")
    return written
