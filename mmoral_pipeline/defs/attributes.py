"""Group `attributes`: raw annotations -> per-tooth attributes, per-image documents, location captions.

The rules live in `mmoral_pipeline/attributes/` (pure Python); this module only wires them in.
"""


from collections import Counter

import dagster as dg
import polars as pl

from mmoral_pipeline.attributes import checks as attr_checks
from mmoral_pipeline.attributes.build import KEPT_OUTCOMES
from mmoral_pipeline.attributes.caption import CAPTION_VERSION, captions_frame
from mmoral_pipeline.attributes.settings import AttributeSettings
from mmoral_pipeline.attributes.stage import build_attribute_tables
from mmoral_pipeline.attributes.versions import RULES_VERSION
from mmoral_pipeline.defs.metadata import bar_chart_png, counts_markdown, png_markdown, table_metadata
from mmoral_pipeline.defs.partitions import batch_partitions


class AttributesConfig(dg.Config, AttributeSettings):
    """Thresholds and overlap limits of the attribute rules (MMOral defaults; change them in the launchpad)."""


def _distribution_markdown(distribution: dict[str, dict[str, int]]) -> str:
    outcomes = sorted({o for per in distribution.values() for o in per})
    lines = ["| category | " + " | ".join(outcomes) + " |", "|---|" + "---|" * len(outcomes)]
    for cat, per in distribution.items():
        lines.append(f"| {cat} | " + " | ".join(str(per.get(o, 0)) for o in outcomes) + " |")
    return "\n".join(lines)


@dg.multi_asset(
    outs={
        "image_attributes": dg.AssetOut(
            description="One row per image: the whole MMOral attribute document (JSON) and its content hash.",
            kinds={"parquet", "polars"},
            code_version=RULES_VERSION,
        ),
        "tooth_attributes": dg.AssetOut(
            description="One row per tooth per image: FDI id, quadrant, side, box, centre, score, conditions (list of structs).",
            kinds={"parquet", "polars"},
            code_version=RULES_VERSION,
        ),
        "annotation_outcomes": dg.AssetOut(
            description="One row per raw annotation: what the rules made of it (tooth, condition, jaw, dropped:<threshold>, ...).",
            kinds={"parquet", "polars"},
            code_version=RULES_VERSION,
        ),
    },
    ins={"raw_images": dg.AssetIn("raw_images"), "raw_annotations": dg.AssetIn("raw_annotations")},
    partitions_def=batch_partitions,
    group_name="attributes",
)
def attributes_batch(
    context: dg.AssetExecutionContext, config: AttributesConfig, raw_images: pl.DataFrame, raw_annotations: pl.DataFrame
):
    """Apply the MMOral post-processing rules to one batch (best box per tooth, duplicate merge,
    thresholds, crown/filling suppression, finding -> tooth assignment, unknown-tooth bucket)."""
    settings = AttributeSettings.model_validate(config.model_dump())
    built = build_attribute_tables(raw_images, raw_annotations, settings)
    images_frame, teeth_frame = built.image_attributes, built.tooth_attributes
    outcomes = built.annotation_outcomes.with_columns(pl.lit(context.partition_key).alias("partition"))

    per_outcome = built.outcome_counts()
    distribution = attr_checks.outcome_distribution(outcomes)
    kept_per_class = Counter(
        c for c, o in zip(outcomes["category"].to_list(), outcomes["outcome"].to_list(), strict=True) if o in KEPT_OUTCOMES
    )
    common = {
        "rules_version": RULES_VERSION,
        "settings": dg.MetadataValue.json(settings.model_dump(mode="json")),
        "settings_hash": settings.settings_hash(),
    }
    yield dg.Output(
        images_frame,
        output_name="image_attributes",
        metadata={
            **table_metadata(images_frame, max_cell=60),
            **common,
            "teeth": dg.MetadataValue.int(int(images_frame["n_teeth"].sum() or 0)),
            "conditions": dg.MetadataValue.int(int(images_frame["n_conditions"].sum() or 0)),
            "unknown_tooth_findings": dg.MetadataValue.int(int(images_frame["n_unknown_tooth_findings"].sum() or 0)),
        },
    )
    per_tooth = Counter(str(t) for t in teeth_frame["tooth_id"].to_list())
    yield dg.Output(
        teeth_frame,
        output_name="tooth_attributes",
        metadata={
            **table_metadata(teeth_frame.drop("conditions"), max_cell=60),
            **common,
            "teeth_per_fdi": dg.MetadataValue.json(dict(sorted(per_tooth.items()))),
        },
    )
    yield dg.Output(
        outcomes,
        output_name="annotation_outcomes",
        metadata={
            **table_metadata(outcomes),
            **common,
            "per_outcome": dg.MetadataValue.md(counts_markdown(per_outcome, key="outcome")),
            "per_outcome_json": dg.MetadataValue.json(dict(per_outcome)),
            "per_class_distribution": dg.MetadataValue.md(_distribution_markdown(distribution)),
            "per_class_distribution_json": dg.MetadataValue.json(distribution),
            "kept_per_class_chart": png_markdown(
                bar_chart_png(kept_per_class or {"none": 0}, "annotations kept per class", xlabel="category"), "kept per class"
            ),
        },
    )


