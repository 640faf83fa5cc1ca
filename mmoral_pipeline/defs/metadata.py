"""Materialisation metadata every table asset emits: row count, column schema, preview, pictures."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Mapping
from typing import Any

import dagster as dg
import polars as pl


def _column_type(dtype: pl.DataType) -> str:
    return str(dtype)


def table_metadata(df: pl.DataFrame | pl.LazyFrame, *, preview_rows: int = 5, max_cell: int = 80) -> dict[str, Any]:
    """Row count, column schema and a Markdown preview for any table (a lazy one is counted, and only its
    first rows read)."""
    if isinstance(df, pl.LazyFrame):
        height = int(df.select(pl.len()).collect().item())
        columns = df.collect_schema()
        df = df.head(preview_rows).collect()
    else:
        height, columns = df.height, df.schema
    schema = dg.TableSchema(columns=[dg.TableColumn(name=n, type=_column_type(t)) for n, t in columns.items()])
    return {
        "dagster/row_count": dg.MetadataValue.int(height),
        "dagster/column_schema": schema,
        "preview": dg.MetadataValue.md(markdown_preview(df, preview_rows, max_cell)),
    }


def _cell(v: Any, max_cell: int) -> str:
    if isinstance(v, (list, dict)):
        v = json.dumps(v, default=str)
    s = str(v).replace("|", "\\|").replace("\n", " ")
    return s if len(s) <= max_cell else s[: max_cell - 1] + "…"


def markdown_preview(df: pl.DataFrame, rows: int = 5, max_cell: int = 80) -> str:
    if df.height == 0:
        return "_empty table_"
    cols = df.columns
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in df.head(rows).iter_rows(named=True):
        lines.append("| " + " | ".join(_cell(row[c], max_cell) for c in cols) + " |")
    return "\n".join(lines)


def counts_markdown(counts: Mapping[str, int], key: str = "category", value: str = "count") -> str:
    lines = [f"| {key} | {value} |", "|---|---|"]
    for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        lines.append(f"| {k} | {v} |")
    return "\n".join(lines)


def png_markdown(png: bytes, alt: str = "figure") -> dg.MetadataValue:
    """A picture inline in the asset's metadata (the UI renders Markdown images)."""
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})")


def bar_chart_png(counts: Mapping[str, float], title: str, *, xlabel: str = "", ylabel: str = "count") -> bytes:
    """A small bar chart as PNG bytes (matplotlib, headless)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    fig, ax = plt.subplots(figsize=(6, 3), dpi=80)
    ax.bar([k for k, _ in items], [v for _, v in items], color="#4c72b0")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.tick_params(axis="x", rotation=60, labelsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
