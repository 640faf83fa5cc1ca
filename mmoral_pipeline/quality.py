"""Data-quality rules over the ingest tables (pure polars; the Dagster checks only call these)."""

from __future__ import annotations

import polars as pl

from mmoral_pipeline.domain import fdi as fdi_rules
from mmoral_pipeline.domain.taxonomy import Category


def side_consistency(annotations: pl.DataFrame, images: pl.DataFrame, midline_tolerance: float) -> pl.DataFrame:
    """Per source: share of tooth boxes that lie on the wrong half of the image for their quadrant.

    The patient's right (quadrants 1, 4) is the image's left. Incisors whose centre lies within
    `midline_tolerance` x width of the midline are not counted (they straddle it legitimately).
    """
    teeth = annotations.filter((pl.col("category") == Category.TOOTH.value) & pl.col("fdi").is_not_null())
    if teeth.height == 0:
        return pl.DataFrame(schema={"source": pl.String, "teeth": pl.Int64, "wrong_side": pl.Int64, "wrong_share": pl.Float64})
    joined = teeth.join(images.select("image_id", "width"), on="image_id", how="inner")
    rows = []
    for r in joined.select("source", "fdi", "box", "width").iter_rows(named=True):
        cx = (r["box"][0] + r["box"][2]) / 2.0
        mid = r["width"] / 2.0
        if fdi_rules.is_incisor(r["fdi"]) and abs(cx - mid) <= midline_tolerance * r["width"]:
            continue
        actual = "left" if cx < mid else "right"
        rows.append({"source": r["source"], "wrong": actual != fdi_rules.image_half(r["fdi"])})
    if not rows:
        return pl.DataFrame(schema={"source": pl.String, "teeth": pl.Int64, "wrong_side": pl.Int64, "wrong_share": pl.Float64})
    return (
        pl.DataFrame(rows)
        .group_by("source")
        .agg(pl.len().alias("teeth"), pl.col("wrong").sum().cast(pl.Int64).alias("wrong_side"))
        .with_columns((pl.col("wrong_side") / pl.col("teeth")).alias("wrong_share"))
        .sort("source")
    )


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
