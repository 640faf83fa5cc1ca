"""Group `ingest`: raw files -> `raw_images`, `raw_annotations`, `rejected_inputs` (+ checks)."""


import base64
import json
from collections import Counter
from pathlib import Path

import dagster as dg
import polars as pl
from PIL import Image

from mmoral_pipeline import quality, tables
from mmoral_pipeline.batches import batch_for_partition
from mmoral_pipeline.config import mmoral_home
from mmoral_pipeline.defs.io_manager import read_table
from mmoral_pipeline.defs.metadata import counts_markdown, table_metadata
from mmoral_pipeline.defs.partitions import batch_partitions
from mmoral_pipeline.defs.resources import SourcesResource
from mmoral_pipeline.sources import read_source
from mmoral_pipeline.sources.base import MODEL_IMAGE_MODES, NORMALISE_VERSION
from mmoral_pipeline.viz import DrawnBox, draw_boxes, thumbnail_grid, to_jpeg

INGEST_CODE_VERSION = f"ingest-v1+{NORMALISE_VERSION}"


def _thumbnail_markdown(images: pl.DataFrame, annotations: pl.DataFrame, n: int = 6) -> str:
    pics = []
    for row in images.head(n).iter_rows(named=True):
        try:
            with Image.open(row["model_image_path"] or row["path"]) as im:
                im.draft("L", (im.width // 4, im.height // 4))
                img = im.convert("L")
        except OSError:
            continue
        scale = img.width / row["width"]
        anns = annotations.filter(pl.col("image_id") == row["image_id"])
        boxes = [
            DrawnBox([v * scale for v in a["box"]], a["category"])
            for a in anns.select("box", "category").iter_rows(named=True)
        ]
        pics.append(draw_boxes(img, boxes, width=2))
    if not pics:
        return "_no images_"
    grid = thumbnail_grid(pics, columns=3, thumb_width=300)
    return f"![thumbnails](data:image/jpeg;base64,{base64.b64encode(to_jpeg(grid, 70)).decode()})"


@dg.multi_asset(
    outs={
        "raw_images": dg.AssetOut(
            description="One row per accepted image: id, source, path, sha256, size, mode.",
            kinds={"parquet", "polars"},
            code_version=INGEST_CODE_VERSION,
        ),
        "raw_annotations": dg.AssetOut(
            description="One row per accepted annotation: unified category, FDI tooth, pixel box, polygon, score.",
            kinds={"parquet", "polars"},
            code_version=INGEST_CODE_VERSION,
        ),
        "rejected_inputs": dg.AssetOut(
            description="Quarantine: every input that was not accepted, with its reason code and message.",
            kinds={"parquet", "polars"},
            code_version=INGEST_CODE_VERSION,
        ),
    },
    check_specs=[
        dg.AssetCheckSpec(
            "inputs_balance",
            asset="rejected_inputs",
            description="For the batch: inputs seen = accepted + rejected, for images and annotations.",
            blocking=True,
        )
    ],
    partitions_def=batch_partitions,
    group_name="ingest",
)
def ingest_batch(context: dg.AssetExecutionContext, sources: SourcesResource):
    """Read one source batch through its format's reader; nothing is dropped without a rejection row."""
    sources_file = sources.load()
    batch = batch_for_partition(sources_file, context.partition_key)
    result = read_source(batch.source, sources_file, batch.items)
    ok, counts = result.counts_balance()
    key = context.partition_key
    images = tables.records_to_frame(result.images, tables.RAW_IMAGES, partition=key)
    annotations = tables.records_to_frame(result.annotations, tables.RAW_ANNOTATIONS, partition=key)
    rejected = tables.records_to_frame(result.rejections, tables.REJECTED_INPUTS, partition=key)

    per_category = Counter(annotations["category"].to_list())
    per_reason = Counter(rejected["reason"].to_list())
    yield dg.Output(
        images,
        output_name="raw_images",
        metadata={
            **table_metadata(images),
            "source": batch.source.name,
            "format": batch.source.format,
            "thumbnails": dg.MetadataValue.md(_thumbnail_markdown(images, annotations)),
        },
    )
    yield dg.Output(
        annotations,
        output_name="raw_annotations",
        metadata={
            **table_metadata(annotations),
            "per_category": dg.MetadataValue.md(counts_markdown(per_category)),
            "per_category_json": dg.MetadataValue.json(dict(per_category)),
        },
    )
    yield dg.Output(
        rejected,
        output_name="rejected_inputs",
        metadata={
            **table_metadata(rejected, max_cell=120),
            "per_reason": dg.MetadataValue.md(counts_markdown(per_reason, key="reason")),
            **{k: dg.MetadataValue.int(v) for k, v in counts.items()},
        },
    )
    yield dg.AssetCheckResult(
        check_name="inputs_balance",
        asset_key="rejected_inputs",
        passed=ok,
        metadata={k: dg.MetadataValue.int(v) for k, v in counts.items()},
        description=None if ok else f"counts do not add up: {counts}",
    )


def _other_partitions_images(current: str) -> pl.DataFrame:
    """raw_images of every other partition already on disk (for cross-source duplicates)."""
    try:
        allimgs = read_table("raw_images", base_dir=mmoral_home())
    except FileNotFoundError:
        return pl.DataFrame(schema=tables.RAW_IMAGES)
    return allimgs.filter(pl.col("partition") != current)


@dg.asset_check(asset="raw_images", blocking=True, partitions_def=batch_partitions)
def images_decode(context: dg.AssetCheckExecutionContext, raw_images: pl.DataFrame) -> dg.AssetCheckResult:
    """Every accepted image's source file is still there, and the image the model sees opens and fully decodes
    as 8-bit grey or RGB at the recorded size."""
    failures = []
    for row in raw_images.select("image_id", "path", "model_image_path", "width", "height").iter_rows(named=True):
        try:
            if not Path(row["path"]).exists():
                raise FileNotFoundError(f"source file gone: {row['path']}")
            with Image.open(row["model_image_path"] or row["path"]) as im:
                im.load()
                if im.mode not in MODEL_IMAGE_MODES or im.size != (row["width"], row["height"]):
                    raise ValueError(f"model image is {im.mode} {im.size[0]}x{im.size[1]}, expected L/RGB {row['width']}x{row['height']}")
        except Exception as exc:  # noqa: BLE001 - any failure to decode is the finding
            failures.append({"image_id": row["image_id"], "error": str(exc)[:200]})
    return dg.AssetCheckResult(
        passed=not failures,
        metadata={"checked": raw_images.height, "failures": len(failures), "examples": dg.MetadataValue.json(failures[:5])},
    )


@dg.asset_check(asset="raw_images", blocking=True, partitions_def=batch_partitions)
def no_duplicate_images(context: dg.AssetCheckExecutionContext, raw_images: pl.DataFrame) -> dg.AssetCheckResult:
    """No two images share a sha256, within this batch or against every other batch on disk."""
    others = _other_partitions_images(context.partition_key)
    combined = pl.concat([raw_images, others], how="diagonal_relaxed")
    dupes = quality.duplicate_images(combined)
    mine = set(raw_images["sha256"].to_list())
    dupes = dupes.filter(pl.col("sha256").is_in(list(mine)))
    return dg.AssetCheckResult(
        passed=dupes.height == 0,
        metadata={
            "duplicate_groups": dupes.height,
            "examples": dg.MetadataValue.json([{"sha256": r["sha256"], "image_ids": r["image_id"]} for r in dupes.head(5).iter_rows(named=True)]),
        },
    )


@dg.asset_check(
    asset="raw_annotations",
    blocking=True,
    partitions_def=batch_partitions,
    additional_ins={"raw_images": dg.AssetIn("raw_images")},
)
def boxes_inside_images(
    context: dg.AssetCheckExecutionContext, raw_annotations: pl.DataFrame, raw_images: pl.DataFrame
) -> dg.AssetCheckResult:
    """Every accepted box lies inside its image and has positive area."""
    bad = quality.boxes_outside(raw_annotations, raw_images)
    return dg.AssetCheckResult(
        passed=bad.height == 0,
        metadata={"checked": raw_annotations.height, "outside": bad.height, "examples": dg.MetadataValue.json(bad.head(5).to_dicts())},
    )


@dg.asset_check(
    asset="raw_annotations",
    partitions_def=batch_partitions,
    additional_ins={"rejected_inputs": dg.AssetIn("rejected_inputs")},
)
def no_unmapped_categories(
    context: dg.AssetCheckExecutionContext, raw_annotations: pl.DataFrame, rejected_inputs: pl.DataFrame
) -> dg.AssetCheckResult:
    """Zero unmapped categories: every accepted row is in the taxonomy; unknown source classes are listed.

    Unknown classes were quarantined (so nothing wrong flowed on), but a class map is missing:
    that is a WARN for the source's owner.
    """
    from mmoral_pipeline.domain.taxonomy import Category

    valid = {c.value for c in Category}
    bad_rows = raw_annotations.filter(~pl.col("category").is_in(list(valid)))
    unknown = rejected_inputs.filter(pl.col("reason") == "unknown_class")
    messages = Counter(unknown["message"].to_list())
    passed = bad_rows.height == 0 and unknown.height == 0
    return dg.AssetCheckResult(
        passed=passed,
        severity=dg.AssetCheckSeverity.ERROR if bad_rows.height else dg.AssetCheckSeverity.WARN,
        metadata={
            "accepted_rows_outside_taxonomy": bad_rows.height,
            "quarantined_unknown_classes": unknown.height,
            "unknown_class_messages": dg.MetadataValue.json(dict(messages.most_common(10))),
        },
    )


@dg.asset_check(
    asset="raw_annotations",
    blocking=True,
    partitions_def=batch_partitions,
    additional_ins={"raw_images": dg.AssetIn("raw_images")},
)
def fdi_side_consistency(
    context: dg.AssetCheckExecutionContext,
    raw_annotations: pl.DataFrame,
    raw_images: pl.DataFrame,
    sources: SourcesResource,
) -> dg.AssetCheckResult:
    """Tooth boxes lie on the image half their quadrant says (patient's right = image left)."""
    sf = sources.load()
    stats = quality.side_consistency(raw_annotations, raw_images, sf.midline_tolerance)
    worst = float(stats["wrong_share"].max()) if stats.height else 0.0
    return dg.AssetCheckResult(
        passed=worst <= sf.side_consistency_max_wrong,
        metadata={
            "max_wrong_share": dg.MetadataValue.float(worst),
            "threshold": dg.MetadataValue.float(sf.side_consistency_max_wrong),
            "per_source": dg.MetadataValue.md(
                "| source | teeth | wrong side | share |\n|---|---|---|---|\n"
                + "\n".join(f"| {r['source']} | {r['teeth']} | {r['wrong_side']} | {r['wrong_share']:.3f} |" for r in stats.iter_rows(named=True))
            ),
            "per_source_json": dg.MetadataValue.json(json.loads(stats.write_json()) if stats.height else []),
        },
    )


ingest_assets = [ingest_batch]
ingest_checks = [images_decode, no_duplicate_images, boxes_inside_images, no_unmapped_categories, fdi_side_consistency]
