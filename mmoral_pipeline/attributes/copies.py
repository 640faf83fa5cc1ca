"""One document per X-ray: copies of one image (same sha256) in several sources or batches.

Real sources overlap: a caries-mask set and a tooth-mask set of the same OPGs are two partial
labellings of one X-ray. They become one attribute document with the union of their label
coverage, each annotation keeping its own source and id (lineage reaches both).

Which copy owns the merged document: the one in the batch whose partition key sorts first (then the
lower image id); `mmoral materialize` builds the batches' documents in that order, after every
batch has been ingested. Only the owner's batch builds a document;
the other copies get none, so the X-ray is generated, split and benchmarked once, under the owner's
id. Their annotations' outcome is `in_owner_document` (`attributes.build`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

import polars as pl

from mmoral_pipeline.attributes.build import OUTCOME_IN_OWNER
from mmoral_pipeline.attributes.checks import cited_annotation_ids
from mmoral_pipeline.domain.coverage import ALL_CATEGORIES, sorted_categories

COPIES_VERSION = "copies-v1"  # bump when the owner rule or the table changes

IMAGE_COPIES = {
    "image_id": pl.String,
    "partition": pl.String,
    "source": pl.String,
    "sha256": pl.String,
    "owner_image_id": pl.String,  # the copy whose document holds every copy's annotations
    "owner_partition": pl.String,
    "is_owner": pl.Boolean,
    "group_image_ids": pl.List(pl.String),  # every copy of the X-ray by (partition, image id): the owner first
    "group_partitions": pl.List(pl.String),
    "group_sources": pl.List(pl.String),
    "group_covers": pl.List(pl.String),  # union of the copies' label coverage
    "patient_keys": pl.List(pl.String),  # distinct declared patient keys (more than one is a conflict)
}


def _union(coverages: list[list[str] | None]) -> list[str]:
    """Union of the copies' coverage (a copy without one, i.e. a legacy row, counts as everything)."""
    if any(c is None for c in coverages):
        return [c.value for c in sorted_categories(ALL_CATEGORIES)]
    return [c.value for c in sorted_categories(x for c in coverages for x in c)]


def image_copies(all_images: pl.DataFrame, partition: str) -> pl.DataFrame:
    """One row per image of `partition` whose sha256 is shared by another accepted image (any batch)."""
    if all_images.height == 0 or "sha256" not in all_images.columns:
        return pl.DataFrame(schema=IMAGE_COPIES)
    images = all_images
    for col, dtype in (("patient_key", pl.String), ("covers", pl.List(pl.String))):
        if col not in images.columns:
            images = images.with_columns(pl.lit(None, dtype=dtype).alias(col))
    images = images.unique("image_id", keep="first").sort("partition", "image_id")
    groups = (
        images.group_by("sha256", maintain_order=True)
        .agg(
            pl.col("image_id").alias("group_image_ids"),
            pl.col("partition").alias("group_partitions"),
            pl.col("source").alias("group_sources"),
            pl.col("covers").alias("group_covers"),
            pl.col("patient_key").drop_nulls().unique().sort().alias("patient_keys"),
        )
        .filter(pl.col("group_image_ids").list.len() > 1)
    )
    if groups.height == 0:
        return pl.DataFrame(schema=IMAGE_COPIES)
    groups = groups.with_columns(
        pl.col("group_image_ids").list.first().alias("owner_image_id"),
        pl.col("group_partitions").list.first().alias("owner_partition"),
        pl.col("group_covers").map_elements(_union, return_dtype=pl.List(pl.String)),
    )
    mine = images.filter(pl.col("partition") == partition).select("image_id", "partition", "source", "sha256")
    return (
        mine.join(groups, on="sha256", how="inner")
        .with_columns((pl.col("image_id") == pl.col("owner_image_id")).alias("is_owner"))
        .select(list(IMAGE_COPIES))
        .cast(IMAGE_COPIES)  # type: ignore[arg-type]
        .sort("image_id")
    )


