"""The whole attribute stage for a batch, in bounded memory: tables in, tables out.

`build_image_attributes` returns every document as a pydantic object (~100 KB each); a batch of
MMOral's size (20k images) would hold gigabytes. Here images are processed in chunks and only
the compact Parquet-ready frames are kept, so memory grows with the output tables, not with the
object graphs. The Dagster assets and `perf/attributes.py` both call this.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import polars as pl

from mmoral_pipeline import tables
from mmoral_pipeline.attributes.build import OUTCOMES_SCHEMA, build_image_attributes
from mmoral_pipeline.attributes.frames import IMAGE_ATTRIBUTES, TOOTH_ATTRIBUTES, attribute_frames
from mmoral_pipeline.attributes.settings import AttributeSettings
from mmoral_pipeline.attributes.versions import RULES_VERSION

DEFAULT_CHUNK_IMAGES = 1000


@dataclass
class AttributeTables:
    image_attributes: pl.DataFrame
    tooth_attributes: pl.DataFrame
    annotation_outcomes: pl.DataFrame

    def outcome_counts(self) -> Counter[str]:
        return Counter(self.annotation_outcomes["outcome"].to_list())


def build_attribute_tables(
    images: pl.DataFrame,
    annotations: pl.DataFrame,
    settings: AttributeSettings | None = None,
    *,
    chunk_images: int = DEFAULT_CHUNK_IMAGES,
) -> AttributeTables:
    """`image_attributes`, `tooth_attributes`, `annotation_outcomes` for raw_images / raw_annotations.

    Same rows as `build_image_attributes` + `attribute_frames` on the whole input (images sorted
    by id; outcomes of annotations whose image is not given come last).
    """
    settings = settings or AttributeSettings()
    settings_hash = settings.settings_hash()
    images = images.unique("image_id", keep="first").sort("image_id")
    image_ids = images["image_id"]
    annotations = annotations.sort("image_id")
    image_parts, tooth_parts, outcome_parts = [], [], []
    for start in range(0, images.height, chunk_images):
        chunk = images.slice(start, chunk_images)
        ids = chunk["image_id"]
        anns = annotations.filter(pl.col("image_id").is_in(ids.implode()))
        result = build_image_attributes(chunk, anns, settings)
        image_frame, tooth_frame = attribute_frames(result.documents, chunk, rules_version=RULES_VERSION, settings_hash=settings_hash)
        image_parts.append(image_frame)
        tooth_parts.append(tooth_frame)
        outcome_parts.append(result.outcomes_frame())
        del result
    orphans = annotations.filter(~pl.col("image_id").is_in(image_ids.implode()))
    if orphans.height:
        outcome_parts.append(build_image_attributes(pl.DataFrame(schema=tables.RAW_IMAGES), orphans, settings).outcomes_frame())

    def concat(parts: list[pl.DataFrame], schema: dict) -> pl.DataFrame:
        return pl.concat(parts) if parts else pl.DataFrame(schema=schema)

    return AttributeTables(
        image_attributes=concat(image_parts, IMAGE_ATTRIBUTES),
        tooth_attributes=concat(tooth_parts, TOOTH_ATTRIBUTES),
        annotation_outcomes=concat(outcome_parts, OUTCOMES_SCHEMA),
    )
