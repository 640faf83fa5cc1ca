"""raw_images + raw_annotations -> one `ImageAttributes` document per image, with full accounting.

Every raw annotation ends in exactly one outcome (see `Outcome`), so "no finding lost" is a sum.
The rules themselves live in `rules.py`; this module only chains them and shapes the tables.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from mmoral_pipeline.attributes import rules
from mmoral_pipeline.attributes.gcpause import paused_gc
from mmoral_pipeline.attributes.rules import Finding, ToothCandidate
from mmoral_pipeline.attributes.settings import AttributeSettings
from mmoral_pipeline.domain import fdi as fdi_rules
from mmoral_pipeline.domain.attributes import Condition, ImageAttributes, JawAttributes, ToothAttributes
from mmoral_pipeline.domain.coverage import ALL_CATEGORIES, sorted_categories
from mmoral_pipeline.domain.geometry import center
from mmoral_pipeline.domain.taxonomy import JAW_LEVEL, LESION_TYPES, TOOTH_LEVEL, Category

# Outcomes of a raw annotation. "dropped:<threshold name>" carries the failing threshold's name.
OUTCOME_TOOTH = "tooth"
OUTCOME_CONDITION = "condition"
OUTCOME_JAW = "jaw"
OUTCOME_MISSING = "missing_region"
OUTCOME_UNKNOWN = "unknown_tooth"
OUTCOME_MERGED = "merged_duplicate"
OUTCOME_SUPPRESSED = "suppressed:crown_filling_overlap"
OUTCOME_NO_FDI = "dropped:tooth_without_fdi"
OUTCOME_NO_IMAGE = "dropped:image_not_found"
OUTCOME_UNKNOWN_CATEGORY = "dropped:unknown_category"
OUTCOME_OUTSIDE_COVERAGE = "dropped:outside_coverage"  # a label of a category its image's coverage does not include
OUTCOME_IN_OWNER = (
    "in_owner_document"  # a copy's annotation: kept in the merged document of the copy that owns the X-ray
)
# Outcomes whose annotation id appears in a document (lineage reaches it).
KEPT_OUTCOMES = frozenset(
    {OUTCOME_TOOTH, OUTCOME_CONDITION, OUTCOME_JAW, OUTCOME_MISSING, OUTCOME_UNKNOWN, OUTCOME_MERGED}
)

OUTCOMES_SCHEMA = {
    "annotation_id": pl.String,
    "image_id": pl.String,
    "category": pl.String,
    "outcome": pl.String,
    "tooth_id": pl.Int64,  # the tooth it ended on (tooth, condition, merged duplicate)
}


@dataclass
class AttributesResult:
    """The documents plus, for every raw annotation, what became of it."""

    documents: list[ImageAttributes]
    outcomes: dict[str, str]  # annotation_id -> outcome
    outcome_rows: list[tuple[str, str, str, str, int | None]] = field(default_factory=list)

    def outcome_counts(self) -> Counter[str]:
        return Counter(self.outcomes.values())

    def outcomes_frame(self) -> pl.DataFrame:
        """One row per raw annotation: annotation_id, image_id, category, outcome, tooth_id."""
        if not self.outcome_rows:
            return pl.DataFrame(schema=OUTCOMES_SCHEMA)
        return pl.DataFrame(self.outcome_rows, schema=OUTCOMES_SCHEMA, orient="row")


def _parse_extra(extra: str | None) -> dict[str, Any]:
    if not extra:
        return {}
    try:
        value = json.loads(extra)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _int_list(value: Any) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)):
        return ()
    out = []
    for v in value:
        try:
            n = int(v)
        except (TypeError, ValueError):
            continue
        if fdi_rules.is_valid_fdi(n):
            out.append(n)
    return tuple(out)


def _condition(f: Finding, **kw: Any) -> Condition:
    return Condition(
        category=f.category,
        bbox=list(f.box),
        score=f.score,
        type=f.lesion_type if f.category == Category.PERIAPICAL_LESION else None,
        annotation_ids=[f.annotation_id, *f.merged_ids],
        **kw,
    )


_CATEGORY_ORDER = {c: i for i, c in enumerate(Category)}


def _finding_key(f: Finding) -> tuple[int, float, float, str]:
    return (_CATEGORY_ORDER[f.category], f.box[0], f.box[1], f.annotation_id)


@dataclass(slots=True)
class _Row:
    annotation_id: str
    category: str
    lesion_type: str | None
    fdi: int | None
    box: list[float]
    score: float | None
    extra: str | None
    origin: str = ""  # raw image id (differs from the document's for a merged copy's annotations)


def build_document(
    image_id: str,
    file_name: str,
    width: int,
    height: int,
    rows: Iterable[_Row],
    settings: AttributeSettings,
    outcomes: list[tuple[str, str, str, str, int | None]],
    acquisition_time: str | None = None,
    assessed: frozenset[Category] = ALL_CATEGORIES,
) -> ImageAttributes:
    """Apply every rule to one image's annotations (from one or several copies of the X-ray);
    append one outcome per annotation. `assessed` is the image's label coverage: a label outside it
    is dropped (`dropped:outside_coverage`), and the document records it as `assessed`."""
    teeth_in: list[ToothCandidate] = []
    tooth_level: list[Finding] = []
    jaw: list[Finding] = []
    missing: list[Finding] = []
    category_of: dict[str, str] = {}

    def record(aid: str, outcome: str, tooth: int | None = None) -> None:
        outcomes.append((aid, image_id, category_of.get(aid, ""), outcome, tooth))

    for r in rows:
        category_of[r.annotation_id] = r.category
        if acquisition_time is None and r.extra and '"acquisition_time"' in r.extra:
            when = _parse_extra(r.extra).get("acquisition_time")  # MMOral JSON carries it per annotation
            acquisition_time = str(when) if when else None
        cat = rules.canonical_category(r.category)
        if cat is None:
            record(r.annotation_id, OUTCOME_UNKNOWN_CATEGORY)
            continue
        category_of[r.annotation_id] = cat.value
        if cat not in assessed:
            record(r.annotation_id, OUTCOME_OUTSIDE_COVERAGE)
            continue
        score = rules.effective_score(r.score, settings)
        failed = rules.failed_threshold(cat, score, settings)
        if failed is not None:
            record(r.annotation_id, f"dropped:{failed}")
            continue
        box = (float(r.box[0]), float(r.box[1]), float(r.box[2]), float(r.box[3]))
        fdi = int(r.fdi) if r.fdi is not None and fdi_rules.is_valid_fdi(r.fdi) else None
        if cat == Category.TOOTH:
            if fdi is None:
                record(r.annotation_id, OUTCOME_NO_FDI)
                continue
            teeth_in.append(ToothCandidate(fdi=fdi, box=box, score=score, annotation_ids=[r.annotation_id]))
            continue
        extra = _parse_extra(r.extra)
        lesion = r.lesion_type if r.lesion_type in LESION_TYPES else None
        side = extra.get("side") or extra.get("site")
        named = _int_list(extra.get("teeth")) or _int_list(extra.get("span"))
        if fdi is None and len(named) == 1:  # e.g. an unknown-tooth finding read back from MMOral JSON
            fdi = named[0]
        f = Finding(
            annotation_id=r.annotation_id,
            category=cat,
            box=box,
            score=score,
            fdi=fdi,
            lesion_type=lesion,
            region=extra.get("region") if isinstance(extra.get("region"), str) else None,
            side=side if isinstance(side, str) else None,
            teeth=named,
            origin=r.origin,
        )
        if cat in TOOTH_LEVEL:
            tooth_level.append(f)
        elif cat in JAW_LEVEL:
            jaw.append(f)
        else:  # missing-tooth regions: the only image-level category
            missing.append(f)

    teeth, merged_same_id = rules.best_box_per_tooth(teeth_in)
    teeth, merged_overlap = rules.merge_duplicate_teeth(teeth, settings.duplicate_tooth_iou)
    merged = {**merged_same_id, **merged_overlap}

    kept_findings, suppressed = rules.suppress_crown_filling(tooth_level, settings.crown_filling_iou)
    for aid in suppressed:
        record(aid, OUTCOME_SUPPRESSED)
    # Several sources labelled this X-ray: one finding each time is one finding (outcomes recorded below).
    kept_findings, _ = rules.merge_copy_findings(kept_findings, settings.copy_finding_iou)
    jaw, _ = rules.merge_copy_findings(jaw, settings.copy_finding_iou)
    missing, _ = rules.merge_copy_findings(missing, settings.copy_finding_iou)

    unknown: list[Finding] = []
    for f in kept_findings:
        index, _how = rules.assign_finding(f, teeth, settings.reassign_iou)
        if index is None:
            unknown.append(f)
        else:
            teeth[index].conditions.append(f)

    tooth_docs = []
    for t in teeth:
        own = t.annotation_ids[0]
        record(own, OUTCOME_TOOTH, t.fdi)
        conditions = sorted(t.conditions, key=_finding_key)
        for c in conditions:
            record(c.annotation_id, OUTCOME_CONDITION, t.fdi)
            for aid in c.merged_ids:
                record(aid, OUTCOME_MERGED, t.fdi)
        for aid in t.annotation_ids[1:]:
            if aid in merged:
                record(aid, OUTCOME_MERGED, t.fdi)
        tooth_docs.append(
            ToothAttributes(
                tooth_id=t.fdi,
                quadrant=fdi_rules.quadrant(t.fdi),
                is_wisdom=fdi_rules.is_wisdom(t.fdi),
                side=fdi_rules.side_label(t.fdi),
                bbox=list(t.box),
                center=list(center(t.box)),
                score=t.score,
                wisdom_status=rules.wisdom_status(t.fdi, conditions, Category.IMPACTED_TOOTH in assessed),
                conditions=[_condition(c) for c in conditions],
                annotation_ids=list(t.annotation_ids),
            )
        )

    jaw_doc = JawAttributes()
    for f in sorted(jaw, key=_finding_key):
        record(f.annotation_id, OUTCOME_JAW)
        for aid in f.merged_ids:
            record(aid, OUTCOME_MERGED)
        region = rules.jaw_region(f, height)
        side = rules.patient_side(f, width)
        cond = _condition(f, region=region, side=f"{region} {side}" if f.category == Category.BONE_LOSS else side)
        getattr(jaw_doc, f.category.value).append(cond)

    missing_docs = []
    for f in sorted(missing, key=_finding_key):
        record(f.annotation_id, OUTCOME_MISSING)
        for aid in f.merged_ids:
            record(aid, OUTCOME_MERGED)
        spans = f.teeth or ((f.fdi,) if f.fdi is not None else ())
        missing_docs.append(_condition(f, side=rules.side_of(f.fdi, f.box, width, height), teeth=list(spans)))

    unknown_docs = []
    for f in sorted(unknown, key=_finding_key):
        record(f.annotation_id, OUTCOME_UNKNOWN)
        for aid in f.merged_ids:
            record(aid, OUTCOME_MERGED)
        # Only the tooth the source named (not a bridge's span): reading it back names the same tooth.
        named_tooth = [f.fdi] if f.fdi is not None else []
        unknown_docs.append(_condition(f, side=rules.side_of(f.fdi, f.box, width, height), teeth=named_tooth))

    return ImageAttributes(
        image_id=image_id,
        file_name=file_name,
        width=width,
        height=height,
        acquisition_time=acquisition_time,
        teeth=tooth_docs,
        jaw=jaw_doc,
        missing_teeth=missing_docs,
        unknown_tooth_findings=unknown_docs,
        recommendations=rules.extraction_recommendations([t.tooth_id for t in tooth_docs]),
        assessed=sorted_categories(assessed),
    )


_ANN_COLUMNS = ("annotation_id", "image_id", "category", "lesion_type", "fdi", "box", "score", "extra")


def coverage_of(value: Any) -> frozenset[Category]:
    """An image's `covers` cell as a set: null (a frame without coverage) means everything was assessed."""
    if value is None:
        return ALL_CATEGORIES
    return frozenset(Category(c) for c in value)


