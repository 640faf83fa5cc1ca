"""Data-quality rules over the attribute tables (pure polars; Dagster checks only call these)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import polars as pl

from mmoral_pipeline.attributes.build import KEPT_OUTCOMES, OUTCOME_IN_OWNER
from mmoral_pipeline.domain import fdi as fdi_rules

FIXED_OUTCOMES = frozenset(
    {
        "tooth",
        "condition",
        "jaw",
        "missing_region",
        "unknown_tooth",
        "merged_duplicate",
        "suppressed:crown_filling_overlap",
        OUTCOME_IN_OWNER,
    }
)


def is_known_outcome(outcome: str) -> bool:
    return outcome in FIXED_OUTCOMES or outcome.startswith("dropped:")


def finding_accounting(
    raw_annotations: pl.DataFrame,
    outcomes: pl.DataFrame,
    image_attributes: pl.DataFrame | None = None,
    partition: str | None = None,
) -> dict[str, Any]:
    """Every raw annotation has exactly one known outcome; kept ones appear in a document.

    With `partition`, outcomes of annotations from other batches (copies of an X-ray merged into a
    document owned here: `annotation_partition` differs) are not counted against `raw_annotations`
    (they must still appear in a document). Returns counts (raw, accounted, per outcome) and the
    problems found (empty lists = pass).
    """
    own = outcomes
    if partition is not None and "annotation_partition" in outcomes.columns:
        own = outcomes.filter(pl.col("annotation_partition").is_null() | (pl.col("annotation_partition") == partition))
    raw_ids = raw_annotations["annotation_id"].to_list()
    out_ids = own["annotation_id"].to_list()
    raw_set, out_counts = set(raw_ids), Counter(out_ids)
    missing = sorted(raw_set - set(out_counts))
    extra = sorted(set(out_counts) - raw_set)
    twice = sorted(a for a, n in Counter(outcomes["annotation_id"].to_list()).items() if n > 1)
    unknown_outcomes = sorted({o for o in outcomes["outcome"].to_list() if not is_known_outcome(o)})
    not_in_docs: list[str] = []
    if image_attributes is not None:
        import json

        in_docs: set[str] = set()
        for blob in image_attributes["document"].to_list():
            in_docs |= cited_annotation_ids(json.loads(blob))
        kept = outcomes.filter(pl.col("outcome").is_in(list(KEPT_OUTCOMES)))["annotation_id"].to_list()
        not_in_docs = sorted(set(kept) - in_docs)
    per_outcome = Counter(own["outcome"].to_list())
    return {
        "raw": len(raw_ids),
        "accounted": len(out_ids),
        "imported": outcomes.height - own.height,
        "per_outcome": dict(per_outcome),
        "missing": missing,
        "extra": extra,
        "twice": twice,
        "unknown_outcomes": unknown_outcomes,
        "kept_not_in_documents": not_in_docs,
        "passed": not (missing or extra or twice or unknown_outcomes or not_in_docs)
        and len(raw_ids) == sum(per_outcome.values()),
    }


def accounting_description(acc: dict[str, Any]) -> str | None:
    """What a failed `finding_accounting` found, with its figures and the likely fix; None when it passed."""
    if acc["passed"]:
        return None
    parts = [f"{acc['raw']} raw annotations, {acc['accounted']} outcomes."]
    if acc["missing"] or acc["extra"] or acc["twice"]:
        parts.append(
            f"{len(acc['missing'])} without an outcome, {len(acc['extra'])} outcomes of unknown annotations, "
            f"{len(acc['twice'])} with two outcomes: annotation_outcomes is stale or the rules lost track; "
            "re-materialise "
            "the batch's attributes."
        )
    if acc["kept_not_in_documents"]:
        parts.append(
            f"{len(acc['kept_not_in_documents'])} kept annotations are in no document: a rule bug, please report it."
        )
    if acc["unknown_outcomes"]:
        parts.append(f"unknown outcomes {acc['unknown_outcomes']}: a rule bug, please report it.")
    return " ".join(parts)


def cited_annotation_ids(document: dict[str, Any]) -> set[str]:
    """Every annotation id an attribute document (as JSON) cites, wherever it sits."""
    found: set[str] = set()
    _collect_ids(document, found)
    return found


def _collect_ids(node: Any, into: set[str]) -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "annotation_ids":
                into.update(v)
            else:
                _collect_ids(v, into)
    elif isinstance(node, list):
        for v in node:
            _collect_ids(v, into)


def invalid_teeth(tooth_attributes: pl.DataFrame) -> pl.DataFrame:
    """Rows whose FDI id is not a tooth, or whose quadrant / wisdom flag / side disagree with it."""
    bad = []
    for r in tooth_attributes.select("image_id", "tooth_id", "quadrant", "is_wisdom", "side").iter_rows(named=True):
        tid = r["tooth_id"]
        if not fdi_rules.is_valid_fdi(tid):
            bad.append({**r, "problem": "not an FDI tooth"})
        elif (
            r["quadrant"] != fdi_rules.quadrant(tid)
            or r["is_wisdom"] != fdi_rules.is_wisdom(tid)
            or r["side"] != fdi_rules.side_label(tid)
        ):
            bad.append({**r, "problem": "quadrant/wisdom/side disagree with the FDI id"})
    schema = {
        "image_id": pl.String,
        "tooth_id": pl.Int64,
        "quadrant": pl.Int64,
        "is_wisdom": pl.Boolean,
        "side": pl.String,
        "problem": pl.String,
    }
    return pl.DataFrame(bad, schema=schema) if bad else pl.DataFrame(schema=schema)


def repeated_teeth(tooth_attributes: pl.DataFrame) -> pl.DataFrame:
    """(image_id, tooth_id) pairs that occur more than once."""
    return (
        tooth_attributes.group_by("image_id", "tooth_id")
        .agg(pl.len().alias("n"))
        .filter(pl.col("n") > 1)
        .sort("image_id", "tooth_id")
    )


def outcome_distribution(outcomes: pl.DataFrame) -> dict[str, dict[str, int]]:
    """{category: {outcome: count}}: what the rules did to each class."""
    out: dict[str, dict[str, int]] = {}
    for (cat, outcome), n in Counter(
        zip(outcomes["category"].to_list(), outcomes["outcome"].to_list(), strict=True)
    ).items():
        out.setdefault(cat, {})[outcome] = n
    return {k: dict(sorted(v.items())) for k, v in sorted(out.items())}
