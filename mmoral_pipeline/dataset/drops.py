"""Every drop has a row: the one table pattern for stages that drop or alter rows.

A stage that removes rows (an invalid item, a duplicate, a row without its image, a benchmark pool
cut) or changes them (dialogue turns merged or trimmed) records each one in a `DropLog`, and writes
`log.frame()` as its own table (`DROPPED_SCHEMA`), beside its output. `balance` then proves, per
input table, rows in = rows out + rows dropped; the stage's asset check fails when it does not.

Altered rows stay in the output (they are counted as out, not as dropped); their row says what
changed, so a reader can tell a trimmed dialogue from the one the generator wrote.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import polars as pl

DROPPED_SCHEMA: dict[str, pl.DataType] = {
    "stage": pl.String,  # which step: assembly, dedup, dialogue, benchmark_pool, ...
    "action": pl.String,  # dropped | altered
    "table": pl.String,  # the input table the row came from
    "item_id": pl.String,  # the row's id in that table
    "image_id": pl.String,
    "sample_id": pl.String,  # the row's id after the stage, when it had one
    "reason": pl.String,  # stable code (tests and dashboards key on it)
    "detail": pl.String,  # human-readable: what exactly, and which row was kept instead
    "kept_id": pl.String,  # for duplicates: the id of the row kept in its place
}


@dataclass
class DropLog:
    """Rows one stage dropped or altered, each with its reason."""

    rows: list[dict[str, Any]] = field(default_factory=list)

    def record(
        self,
        action: Literal["dropped", "altered"],
        *,
        stage: str,
        table: str,
        item_id: Any,
        reason: str,
        detail: str = "",
        image_id: Any = None,
        sample_id: str | None = None,
        kept_id: str | None = None,
    ) -> None:
        self.rows.append({
            "stage": stage, "action": action, "table": table, "item_id": None if item_id is None else str(item_id),
            "image_id": None if image_id is None else str(image_id), "sample_id": sample_id, "reason": reason,
            "detail": detail[:500], "kept_id": kept_id,
        })

    def drop(self, **kw: Any) -> None:
        self.record("dropped", **kw)

    def alter(self, **kw: Any) -> None:
        self.record("altered", **kw)

    def frame(self) -> pl.DataFrame:
        return pl.DataFrame(self.rows, schema=DROPPED_SCHEMA) if self.rows else pl.DataFrame(schema=DROPPED_SCHEMA)

    def counts(self, action: str = "dropped") -> dict[str, int]:
        """reason -> rows with that action."""
        return dict(Counter(r["reason"] for r in self.rows if r["action"] == action))


def balance(
    rows_in: Mapping[str, int], rows_out: Mapping[str, int], dropped: pl.DataFrame
) -> dict[str, dict[str, Any]]:
    """Per input table: {in, out, dropped, ok} where ok means in == out + dropped (altered rows are out)."""
    gone = Counter(dropped.filter(pl.col("action") == "dropped")["table"].to_list()) if dropped.height else Counter()
    out: dict[str, dict[str, Any]] = {}
    for table in sorted(set(rows_in) | set(rows_out) | set(gone)):
        n_in, n_out, n_gone = int(rows_in.get(table, 0)), int(rows_out.get(table, 0)), int(gone.get(table, 0))
        out[table] = {"in": n_in, "out": n_out, "dropped": n_gone, "ok": n_in == n_out + n_gone}
    return out
