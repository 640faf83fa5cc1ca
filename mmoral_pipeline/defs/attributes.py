"""Group `attributes`: raw annotations -> per-tooth attributes, per-image documents, location captions.

The rules live in `mmoral_pipeline/attributes/` (pure Python); this module only wires them in.
"""


from collections import Counter

import dagster as dg
import polars as pl

from mmoral_pipeline.attributes import checks as attr_checks
from mmoral_pipeline.attributes import copies
from mmoral_pipeline.attributes.build import KEPT_OUTCOMES
from mmoral_pipeline.attributes.caption import CAPTION_VERSION, captions_frame
from mmoral_pipeline.attributes.settings import AttributeSettings
from mmoral_pipeline.attributes.stage import build_attribute_tables
from mmoral_pipeline.attributes.versions import RULES_VERSION
from mmoral_pipeline.defs.metadata import bar_chart_png, counts_markdown, png_markdown, table_metadata
from mmoral_pipeline.defs.partitions import batch_partitions
from mmoral_pipeline.experts.frames import with_expert_annotations, with_expert_coverage


class AttributesConfig(dg.Config, AttributeSettings):
    """Thresholds and overlap limits of the attribute rules (MMOral defaults; change them in the launchpad)."""


def _distribution_markdown(distribution: dict[str, dict[str, int]]) -> str:
    outcomes = sorted({o for per in distribution.values() for o in per})
    lines = ["| category | " + " | ".join(outcomes) + " |", "|---|" + "---|" * len(outcomes)]
    for cat, per in distribution.items():
        lines.append(f"| {cat} | " + " | ".join(str(per.get(o, 0)) for o in outcomes) + " |")
    return "\n".join(lines)


_EVERY_BATCH = {"partition_mapping": dg.AllPartitionMapping(), "metadata": {"allow_missing_partitions": True}}


@dg.asset(
    ins={"raw_images": dg.AssetIn("raw_images", **_EVERY_BATCH)},
    partitions_def=batch_partitions,
    group_name="attributes",
    kinds={"parquet", "polars"},
    code_version=copies.COPIES_VERSION,
)
def image_copies(context: dg.AssetExecutionContext, raw_images: pl.DataFrame) -> dg.Output:
    """Images of this batch whose bytes (sha256) another accepted image shares, in any batch: one
    X-ray labelled by several sources. The copy in the batch whose partition key sorts first (then the
    lower image id) owns the merged document (union of the copies' label coverage); the others get no
    document of their own, so the X-ray is generated, split and benchmarked once."""
    frame = copies.image_copies(raw_images, context.partition_key)
    owners = frame.filter(pl.col("is_owner"))
    return dg.Output(
        frame,
        metadata={
            **table_metadata(frame, max_cell=80),
            "images_with_copies": dg.MetadataValue.int(frame.height),
            "owned_here": dg.MetadataValue.int(owners.height),
            "merged_into_other_batches": dg.MetadataValue.int(
                frame.filter(pl.col("owner_partition") != context.partition_key).height
            ),
        },
    )


@dg.asset_check(asset="image_copies", blocking=True, partitions_def=batch_partitions)
def copies_are_one_patient(context: dg.AssetCheckExecutionContext, image_copies: pl.DataFrame) -> dg.AssetCheckResult:
    """Copies of one X-ray merge into one document; they must not declare different patients. Copies
    inside one source (the same file listed twice) are merged too, with a warning."""
    found = copies.copy_conflicts(image_copies)
    conflicts, same_source = found["patient_key_conflicts"], found["same_source_copies"]
    passed = not conflicts and not same_source
    if conflicts:
        description = (
            f"{len(conflicts)} X-ray(s) appear in several sources with different patient keys (e.g. "
            f"{conflicts[0]['group_image_ids']}: {conflicts[0]['patient_keys']}). One X-ray is one patient: fix the "
            "patient key of one of the sources."
        )
    elif same_source:
        description = (
            f"{len(same_source)} image(s) are byte-identical copies inside one source (e.g. "
            f"{same_source[0]['group_image_ids']}); "
            "they were merged into one document. Remove the duplicate file from the source."
        )
    else:
        description = None
    return dg.AssetCheckResult(
        passed=passed,
        severity=dg.AssetCheckSeverity.ERROR if conflicts else dg.AssetCheckSeverity.WARN,
        description=description,
        metadata={
            "images_with_copies": image_copies.height,
            "patient_key_conflicts": dg.MetadataValue.json(conflicts[:5]),
            "same_source_copies": dg.MetadataValue.json(same_source[:5]),
        },
    )


