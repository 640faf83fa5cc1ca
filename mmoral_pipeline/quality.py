"""Data-quality rules over the ingest tables (pure polars; the Dagster checks only call these)."""

from __future__ import annotations

import polars as pl

from mmoral_pipeline.domain import fdi as fdi_rules
from mmoral_pipeline.domain.taxonomy import Category

SIDE_SCHEMA = {
    "source": pl.String,
    "quadrant": pl.Int64,
    "teeth": pl.Int64,
    "wrong_side": pl.Int64,
    "wrong_share": pl.Float64,
}


def side_consistency(annotations: pl.DataFrame, images: pl.DataFrame, midline_tolerance: float) -> pl.DataFrame:
    """Per source and FDI quadrant: share of tooth boxes on the wrong half of the image for their quadrant.

    The patient's right (quadrants 1, 4) is the image's left. Incisors whose centre lies within
    `midline_tolerance` x width of the midline are not counted (they straddle it legitimately).
    """
    teeth = annotations.filter((pl.col("category") == Category.TOOTH.value) & pl.col("fdi").is_not_null())
    if teeth.height == 0:
        return pl.DataFrame(schema=SIDE_SCHEMA)
    joined = teeth.join(images.select("image_id", "width"), on="image_id", how="inner")
    rows = []
    for r in joined.select("source", "fdi", "box", "width").iter_rows(named=True):
        cx = (r["box"][0] + r["box"][2]) / 2.0
        mid = r["width"] / 2.0
        if fdi_rules.is_incisor(r["fdi"]) and abs(cx - mid) <= midline_tolerance * r["width"]:
            continue
        actual = "left" if cx < mid else "right"
        rows.append(
            {
                "source": r["source"],
                "quadrant": fdi_rules.quadrant(r["fdi"]),
                "wrong": actual != fdi_rules.image_half(r["fdi"]),
            }
        )
    if not rows:
        return pl.DataFrame(schema=SIDE_SCHEMA)
    return (
        pl.DataFrame(rows)
        .group_by("source", "quadrant")
        .agg(pl.len().alias("teeth"), pl.col("wrong").sum().cast(pl.Int64).alias("wrong_side"))
        .with_columns((pl.col("wrong_side") / pl.col("teeth")).alias("wrong_share"))
        .select(list(SIDE_SCHEMA))
        .cast(SIDE_SCHEMA)  # type: ignore[arg-type]
        .sort("source", "quadrant")
    )


# Quadrants on the other half of the same jaw: what a mirrored left/right labelling swaps.
_MIRROR = {1: 2, 2: 1, 3: 4, 4: 3, 5: 6, 6: 5, 7: 8, 8: 7}


def suggested_quadrant_map(per_quadrant: pl.DataFrame, majority: float = 0.5) -> dict[int, int]:
    """The `quadrant_map` that would put a source's teeth on the right half: for each jaw whose two
    quadrants are both mostly (> `majority`) on the wrong half, swap them. Empty when no such jaw."""
    wrong = {r["quadrant"] for r in per_quadrant.iter_rows(named=True) if r["wrong_share"] > majority}
    return {q: _MIRROR[q] for q in sorted(wrong) if _MIRROR.get(q) in wrong}


def side_summary(per_quadrant: pl.DataFrame) -> pl.DataFrame:
    """Per source: teeth, teeth on the wrong half, share (what the check's threshold applies to)."""
    if per_quadrant.height == 0:
        return pl.DataFrame(schema={k: v for k, v in SIDE_SCHEMA.items() if k != "quadrant"})
    return (
        per_quadrant.group_by("source")
        .agg(pl.col("teeth").sum(), pl.col("wrong_side").sum())
        .with_columns((pl.col("wrong_side") / pl.col("teeth")).alias("wrong_share"))
        .sort("source")
    )


def side_failure_description(per_quadrant: pl.DataFrame, threshold: float) -> str | None:
    """Figures and the likely fix of a failed side check, one sentence per failing source; None when it passes."""
    parts = []
    for src in side_summary(per_quadrant).filter(pl.col("wrong_share") > threshold).iter_rows(named=True):
        quads = per_quadrant.filter(pl.col("source") == src["source"])
        shares = ", ".join(
            f"Q{r['quadrant']} {r['wrong_share']:.0%} of {r['teeth']}" for r in quads.iter_rows(named=True)
        )
        fix = suggested_quadrant_map(quads)
        advice = (
            "its labels are mirrored: add `options: "
            f"{{quadrant_map: {{{', '.join(f'{k}: {v}' for k, v in fix.items())}}}}}` "
            f"to source {src['source']!r} in the sources file"
            if fix
            else "no quadrant swap explains it: check the source's tooth numbering (Universal vs FDI?) or its box order"
        )
        parts.append(
            f"{src['source']}: {src['wrong_side']} of {src['teeth']} teeth ({src['wrong_share']:.0%}, threshold "
            f"{threshold:.0%}) "
            f"lie on the wrong half of the image for their FDI quadrant (wrong share per quadrant: {shares}); {advice}."
        )
    return " ".join(parts) or None


def boxes_outside(annotations: pl.DataFrame, images: pl.DataFrame, tol: float = 1.0) -> pl.DataFrame:
    """Annotations whose box is not inside its image (or whose image is unknown)."""
    joined = annotations.join(images.select("image_id", "width", "height"), on="image_id", how="left")
    b = pl.col("box")
    return joined.filter(
        pl.col("width").is_null()
        | (b.list.get(0) < -tol)
        | (b.list.get(1) < -tol)
        | (b.list.get(2) > pl.col("width") + tol)
        | (b.list.get(3) > pl.col("height") + tol)
        | (b.list.get(2) <= b.list.get(0))
        | (b.list.get(3) <= b.list.get(1))
    ).select("annotation_id", "image_id", "box", "width", "height")


def duplicate_images(images: pl.DataFrame) -> pl.DataFrame:
    """Groups of images that share a sha256 (within or across sources)."""
    return (
        images.group_by("sha256")
        .agg(pl.col("image_id"), pl.col("source").unique().alias("sources"), pl.len().alias("n"))
        .filter(pl.col("n") > 1)
        .sort("sha256")
    )
