"""Group `ingest`: raw files -> `raw_images`, `raw_annotations`, `rejected_inputs` (+ checks)."""

import base64
from collections import Counter
from pathlib import Path

import dagster as dg
import polars as pl
from PIL import Image

from mmoral_pipeline import quality, tables
from mmoral_pipeline.batches import batch_for_partition
from mmoral_pipeline.defs.automation import batch_fingerprints
from mmoral_pipeline.defs.freshness import INPUTS_KEY
from mmoral_pipeline.defs.metadata import counts_markdown, table_metadata
from mmoral_pipeline.defs.partitions import batch_partitions
from mmoral_pipeline.defs.resources import SourcesResource
from mmoral_pipeline.domain.coverage import coverage_sentence
from mmoral_pipeline.progress import Progress, reporting
from mmoral_pipeline.sources import list_source_items, read_source
from mmoral_pipeline.sources.base import MODEL_IMAGE_MODES, NORMALISE_VERSION
from mmoral_pipeline.sources.common import DOCUMENT_ITEM_SUFFIX
from mmoral_pipeline.sources.coverage import source_coverage
from mmoral_pipeline.viz import DrawnBox, draw_boxes, thumbnail_grid, to_jpeg

INGEST_CODE_VERSION = (
    f"ingest-v2+{NORMALISE_VERSION}"  # v2: perceptual hash, id collisions and duplicate stems quarantined
)


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
            partitions_def=batch_partitions,  # recorded per batch, so the fan-in gate can read it
        )
    ],
    partitions_def=batch_partitions,
    group_name="ingest",
)
def ingest_batch(context: dg.AssetExecutionContext, sources: SourcesResource):
    """Read one source batch through its format's reader; nothing is dropped without a rejection row."""
    sources_file = sources.load()
    batch = batch_for_partition(sources_file, context.partition_key)
    files = batch_fingerprints(sources_file).get(context.partition_key, "")  # what `mmoral materialize` compares
    items = batch.items if batch.items is not None else list_source_items(batch.source, sources_file)
    n_images = sum(1 for i in items if not i.endswith(DOCUMENT_ITEM_SUFFIX))
    with reporting(Progress(f"ingest {context.partition_key}", n_images, context.log.info, unit="images")):
        result = read_source(batch.source, sources_file, batch.items)
    ok, counts = result.counts_balance()
    key = context.partition_key
    images = tables.records_to_frame(result.images, tables.RAW_IMAGES, partition=key)
    annotations = tables.records_to_frame(result.annotations, tables.RAW_ANNOTATIONS, partition=key)
    rejected = tables.records_to_frame(result.rejections, tables.REJECTED_INPUTS, partition=key)

    per_category = Counter(annotations["category"].to_list())
    per_reason = Counter(rejected["reason"].to_list())
    coverage, basis = source_coverage(batch.source, sources_file, result)
    yield dg.Output(
        images,
        output_name="raw_images",
        metadata={
            **table_metadata(images),
            "source": batch.source.name,
            "format": batch.source.format,
            "label_coverage": dg.MetadataValue.json(sorted(c.value for c in coverage)),
            "label_coverage_basis": basis,
            "label_coverage_sentence": coverage_sentence(coverage) or "every category assessed",
            INPUTS_KEY: files,
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
            INPUTS_KEY: files,
        },
    )
    yield dg.Output(
        rejected,
        output_name="rejected_inputs",
        metadata={
            **table_metadata(rejected, max_cell=120),
            "per_reason": dg.MetadataValue.md(counts_markdown(per_reason, key="reason")),
            **{k: dg.MetadataValue.int(v) for k, v in counts.items()},
            INPUTS_KEY: files,
        },
    )
    yield dg.AssetCheckResult(
        check_name="inputs_balance",
        asset_key="rejected_inputs",
        passed=ok,
        metadata={k: dg.MetadataValue.int(v) for k, v in counts.items()},
        description=None
        if ok
        else (
            f"inputs seen != accepted + rejected ({counts}): the {batch.source.format} reader let an input vanish "
            "without a rejection row - a reader bug; please report it with this batch."
        ),
    )