@dg.asset(
    ins={"image_attributes": dg.AssetIn("image_attributes")},
    partitions_def=batch_partitions,
    group_name="attributes",
    kinds={"parquet", "polars"},
    code_version=CAPTION_VERSION,
)
def location_captions(context: dg.AssetExecutionContext, image_attributes: pl.DataFrame) -> dg.Output:
    """One location caption per image (prompts/location_caption.j2): the text the report LLM reads."""
    frame = captions_frame(image_attributes)
    example = frame["caption"][0] if frame.height else ""
    return dg.Output(
        frame,
        metadata={
            **table_metadata(frame.drop("caption"), max_cell=60),
            "caption_version": CAPTION_VERSION,
            "mean_chars": dg.MetadataValue.float(float(frame["n_chars"].mean() or 0.0)),
            "example": dg.MetadataValue.md("```\n" + example[:6000] + "\n```"),
        },
    )


@dg.asset_check(
    asset="annotation_outcomes",
    blocking=True,
    partitions_def=batch_partitions,
    additional_ins={"raw_annotations": dg.AssetIn("raw_annotations"), "image_attributes": dg.AssetIn("image_attributes")},
)
def no_finding_lost(
    context: dg.AssetCheckExecutionContext,
    annotation_outcomes: pl.DataFrame,
    raw_annotations: pl.DataFrame,
    image_attributes: pl.DataFrame,
) -> dg.AssetCheckResult:
    """Every raw annotation has exactly one outcome (on a tooth, in the unknown bucket, or dropped by a
    named rule); the counts add up to the raw annotations; kept ones are traceable in a document."""
    acc = attr_checks.finding_accounting(raw_annotations, annotation_outcomes, image_attributes)
    return dg.AssetCheckResult(
        passed=bool(acc["passed"]),
        metadata={
            "raw_annotations": dg.MetadataValue.int(acc["raw"]),
            "accounted": dg.MetadataValue.int(acc["accounted"]),
            "per_outcome": dg.MetadataValue.json(acc["per_outcome"]),
            "missing": dg.MetadataValue.json(acc["missing"][:10]),
            "extra": dg.MetadataValue.json(acc["extra"][:10]),
            "twice": dg.MetadataValue.json(acc["twice"][:10]),
            "unknown_outcomes": dg.MetadataValue.json(acc["unknown_outcomes"]),
            "kept_not_in_documents": dg.MetadataValue.json(acc["kept_not_in_documents"][:10]),
        },
    )


@dg.asset_check(asset="tooth_attributes", blocking=True, partitions_def=batch_partitions)
def fdi_ids_valid(context: dg.AssetCheckExecutionContext, tooth_attributes: pl.DataFrame) -> dg.AssetCheckResult:
    """Every tooth id is an FDI tooth, and its quadrant, wisdom flag and side agree with it."""
    bad = attr_checks.invalid_teeth(tooth_attributes)
    return dg.AssetCheckResult(
        passed=bad.height == 0,
        metadata={"checked": tooth_attributes.height, "invalid": bad.height, "examples": dg.MetadataValue.json(bad.head(5).to_dicts())},
    )


@dg.asset_check(asset="tooth_attributes", blocking=True, partitions_def=batch_partitions)
def no_tooth_twice(context: dg.AssetCheckExecutionContext, tooth_attributes: pl.DataFrame) -> dg.AssetCheckResult:
    """No FDI tooth appears twice in one image."""
    twice = attr_checks.repeated_teeth(tooth_attributes)
    return dg.AssetCheckResult(
        passed=twice.height == 0,
        metadata={"checked": tooth_attributes.height, "repeated": twice.height, "examples": dg.MetadataValue.json(twice.head(5).to_dicts())},
    )


@dg.asset_check(
    asset="location_captions",
    partitions_def=batch_partitions,
    additional_ins={"image_attributes": dg.AssetIn("image_attributes")},
)
def captions_match_attributes(
    context: dg.AssetCheckExecutionContext, location_captions: pl.DataFrame, image_attributes: pl.DataFrame
) -> dg.AssetCheckResult:
    """One non-empty caption per image, rendered from the current document (same attribute_row_hash)."""
    want = dict(zip(image_attributes["image_id"].to_list(), image_attributes["attribute_row_hash"].to_list(), strict=True))
    have = dict(zip(location_captions["image_id"].to_list(), location_captions["attribute_row_hash"].to_list(), strict=True))
    missing = sorted(set(want) - set(have))
    stale = sorted(i for i in want.keys() & have.keys() if want[i] != have[i])
    empty = location_captions.filter(pl.col("caption").str.len_chars() == 0).height
    duplicated = location_captions.height - len(have)
    return dg.AssetCheckResult(
        passed=not (missing or stale or empty or duplicated),
        metadata={
            "images": len(want),
            "captions": location_captions.height,
            "missing": dg.MetadataValue.json(missing[:10]),
            "stale": dg.MetadataValue.json(stale[:10]),
            "empty": empty,
            "duplicated": duplicated,
        },
    )


attributes_assets = [attributes_batch, location_captions]
attributes_checks = [no_finding_lost, fdi_ids_valid, no_tooth_twice, captions_match_attributes]

__all__ = ["AttributesConfig", "attributes_assets", "attributes_checks"]