def build_image_attributes(
    images: pl.DataFrame,
    annotations: pl.DataFrame,
    settings: AttributeSettings | None = None,
    owner_of: dict[str, str] | None = None,
) -> AttributesResult:
    """One `ImageAttributes` per row of `images` (sorted by image_id) and an outcome per annotation.

    `images` / `annotations` are `raw_images` / `raw_annotations` frames (tables.py); extra
    columns are ignored, missing optional ones (lesion_type, fdi, score, extra, covers) read as
    null. `owner_of` maps the image id of a copy of an X-ray (same sha256, another source) to the
    image that owns the merged document: the copy's annotations join the owner's document.
    """
    with paused_gc():
        return _build(images, annotations, settings or AttributeSettings(), owner_of or {})


def _build(
    images: pl.DataFrame, annotations: pl.DataFrame, settings: AttributeSettings, owner_of: dict[str, str]
) -> AttributesResult:
    for col in ("lesion_type", "extra"):
        if col not in annotations.columns:
            annotations = annotations.with_columns(pl.lit(None, dtype=pl.String).alias(col))
    if "fdi" not in annotations.columns:
        annotations = annotations.with_columns(pl.lit(None, dtype=pl.Int64).alias("fdi"))
    if "score" not in annotations.columns:
        annotations = annotations.with_columns(pl.lit(None, dtype=pl.Float64).alias("score"))

    by_image: dict[str, list[_Row]] = {}
    if annotations.height:
        cols = [annotations[c].to_list() for c in _ANN_COLUMNS]
        for aid, iid, cat, lesion, fdi, box, score, extra in zip(*cols, strict=True):
            by_image.setdefault(owner_of.get(iid, iid), []).append(_Row(aid, cat, lesion, fdi, box, score, extra, iid))

    images = images.unique("image_id", keep="first").sort("image_id")
    acq = images["acquisition_time"].to_list() if "acquisition_time" in images.columns else [None] * images.height
    covers = images["covers"].to_list() if "covers" in images.columns else [None] * images.height
    outcome_rows: list[tuple[str, str, str, str, int | None]] = []
    documents = []
    for (image_id, file_name, width, height), when, cov in zip(
        images.select("image_id", "file_name", "width", "height").iter_rows(), acq, covers, strict=True
    ):
        rows = by_image.pop(image_id, [])
        rows.sort(key=lambda r: r.annotation_id)
        documents.append(
            build_document(
                image_id, file_name or "", int(width), int(height), rows, settings, outcome_rows, when, coverage_of(cov)
            )
        )
    for image_id, rows in sorted(by_image.items()):  # annotations of images we were not given
        for r in rows:
            outcome_rows.append((r.annotation_id, image_id, r.category, OUTCOME_NO_IMAGE, None))
    return AttributesResult(
        documents=documents,
        outcomes={r[0]: r[3] for r in outcome_rows},
        outcome_rows=outcome_rows,
    )