@dg.asset_check(asset="raw_images", blocking=True, partitions_def=batch_partitions)
def images_decode(context: dg.AssetCheckExecutionContext, raw_images: pl.DataFrame) -> dg.AssetCheckResult:
    """Every accepted image's source file is still there, and the image the model sees opens and fully decodes
    as 8-bit grey or RGB at the recorded size."""
    failures = []
    tracker = Progress(
        f"images_decode {context.partition_key}", raw_images.height, context.log.info, unit="images"
    ).start()
    for row in raw_images.select("image_id", "path", "model_image_path", "width", "height").iter_rows(named=True):
        before = len(failures)
        try:
            if not Path(row["path"]).exists():
                raise FileNotFoundError(f"source file gone: {row['path']}")
            with Image.open(row["model_image_path"] or row["path"]) as im:
                im.load()
                if im.mode not in MODEL_IMAGE_MODES or im.size != (row["width"], row["height"]):
                    raise ValueError(
                        f"model image is {im.mode} {im.size[0]}x{im.size[1]}, expected L/RGB "
                        f"{row['width']}x{row['height']}"
                    )
        except Exception as exc:
            failures.append({"image_id": row["image_id"], "error": str(exc)[:200]})
        tracker.advance(failed=len(failures) - before)
    tracker.finish()
    return dg.AssetCheckResult(
        passed=not failures,
        description=None
        if not failures
        else (
            f"{len(failures)} of {raw_images.height} accepted images no longer decode (e.g. {failures[0]['image_id']}: "
            f"{failures[0]['error'][:80]}): the files changed on disk after ingest; restore them or re-run ingest for "
            "this batch."
        ),
        metadata={
            "checked": raw_images.height,
            "failures": len(failures),
            "examples": dg.MetadataValue.json(failures[:5]),
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
        description=None
        if bad.height == 0
        else (
            f"{bad.height} of {raw_annotations.height} accepted boxes lie outside their image or have no image "
            f"(e.g. {bad['annotation_id'][0]} box {bad['box'][0].to_list()} in {bad['width'][0]}x{bad['height'][0]}): "
            "raw_images and raw_annotations are out of step; re-run ingest for this batch."
        ),
        metadata={
            "checked": raw_annotations.height,
            "outside": bad.height,
            "examples": dg.MetadataValue.json(bad.head(5).to_dicts()),
        },
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
    top = ", ".join(f"{m} ({n})" for m, n in messages.most_common(3))
    return dg.AssetCheckResult(
        passed=passed,
        description=None
        if passed
        else (
            f"{bad_rows.height} accepted rows outside the taxonomy; {unknown.height} annotations of unknown classes "
            f"quarantined ({top}). Map the classes you want with `options.class_map` on this source in the sources "
            "file; "
            "the quarantined ones are listed in rejected_inputs."
        ),
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
    """Tooth boxes lie on the image half their quadrant says (patient's right = image left). On failure
    the description gives the share on the wrong half per quadrant and the `quadrant_map` that fixes it."""
    sf = sources.load()
    per_quadrant = quality.side_consistency(raw_annotations, raw_images, sf.midline_tolerance)
    per_source = quality.side_summary(per_quadrant)
    worst = float(per_source["wrong_share"].max()) if per_source.height else 0.0
    description = quality.side_failure_description(per_quadrant, sf.side_consistency_max_wrong)
    fixes = {
        s: quality.suggested_quadrant_map(per_quadrant.filter(pl.col("source") == s))
        for s in per_source["source"].to_list()
    }
    return dg.AssetCheckResult(
        passed=worst <= sf.side_consistency_max_wrong,
        description=description,
        metadata={
            "max_wrong_share": dg.MetadataValue.float(worst),
            "threshold": dg.MetadataValue.float(sf.side_consistency_max_wrong),
            "per_source": dg.MetadataValue.md(
                "| source | teeth | wrong side | share |\n|---|---|---|---|\n"
                + "\n".join(
                    f"| {r['source']} | {r['teeth']} | {r['wrong_side']} | {r['wrong_share']:.3f} |"
                    for r in per_source.iter_rows(named=True)
                )
            ),
            "per_quadrant": dg.MetadataValue.md(
                "| source | quadrant | teeth | wrong side | share |\n|---|---|---|---|---|\n"
                + "\n".join(
                    f"| {r['source']} | {r['quadrant']} | {r['teeth']} | {r['wrong_side']} | {r['wrong_share']:.3f} |"
                    for r in per_quadrant.iter_rows(named=True)
                )
            ),
            "per_quadrant_json": dg.MetadataValue.json(per_quadrant.to_dicts()),
            "suggested_quadrant_map": dg.MetadataValue.json(
                {s: {str(k): v for k, v in m.items()} for s, m in fixes.items() if m}
            ),
        },
    )


ingest_assets = [ingest_batch]
ingest_checks = [images_decode, boxes_inside_images, no_unmapped_categories, fdi_side_consistency]
