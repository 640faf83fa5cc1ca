"""The whole attribute stage for a batch, in bounded memory: tables in, tables out.

`build_image_attributes` returns every document as a pydantic object (~100 KB each); a batch of
MMOral's size (20k images) would hold gigabytes. Here images are processed in chunks and only
the compact Parquet-ready frames are kept, so memory grows with the output tables, not with the
object graphs. The Dagster assets and `perf/attributes.py` both call this.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

import polars as pl

from mmoral_pipeline import tables
from mmoral_pipeline.attributes.build import OUTCOME_IN_OWNER, OUTCOMES_SCHEMA, build_image_attributes
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
    owner_of: Mapping[str, str] | None = None,
    copies_elsewhere: Mapping[str, str] | None = None,
) -> AttributeTables:
    """`image_attributes`, `tooth_attributes`, `annotation_outcomes` for raw_images / raw_annotations.

    Same rows as `build_image_attributes` + `attribute_frames` on the whole input (images sorted
    by id; outcomes of annotations whose image is not given come last). One document per X-ray:
    `owner_of` (copy image id -> owner image id) brings the annotations of other copies (given in
    `annotations`) into their owner's document; `copies_elsewhere` (image id -> owner image id)
    names images of this batch whose document another copy owns: they get no document, and their
    annotations the outcome `in_owner_document`.
    """
    settings = settings or AttributeSettings()
    settings_hash = settings.settings_hash()
    owner_of = dict(owner_of or {})
    elsewhere = dict(copies_elsewhere or {})
    not_documents = list(elsewhere) + list(owner_of)  # copies: their annotations join another image's document
    images = images.filter(~pl.col("image_id").is_in(not_documents)).unique("image_id", keep="first").sort("image_id")
    image_ids = images["image_id"]
    doc_id = pl.col("image_id").replace(owner_of) if owner_of else pl.col("image_id")
    annotations = annotations.with_columns(doc_id.alias("_document")).sort("_document")
    image_parts, tooth_parts, outcome_parts = [], [], []
    for start in range(0, images.height, chunk_images):
        chunk = images.slice(start, chunk_images)
        ids = chunk["image_id"]
        anns = annotations.filter(pl.col("_document").is_in(ids.implode()))
        result = build_image_attributes(chunk, anns, settings, owner_of)
        image_frame, tooth_frame = attribute_frames(
            result.documents, chunk, rules_version=RULES_VERSION, settings_hash=settings_hash
        )
        image_parts.append(image_frame)
        tooth_parts.append(tooth_frame)
        outcome_parts.append(result.outcomes_frame())
        del result
    moved = annotations.filter(pl.col("image_id").is_in(list(elsewhere)))
    if moved.height:
        outcome_parts.append(
            moved.select(
                "annotation_id", pl.col("image_id").replace(elsewhere), "category",
                pl.lit(OUTCOME_IN_OWNER).alias("outcome"), pl.lit(None, dtype=pl.Int64).alias("tooth_id"),
            ).cast(OUTCOMES_SCHEMA)  # type: ignore[arg-type]
        )
    orphans = annotations.filter(
        ~pl.col("_document").is_in(image_ids.implode()) & ~pl.col("image_id").is_in(list(elsewhere))
    )
    if orphans.height:
        outcome_parts.append(
            build_image_attributes(pl.DataFrame(schema=tables.RAW_IMAGES), orphans, settings).outcomes_frame()
        )

    def concat(parts: list[pl.DataFrame], schema: dict) -> pl.DataFrame:
        return pl.concat(parts) if parts else pl.DataFrame(schema=schema)

    outcomes = concat(outcome_parts, OUTCOMES_SCHEMA)
    if "partition" in annotations.columns:  # which batch each raw annotation came from (merged copies: another one)
        outcomes = outcomes.join(
            annotations.select("annotation_id", pl.col("partition").alias("annotation_partition")).unique(
                "annotation_id"
            ),
            on="annotation_id",
            how="left",
        )
    return AttributeTables(
        image_attributes=concat(image_parts, IMAGE_ATTRIBUTES),
        tooth_attributes=concat(tooth_parts, TOOTH_ATTRIBUTES),
        annotation_outcomes=outcomes,
    )
