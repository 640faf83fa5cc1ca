"""The post-processing rules of MMOral, each a pure function in exactly one place.

They work on two small dataclasses (`Finding`, `ToothCandidate`) instead of pydantic models
because a full MMOral-size run passes ~800k annotations through them. `build.py` chains them in
this order:

1. `canonical_category` + `effective_score` + `failed_threshold`  (drop low-confidence boxes)
2. `best_box_per_tooth`        (one box per FDI id, the highest score)
3. `merge_duplicate_teeth`     (different ids, IoU > 0.95: one tooth, higher score wins)
4. `suppress_crown_filling`    (crown vs filling, IoU > 0.9: higher score wins)
   `merge_copy_findings`       (one X-ray from several sources: the same finding twice is one)
5. `assign_finding`            (finding -> tooth, or the unknown-tooth bucket)
6. `wisdom_status`, `extraction_recommendations`, `side_of`  (derived attributes)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from mmoral_pipeline.attributes.settings import AttributeSettings
from mmoral_pipeline.domain import fdi as fdi_rules
from mmoral_pipeline.domain.attributes import Recommendation
from mmoral_pipeline.domain.geometry import center, iou, overlap_of
from mmoral_pipeline.domain.taxonomy import Category, unify_category

BoxT = tuple[float, float, float, float]


@dataclass(slots=True)
class Finding:
    """One raw annotation on its way through the rules."""

    annotation_id: str
    category: Category
    box: BoxT
    score: float  # effective score (unscored annotations already replaced)
    fdi: int | None = None
    lesion_type: str | None = None
    region: str | None = None  # from the source (bone loss "upper"/"lower")
    side: str | None = None  # from the source (canals / sinuses "left"/"right", or "upper left")
    teeth: tuple[int, ...] = ()
    origin: str = ""  # the raw image id it was labelled on (copies of one X-ray differ)
    merged_ids: list[str] = field(default_factory=list)  # the same finding from other copies (lineage)


@dataclass(slots=True)
class ToothCandidate:
    """A tooth box with everything merged into it (duplicate boxes' ids, assigned findings)."""

    fdi: int
    box: BoxT
    score: float
    annotation_ids: list[str]  # own id first, then merged duplicates
    conditions: list[Finding] = field(default_factory=list)


# --------------------------------------------------------------------------- categories, scores


def canonical_category(name: str) -> Category | None:
    """The unified category of a raw annotation's `category` cell.

    'root piece' is the same finding as 'retained root': the one synonym table
    (`taxonomy.SYNONYMS`) says so, and this is the only place the rules read categories.
    """
    try:
        return Category(name)
    except ValueError:
        unified = unify_category(name)
        return unified[0] if unified else None


def effective_score(score: float | None, settings: AttributeSettings) -> float:
    """Annotations without a score are human labels: they count as `unscored_score` (1.0)."""
    return settings.unscored_score if score is None else float(score)


def failed_threshold(category: Category, score: float, settings: AttributeSettings) -> str | None:
    """Name of the confidence threshold the box fails, or None when it is kept."""
    name, value = settings.threshold_for(category)
    return name if score < value else None


# --------------------------------------------------------------------------- teeth


def _rank(score: float, box: BoxT, annotation_id: str) -> tuple[float, float, str]:
    """Sort key: higher score first, then larger box, then id (deterministic ties)."""
    return (-score, -((box[2] - box[0]) * (box[3] - box[1])), annotation_id)


def best_box_per_tooth(teeth: Sequence[ToothCandidate]) -> tuple[list[ToothCandidate], dict[str, str]]:
    """Keep the highest-scoring box per FDI id.

    Returns the kept teeth (sorted by FDI id) and {merged annotation id: kept annotation id}.
    The kept tooth lists the merged ids after its own, so lineage still reaches them.
    """
    by_id: dict[int, list[ToothCandidate]] = {}
    for t in teeth:
        by_id.setdefault(t.fdi, []).append(t)
    kept: list[ToothCandidate] = []
    merged: dict[str, str] = {}
    for fdi in sorted(by_id):
        group = sorted(by_id[fdi], key=lambda t: _rank(t.score, t.box, t.annotation_ids[0]))
        best = group[0]
        for other in group[1:]:
            best.annotation_ids.extend(other.annotation_ids)
            best.conditions.extend(other.conditions)
            for aid in other.annotation_ids:
                merged[aid] = best.annotation_ids[0]
        kept.append(best)
    return kept, merged


def merge_duplicate_teeth(
    teeth: Sequence[ToothCandidate], iou_threshold: float
) -> tuple[list[ToothCandidate], dict[str, str]]:
    """Boxes of different ids overlapping above `iou_threshold` are one tooth: keep the higher score.

    Greedy in score order (like NMS), so survivors never overlap above the threshold; the
    survivor takes over the loser's conditions and annotation ids. Returns teeth sorted by FDI id
    and {merged annotation id: kept annotation id}.
    """
    order = sorted(teeth, key=lambda t: _rank(t.score, t.box, t.annotation_ids[0]))
    kept: list[ToothCandidate] = []
    merged: dict[str, str] = {}
    for t in order:
        x1, x2 = t.box[0], t.box[2]
        target = next((k for k in kept if k.box[0] < x2 and x1 < k.box[2] and iou(k.box, t.box) > iou_threshold), None)
        if target is None:
            kept.append(t)
            continue
        target.annotation_ids.extend(t.annotation_ids)
        target.conditions.extend(t.conditions)
        for aid in t.annotation_ids:
            merged[aid] = target.annotation_ids[0]
    kept.sort(key=lambda t: t.fdi)
    return kept, merged


# --------------------------------------------------------------------------- findings


CROWN_FILLING = (Category.CROWN, Category.FILLING)


def suppress_crown_filling(findings: Sequence[Finding], iou_threshold: float) -> tuple[list[Finding], dict[str, str]]:
    """Where a crown and a filling overlap above `iou_threshold`, keep only the higher score.

    A tie keeps the crown (the larger restoration). Returns the kept findings (input order) and
    {suppressed annotation id: winning annotation id}.
    """
    restorations = [f for f in findings if f.category in CROWN_FILLING]
    crowns = [f for f in restorations if f.category == Category.CROWN]
    fillings = [f for f in restorations if f.category == Category.FILLING]
    suppressed: dict[str, str] = {}
    if not crowns or not fillings:
        return list(findings), suppressed
    pairs = sorted(
        ((iou(c.box, f.box), c, f) for c in crowns for f in fillings),
        key=lambda p: (-p[0], p[1].annotation_id, p[2].annotation_id),
    )
    for value, crown, filling in pairs:
        if value <= iou_threshold:
            break
        if crown.annotation_id in suppressed or filling.annotation_id in suppressed:
            continue
        if filling.score > crown.score:
            suppressed[crown.annotation_id] = filling.annotation_id
        else:
            suppressed[filling.annotation_id] = crown.annotation_id
    return [f for f in findings if f.annotation_id not in suppressed], suppressed


def merge_copy_findings(findings: Sequence[Finding], iou_threshold: float) -> tuple[list[Finding], dict[str, str]]:
    """One X-ray labelled by several sources (merged copies): a finding of one category from two
    copies overlapping above `iou_threshold` is one finding. The higher score wins (then the lower
    annotation id) and lists the other's id in `merged_ids`. Findings of one copy are never merged
    with each other (that is the source's own business). Returns the kept findings (input order) and
    {merged annotation id: kept annotation id}."""
    if len({f.origin for f in findings}) < 2:
        return list(findings), {}
    order = sorted(findings, key=lambda f: (-f.score, f.annotation_id))
    kept: list[Finding] = []
    merged: dict[str, str] = {}
    for f in order:
        target = next(
            (
                k
                for k in kept
                if k.category == f.category and k.origin != f.origin and iou(k.box, f.box) > iou_threshold
            ),
            None,
        )
        if target is None:
            kept.append(f)
        else:
            target.merged_ids.append(f.annotation_id)
            merged[f.annotation_id] = target.annotation_id
    return [f for f in findings if f.annotation_id not in merged], merged


AssignHow = Literal["label", "overlap", "reassigned", "unknown"]


def assign_finding(
    finding: Finding, teeth: Sequence[ToothCandidate], reassign_iou: float
) -> tuple[int | None, AssignHow]:
    """Index of the tooth a tooth-level finding belongs to (or None) and how it was decided.

    - The source named the tooth (`fdi`) and that tooth is present: that tooth ("label").
    - No tooth named: the tooth the finding overlaps most by IoU ("overlap"; ties go to the
      tooth that contains more of the finding, then the lower FDI id). A finding that
      overlaps no tooth at all goes to the unknown-tooth bucket.
    - The named tooth is absent (unknown tooth): reassigned to the best-overlapping tooth only
      above `reassign_iou` ("reassigned"), else the unknown-tooth bucket ("unknown").
    """
    if finding.fdi is not None:
        for i, t in enumerate(teeth):
            if t.fdi == finding.fdi:
                return i, "label"
    best_i, best_key = None, (0.0, 0.0, 0)
    fx1, fx2 = finding.box[0], finding.box[2]
    for i, t in enumerate(teeth):
        if t.box[0] >= fx2 or fx1 >= t.box[2]:  # cheap pre-test: side-by-side boxes do not overlap
            continue
        value = iou(finding.box, t.box)
        if value <= 0.0:
            continue
        key = (value, overlap_of(finding.box, t.box), -t.fdi)
        if best_i is None or key > best_key:
            best_i, best_key = i, key
    if best_i is None:
        return None, "unknown"
    if finding.fdi is None:
        return best_i, "overlap"
    return (best_i, "reassigned") if best_key[0] > reassign_iou else (None, "unknown")


# --------------------------------------------------------------------------- sides and derived


def side_from_centre(box: BoxT, width: int, height: int) -> str:
    """'upper right' etc. from where the box centre lies; patient's right is the image's left."""
    cx, cy = center(box)
    arch = "upper" if cy < height / 2.0 else "lower"
    side = "right" if cx < width / 2.0 else "left"
    return f"{arch} {side}"


def side_of(fdi: int | None, box: BoxT, width: int, height: int) -> str:
    """Side from the FDI quadrant when known, else from the image centre."""
    if fdi is not None and fdi_rules.is_valid_fdi(fdi):
        return fdi_rules.side_label(fdi)
    return side_from_centre(box, width, height)


def jaw_region(finding: Finding, height: int) -> str:
    """'upper' / 'lower' for a jaw finding: the source's word, else from the box centre."""
    if finding.region in ("upper", "lower"):
        return finding.region
    if finding.category == Category.MAXILLARY_SINUS:
        return "upper"
    if finding.category == Category.MANDIBULAR_CANAL:
        return "lower"
    return "upper" if center(finding.box)[1] < height / 2.0 else "lower"


def patient_side(finding: Finding, width: int) -> str:
    """'right' / 'left' (patient's) for a jaw finding: the source's word, else from the box centre."""
    if finding.side:
        word = finding.side.split()[-1].lower()
        if word in ("left", "right"):
            return word
    return "right" if center(finding.box)[0] < width / 2.0 else "left"


def wisdom_status(fdi: int, conditions: Sequence[Finding], impaction_assessed: bool = True) -> str | None:
    """For a wisdom tooth: 'impacted' when an impacted-tooth finding is on it, else 'erupted' - but
    only when impaction was assessed (a source without impaction labels cannot say 'erupted')."""
    if not fdi_rules.is_wisdom(fdi):
        return None
    if any(c.category == Category.IMPACTED_TOOTH for c in conditions):
        return "impacted"
    return "erupted" if impaction_assessed else None


def extraction_recommendations(present: Sequence[int]) -> list[Recommendation]:
    """Recommend extracting an upper wisdom tooth (18/28) whose opposing lower one (48/38) is absent."""
    have = set(present)
    out = []
    for upper in (18, 28):
        lower = fdi_rules.opposing(upper)
        if upper in have and lower not in have:
            out.append(
                Recommendation(
                    kind="extraction",
                    tooth_id=upper,
                    reason=f"upper wisdom tooth {upper} has no opposing lower wisdom tooth ({lower} absent)",
                )
            )
    return out