@dg.multi_asset(
    outs={
        "image_attributes": dg.AssetOut(
            description="One row per image: the whole MMOral attribute document (JSON) and its content hash.",
            kinds={"parquet", "polars"},
            code_version=RULES_VERSION,
        ),
        "tooth_attributes": dg.AssetOut(
            description="One row per tooth per image: FDI id, quadrant, side, box, centre, score, "
            "conditions (list of structs).",
            kinds={"parquet", "polars"},
            code_version=RULES_VERSION,
        ),
        "annotation_outcomes": dg.AssetOut(
            description="One row per raw annotation: what the rules made of it "
            "(tooth, condition, jaw, dropped:<threshold>, ...).",
            kinds={"parquet", "polars"},
            code_version=RULES_VERSION,
        ),
    },
    ins={
        "raw_images": dg.AssetIn("raw_images"),
        "raw_annotations": dg.AssetIn("raw_annotations", **_EVERY_BATCH),  # scanned: this batch + copies' annotations
        "image_copies": dg.AssetIn("image_copies"),
        "expert_annotations": dg.AssetIn("expert_annotations", **_EVERY_BATCH),  # scanned like raw_annotations
        "expert_coverage": dg.AssetIn("expert_coverage", **_EVERY_BATCH),
    },
    partitions_def=batch_partitions,
    group_name="attributes",
)
def attributes_batch(
    context: dg.AssetExecutionContext,
    config: AttributesConfig,
    raw_images: pl.DataFrame,
    raw_annotations: pl.LazyFrame,
    image_copies: pl.DataFrame,
    expert_annotations: pl.LazyFrame,
    expert_coverage: pl.LazyFrame,
):
    """Apply the MMOral post-processing rules to one batch (best box per tooth, duplicate merge,
    thresholds, crown/filling suppression, finding -> tooth assignment, unknown-tooth bucket), one
    document per X-ray: copies of an image in other sources join the owner's document (`image_copies`).

    The boxes are the source's own annotations plus the visual experts' (`expert_annotations`), which
    pass through the same thresholds; the categories the experts assessed join the image's label coverage."""
    settings = AttributeSettings.model_validate(config.model_dump())
    plan = copies.merge_plan(image_copies, context.partition_key)
    wanted = pl.col("partition") == context.partition_key
    if plan.foreign_copies:
        wanted = wanted | pl.col("image_id").is_in(plan.foreign_copies)
    annotations = with_expert_annotations(
        raw_annotations.filter(wanted).collect(), expert_annotations.filter(wanted).collect()
    )
    images = with_expert_coverage(
        copies.images_for_documents(raw_images, plan),
        expert_coverage.filter(wanted).collect(),
        None,
        owner_of=plan.owner_of,
    )
    built = build_attribute_tables(
        images, annotations, settings, owner_of=plan.owner_of, copies_elsewhere=plan.elsewhere
    )
    images_frame, teeth_frame = built.image_attributes, built.tooth_attributes
    outcomes = built.annotation_outcomes.with_columns(pl.lit(context.partition_key).alias("partition"))

    per_outcome = built.outcome_counts()
    distribution = attr_checks.outcome_distribution(outcomes)
    kept_per_class = Counter(
        c
        for c, o in zip(outcomes["category"].to_list(), outcomes["outcome"].to_list(), strict=True)
        if o in KEPT_OUTCOMES
    )
    common = {
        "rules_version": RULES_VERSION,
        "settings": dg.MetadataValue.json(settings.model_dump(mode="json")),
        "settings_hash": settings.settings_hash(),
    }
    coverage = Counter(", ".join(a) for a in images_frame["assessed"].to_list())
    yield dg.Output(
        images_frame,
        output_name="image_attributes",
        metadata={
            **table_metadata(images_frame, max_cell=60),
            **common,
            "label_coverage": dg.MetadataValue.md(counts_markdown(coverage, key="assessed")),
            "merged_documents": dg.MetadataValue.int(len(plan.covers)),
            "documents_owned_by_another_batch": dg.MetadataValue.int(len(plan.elsewhere)),
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
                bar_chart_png(kept_per_class or {"none": 0}, "annotations kept per class", xlabel="category"),
                "kept per class",
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
    additional_ins={
        "raw_annotations": dg.AssetIn("raw_annotations"),
        "expert_annotations": dg.AssetIn("expert_annotations"),
        "image_attributes": dg.AssetIn("image_attributes"),
    },
)
def no_finding_lost(
    context: dg.AssetCheckExecutionContext,
    annotation_outcomes: pl.DataFrame,
    raw_annotations: pl.DataFrame,
    expert_annotations: pl.DataFrame,
    image_attributes: pl.DataFrame,
) -> dg.AssetCheckResult:
    """Every raw annotation (human or expert) has exactly one outcome (on a tooth, in the unknown bucket, or
    dropped by a named rule); the counts add up to the annotations; kept ones are traceable in a document
    (copies owned by another batch: `copies_in_owner_document` follows them there)."""
    annotations = with_expert_annotations(raw_annotations, expert_annotations)
    acc = attr_checks.finding_accounting(
        annotations, annotation_outcomes, image_attributes, partition=context.partition_key
    )
    return dg.AssetCheckResult(
        passed=bool(acc["passed"]),
        description=attr_checks.accounting_description(acc),
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


@dg.asset(
    ins={
        "annotation_outcomes": dg.AssetIn("annotation_outcomes"),
        "image_attributes": dg.AssetIn("image_attributes", **_EVERY_BATCH),  # scanned: the owners' documents
    },
    partitions_def=batch_partitions,
    group_name="attributes",
    kinds={"parquet", "polars"},
    code_version=copies.COPIES_VERSION,
)
def merged_copies(
    context: dg.AssetExecutionContext, annotation_outcomes: pl.DataFrame, image_attributes: pl.LazyFrame
) -> dg.Output:
    """The annotations of this batch's copies of X-rays whose document another batch owns, and whether
    that document cites them. Reads every batch's documents, so it runs after all of them are built."""
    frame = copies.merged_annotations(annotation_outcomes, image_attributes)
    return dg.Output(
        frame,
        metadata={
            **table_metadata(frame, max_cell=60),
            "not_in_owner_document": dg.MetadataValue.int(frame.filter(~pl.col("in_owner_document")).height),
        },
    )


@dg.asset_check(asset="merged_copies", blocking=True, partitions_def=batch_partitions)
def copies_in_owner_document(
    context: dg.AssetCheckExecutionContext, merged_copies: pl.DataFrame
) -> dg.AssetCheckResult:
    """Every annotation of a copy owned by another batch is in that batch's merged document."""
    missing = merged_copies.filter(~pl.col("in_owner_document"))
    owners = sorted(set(missing["owner_partition"].drop_nulls().to_list()))
    return dg.AssetCheckResult(
        passed=missing.height == 0,
        description=None
        if missing.height == 0
        else (
            f"{missing.height} of {merged_copies.height} annotations of copies in this batch are not in their X-ray's "
            "merged "
            f"document (owner batch(es) {owners or 'not built yet'}): the owner's document was built before this batch "
            "was ingested. Re-materialise the owner's attributes, e.g. `mmoral materialize --select "
            "'group:attributes+'`."
        ),
        metadata={
            "annotations": merged_copies.height,
            "missing": missing.height,
            "owner_partitions": dg.MetadataValue.json(owners),
            "examples": dg.MetadataValue.json(missing.head(5).to_dicts()),
        },
    )


@dg.asset_check(asset="tooth_attributes", blocking=True, partitions_def=batch_partitions)
def fdi_ids_valid(context: dg.AssetCheckExecutionContext, tooth_attributes: pl.DataFrame) -> dg.AssetCheckResult:
    """Every tooth id is an FDI tooth, and its quadrant, wisdom flag and side agree with it."""
    bad = attr_checks.invalid_teeth(tooth_attributes)
    return dg.AssetCheckResult(
        passed=bad.height == 0,
        description=None
        if bad.height == 0
        else (
            f"{bad.height} of {tooth_attributes.height} teeth are invalid (e.g. {bad.row(0, named=True)}): a rule or "
            "reader bug; please report it with this batch."
        ),
        metadata={
            "checked": tooth_attributes.height,
            "invalid": bad.height,
            "examples": dg.MetadataValue.json(bad.head(5).to_dicts()),
        },
    )


@dg.asset_check(asset="tooth_attributes", blocking=True, partitions_def=batch_partitions)
def no_tooth_twice(context: dg.AssetCheckExecutionContext, tooth_attributes: pl.DataFrame) -> dg.AssetCheckResult:
    """No FDI tooth appears twice in one image."""
    twice = attr_checks.repeated_teeth(tooth_attributes)
    return dg.AssetCheckResult(
        passed=twice.height == 0,
        description=None
        if twice.height == 0
        else (
            f"{twice.height} (image, tooth) pairs occur more than once (e.g. {twice.row(0, named=True)}): the "
            "best-box rule "
            "did not run; re-materialise this batch's attributes."
        ),
        metadata={
            "checked": tooth_attributes.height,
            "repeated": twice.height,
            "examples": dg.MetadataValue.json(twice.head(5).to_dicts()),
        },
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
    want = dict(
        zip(image_attributes["image_id"].to_list(), image_attributes["attribute_row_hash"].to_list(), strict=True)
    )
    have = dict(
        zip(location_captions["image_id"].to_list(), location_captions["attribute_row_hash"].to_list(), strict=True)
    )
    missing = sorted(set(want) - set(have))
    stale = sorted(i for i in want.keys() & have.keys() if want[i] != have[i])
    empty = location_captions.filter(pl.col("caption").str.len_chars() == 0).height
    duplicated = location_captions.height - len(have)
    passed = not (missing or stale or empty or duplicated)
    return dg.AssetCheckResult(
        passed=passed,
        description=None if passed else (
            f"{len(missing)} images without a caption, {len(stale)} captions of an older document, {empty} empty, "
            f"{duplicated} duplicated: re-materialise location_captions for this batch."
        ),
        metadata={
            "images": len(want),
            "captions": location_captions.height,
            "missing": dg.MetadataValue.json(missing[:10]),
            "stale": dg.MetadataValue.json(stale[:10]),
            "empty": empty,
            "duplicated": duplicated,
        },
    )


attributes_assets = [image_copies, attributes_batch, merged_copies, location_captions]
attributes_checks = [
    copies_are_one_patient,
    copies_in_owner_document,
    no_finding_lost,
    fdi_ids_valid,
    no_tooth_twice,
    captions_match_attributes,
]

__all__ = ["AttributesConfig", "attributes_assets", "attributes_checks"]
