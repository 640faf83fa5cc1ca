"""What an image's attributes assert, in the form the generators and validators both use.

One home for "which teeth and findings exist, with which score", so the offline writer and the
report validator can never disagree about the facts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mmoral_pipeline.domain import fdi
from mmoral_pipeline.domain.attributes import ImageAttributes
from mmoral_pipeline.domain.taxonomy import ANATOMY, DISPLAY_NAMES, PATHOLOGY, TREATMENTS, Category
from mmoral_pipeline.generation.prompts import HEDGE_THRESHOLD


@dataclass(frozen=True)
class Finding:
    """One finding: tooth-level (tooth_id set) or jaw/unknown-tooth level (region set)."""

    category: Category
    score: float
    tooth_id: int | None = None
    lesion_type: str | None = None
    region: str | None = None  # "upper"/"lower" for jaw findings; side for unknown-tooth findings
    bbox: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)

    @property
    def hedged(self) -> bool:
        return self.score < HEDGE_THRESHOLD

    @property
    def name(self) -> str:
        base = DISPLAY_NAMES[self.category]
        return f"{base} ({self.lesion_type})" if self.lesion_type else base


@dataclass
class Facts:
    image_id: str
    width: int
    height: int
    teeth: dict[int, tuple[float, float, float, float]] = field(default_factory=dict)  # present teeth -> box
    centers: dict[int, tuple[float, float]] = field(default_factory=dict)
    wisdom_status: dict[int, str | None] = field(default_factory=dict)
    missing: list[int] = field(default_factory=list)  # teeth named in missing-tooth regions
    missing_regions: list[tuple[float, float, float, float]] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)  # pathology + treatments + anatomy
    recommendations: list[tuple[str, int, str]] = field(default_factory=list)
    # Label coverage: the categories that were looked for. Nothing may be said, present or absent,
    # about a category outside it (a missing label is not a missing finding).
    assessed: frozenset[Category] = frozenset(Category)

    def is_assessed(self, category: Category) -> bool:
        return category in self.assessed

    def tooth_findings(self) -> list[Finding]:
        return [f for f in self.findings if f.tooth_id is not None]

    def of(self, *categories: Category) -> list[Finding]:
        return [f for f in self.findings if f.category in categories]

    def pathology(self) -> list[Finding]:
        return [f for f in self.findings if f.category in PATHOLOGY and f.category != Category.MISSING_TOOTH]

    def treatments(self) -> list[Finding]:
        return [f for f in self.findings if f.category in TREATMENTS]

    def anatomy(self) -> list[Finding]:
        return [f for f in self.findings if f.category in ANATOMY]

    def categories_by_tooth(self) -> dict[int, dict[Category, float]]:
        """tooth -> {category: best score}; missing teeth carry MISSING_TOOTH."""
        out: dict[int, dict[Category, float]] = {}
        for f in self.tooth_findings():
            cur = out.setdefault(f.tooth_id, {})  # type: ignore[arg-type]
            cur[f.category] = max(cur.get(f.category, 0.0), f.score)
        for t in self.missing:
            out.setdefault(t, {})[Category.MISSING_TOOTH] = 1.0
        return out

    def categories_present(self) -> set[Category]:
        cats = {f.category for f in self.findings}
        if self.missing:
            cats.add(Category.MISSING_TOOTH)
        return cats

    def known_teeth(self) -> set[int]:
        """Teeth a text may name: present, missing, or named by a recommendation (and its opposing tooth)."""
        known = set(self.teeth) | set(self.missing)
        for _, tooth, _ in self.recommendations:
            known.add(tooth)
            if fdi.is_valid_fdi(tooth):
                known.add(fdi.opposing(tooth))
        return known

    def wisdom_present(self) -> list[int]:
        return sorted(t for t in self.teeth if fdi.is_valid_fdi(t) and fdi.is_wisdom(t))


def _box(b: list[float]) -> tuple[float, float, float, float]:
    return (float(b[0]), float(b[1]), float(b[2]), float(b[3]))


def facts_of(attrs: ImageAttributes) -> Facts:
    f = Facts(image_id=attrs.image_id, width=attrs.width, height=attrs.height, assessed=frozenset(attrs.assessed))
    for t in attrs.teeth:
        f.teeth[t.tooth_id] = _box(t.bbox)
        f.centers[t.tooth_id] = (float(t.center[0]), float(t.center[1]))
        f.wisdom_status[t.tooth_id] = t.wisdom_status
        has_impacted = any(c.category == Category.IMPACTED_TOOTH for c in t.conditions)
        if t.wisdom_status == "impacted" and not has_impacted:
            f.findings.append(Finding(Category.IMPACTED_TOOTH, t.score, t.tooth_id, bbox=_box(t.bbox)))
        for c in t.conditions:
            f.findings.append(Finding(c.category, c.score, t.tooth_id, c.type, bbox=_box(c.bbox)))
    for kind in ("bone_loss", "mandibular_canal", "maxillary_sinus"):
        for c in getattr(attrs.jaw, kind):
            f.findings.append(Finding(c.category, c.score, None, c.type, c.region or c.side, _box(c.bbox)))
    for m in attrs.missing_teeth:
        f.missing.extend(t for t in m.teeth if t not in f.missing)
        f.missing_regions.append(_box(m.bbox))
    f.missing.sort()
    for c in attrs.unknown_tooth_findings:
        f.findings.append(Finding(c.category, c.score, None, c.type, c.side or c.region, _box(c.bbox)))
    f.recommendations = [(r.kind, r.tooth_id, r.reason) for r in attrs.recommendations]
    return f
