"""The expert tables and how an expert's boxes join the human annotations. Pure polars, no torch.

- `expert_annotations`: one row per kept box (score above the keep threshold, 0.3 as in MMOral),
  in a category no human label of the source covers.
- `expert_coverage`: one row per (image, expert) that ran: the categories it assessed there, so
  an image where the expert found nothing still says "looked for caries, found none".

`as_raw_annotations` gives expert rows the `raw_annotations` shape (the checkpoint as the source
file, `expert <name>@<version>` as the record, the expert in `extra`): the attribute rules,
lineage and integrity checks then treat a box alike whoever drew it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import polars as pl

from mmoral_pipeline import tables
from mmoral_pipeline.domain.taxonomy import Category

EXPERT_ANNOTATIONS = {
    "annotation_id": pl.String,
    "image_id": pl.String,
    "source": pl.String,
    "partition": pl.String,
    "category": pl.String,
    "tooth": pl.Int64,  # FDI, for the tooth class; null for every other category
    "box": pl.List(pl.Float64),  # [x1, y1, x2, y2] in the image's pixels
    "score": pl.Float64,
    "label": pl.String,  # the detector's class name (tooth_36, caries)
    "expert": pl.String,
    "expert_version": pl.String,
    "checkpoint": pl.String,
}
EXPERT_COVERAGE = {
    "image_id": pl.String,
    "source": pl.String,
    "partition": pl.String,
    "expert": pl.String,
    "expert_version": pl.String,
    "assessed": pl.List(pl.String),  # categories the expert assessed on this image (its classes minus the human ones)
    "deferred": pl.List(pl.String),  # its categories the source's human labels cover (they win)
    "boxes_predicted": pl.Int64,  # above the network's floor
    "boxes_kept": pl.Int64,  # above the keep threshold, in an assessed category
}

EXPERT_RECORD_PREFIX = "expert "


def expert_record(expert: str, version: str) -> str:
    return f"{EXPERT_RECORD_PREFIX}{expert}@{version}"


EXPERT_COLUMN = "expert"  # on joined annotations: '<name>@<version>' for an expert's box, null for a human label


def as_raw_annotations(expert_annotations: pl.DataFrame) -> pl.DataFrame:
    """Expert boxes as `raw_annotations` rows (tables.RAW_ANNOTATIONS) plus `expert` ('<name>@<version>'),
    ready to join the human ones."""
    schema = {**tables.RAW_ANNOTATIONS, EXPERT_COLUMN: pl.String}
    if expert_annotations.height == 0:
        return pl.DataFrame(schema=schema)
    extra = [
        json.dumps({"expert": e, "expert_version": v, "label": lab}, sort_keys=True)
        for e, v, lab in zip(
            expert_annotations["expert"].to_list(),
            expert_annotations["expert_version"].to_list(),
            expert_annotations["label"].to_list(),
            strict=True,
        )
    ]
    return expert_annotations.select(
        "annotation_id",
        "image_id",
        "source",
        "partition",
        pl.col("checkpoint").alias("source_file"),
        pl.concat_str([pl.lit(EXPERT_RECORD_PREFIX), "expert", pl.lit("@"), "expert_version"]).alias("record"),
        pl.col("label").alias("source_category"),
        "category",
        pl.lit(None, dtype=pl.String).alias("lesion_type"),
        pl.col("tooth").alias("fdi"),
        "box",
        pl.lit(None, dtype=pl.List(pl.Float64)).alias("polygon"),
        "score",
        pl.Series("extra", extra, dtype=pl.String),
        pl.concat_str(["expert", pl.lit("@"), "expert_version"]).alias(EXPERT_COLUMN),
    ).cast(schema)  # type: ignore[arg-type]


def with_expert_annotations(raw_annotations: pl.DataFrame, expert_annotations: pl.DataFrame | None) -> pl.DataFrame:
    """Human annotations plus the experts' (human labels already won: the expert table holds only the
    categories the source does not cover), with the `expert` column (null on human rows)."""
    experts = as_raw_annotations(
        expert_annotations if expert_annotations is not None else pl.DataFrame(schema=EXPERT_ANNOTATIONS)
    )
    if EXPERT_COLUMN not in raw_annotations.columns:
        raw_annotations = raw_annotations.with_columns(pl.lit(None, dtype=pl.String).alias(EXPERT_COLUMN))
    if experts.height == 0:
        return raw_annotations
    return pl.concat([raw_annotations, experts], how="diagonal_relaxed")


def assessed_by_experts(expert_coverage: pl.DataFrame | None) -> dict[str, set[str]]:
    """image_id -> the categories experts assessed on it (the union over the experts that ran)."""
    out: dict[str, set[str]] = {}
    if expert_coverage is None or expert_coverage.height == 0:
        return out
    for image_id, assessed in zip(
        expert_coverage["image_id"].to_list(), expert_coverage["assessed"].to_list(), strict=True
    ):
        out.setdefault(image_id, set()).update(assessed or [])
    return out


def with_expert_coverage(
    images: pl.DataFrame,
    expert_coverage: pl.DataFrame | None,
    source_covers: Iterable[str] | None,
    owner_of: dict[str, str] | None = None,
) -> pl.DataFrame:
    """`raw_images` with `covers` (the image's label coverage) = what its labels cover plus what experts
    assessed on it (and on its copies: `owner_of` maps a copy's image id to the image owning the document).
    The labels' part is the frame's own `covers` cell where it has one (null: every category), else
    `source_covers` (None: every category)."""
    experts: dict[str, set[str]] = {}
    for image_id, assessed in assessed_by_experts(expert_coverage).items():
        experts.setdefault((owner_of or {}).get(image_id, image_id), set()).update(assessed)
    if "covers" in images.columns:
        own = [None if c is None else set(c) for c in images["covers"].to_list()]
    else:
        own = [None if source_covers is None else set(source_covers)] * images.height
    every = [c.value for c in Category]
    merged = []
    for image_id, mine in zip(images["image_id"].to_list(), own, strict=True):
        have = set(every) if mine is None else mine | experts.get(image_id, set())
        merged.append([c for c in every if c in have])
    return images.with_columns(pl.Series("covers", merged, dtype=pl.List(pl.String)))


def expert_of_annotation(extra: str | None) -> dict[str, str] | None:
    """{'expert', 'expert_version', 'label'} for an expert's annotation row, None for a human one."""
    if not extra or '"expert"' not in extra:
        return None
    try:
        value = json.loads(extra)
    except ValueError:
        return None
    return value if isinstance(value, dict) and "expert" in value else None