@dataclass
class MergePlan:
    """What one batch's attribute stage does with copies (from its `image_copies` rows)."""

    owner_of: dict[str, str] = field(default_factory=dict)  # copy image id -> owner image id (owner in this batch)
    elsewhere: dict[str, str] = field(default_factory=dict)  # image of this batch -> owner in another batch
    covers: dict[str, list[str]] = field(default_factory=dict)  # owner -> union coverage
    sources: dict[str, list[str]] = field(default_factory=dict)  # owner -> every copy's source
    copies: dict[str, list[str]] = field(default_factory=dict)  # owner -> the other copies' image ids

    @property
    def foreign_copies(self) -> list[str]:
        """Copies whose annotations live in other batches (to be read from their raw_annotations)."""
        return sorted(self.owner_of)


def merge_plan(copies: pl.DataFrame, partition: str) -> MergePlan:
    plan = MergePlan()
    for r in copies.iter_rows(named=True):
        if r["is_owner"]:
            others = [i for i in r["group_image_ids"] if i != r["image_id"]]
            plan.owner_of.update({i: r["image_id"] for i in others})
            plan.covers[r["image_id"]] = list(r["group_covers"])
            plan.sources[r["image_id"]] = list(dict.fromkeys(r["group_sources"]))
            plan.copies[r["image_id"]] = others
        elif r["owner_partition"] != partition:
            plan.elsewhere[r["image_id"]] = r["owner_image_id"]
    return plan


def images_for_documents(images: pl.DataFrame, plan: MergePlan) -> pl.DataFrame:
    """This batch's images with the merged coverage, sources and copies of the ones that own copies."""
    if not plan.covers:
        return images
    lookup: Mapping[str, list[str]]
    frame = images
    for column, lookup, dtype in (
        ("covers", plan.covers, pl.List(pl.String)),
        ("merged_sources", plan.sources, pl.List(pl.String)),
        ("merged_copies", plan.copies, pl.List(pl.String)),
    ):
        values = [lookup.get(i) for i in frame["image_id"].to_list()]
        merged = pl.Series(column, values, dtype=dtype)
        if column in frame.columns:
            merged = pl.Series(
                column,
                [v if v is not None else old for v, old in zip(values, frame[column].to_list(), strict=True)],
                dtype=dtype,
            )
        frame = frame.with_columns(merged)
    return frame


MERGED_ANNOTATIONS = {
    "annotation_id": pl.String,
    "owner_image_id": pl.String,
    "owner_partition": pl.String,
    "in_owner_document": pl.Boolean,
}


def merged_annotations(outcomes: pl.DataFrame, documents: pl.LazyFrame | pl.DataFrame) -> pl.DataFrame:
    """One row per annotation whose outcome is `in_owner_document`: is it cited by the owner's document?
    `documents`: image_attributes of every batch (scanned lazily: only the owners' rows are read)."""
    moved = outcomes.filter(pl.col("outcome") == OUTCOME_IN_OWNER)
    if moved.height == 0:
        return pl.DataFrame(schema=MERGED_ANNOTATIONS)
    owners = moved["image_id"].unique().to_list()
    docs = (
        documents.lazy().filter(pl.col("image_id").is_in(owners)).select("image_id", "partition", "document").collect()
    )
    cited: dict[str, set[str]] = {}
    for image_id, blob in zip(docs["image_id"].to_list(), docs["document"].to_list(), strict=True):
        cited.setdefault(image_id, set()).update(cited_annotation_ids(json.loads(blob)))
    partition_of = dict(zip(docs["image_id"].to_list(), docs["partition"].to_list(), strict=True))
    return pl.DataFrame(
        [
            (a, o, partition_of.get(o), a in cited.get(o, set()))
            for a, o in zip(moved["annotation_id"], moved["image_id"], strict=True)
        ],
        schema=MERGED_ANNOTATIONS,
        orient="row",
    )


def copy_conflicts(copies: pl.DataFrame) -> dict[str, list[dict]]:
    """Problems of copy groups: two declared patient keys for one X-ray (an error), and copies within
    one source (a source listing the same file twice: merged, but worth a look)."""
    conflicts = copies.filter(pl.col("patient_keys").list.len() > 1)
    same_source = copies.filter(pl.col("group_sources").list.len() > pl.col("group_sources").list.unique().list.len())
    return {
        "patient_key_conflicts": conflicts.select("image_id", "group_image_ids", "patient_keys").to_dicts(),
        "same_source_copies": same_source.select("image_id", "source", "group_image_ids").to_dicts(),
    }
