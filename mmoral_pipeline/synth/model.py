"""What a synthetic case is: teeth and findings with exact geometry, before any pixel exists.

Plain dataclasses (not pydantic) because scale runs build ~600k of them; `SynthSummary` is the
pydantic boundary object that `generate` returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel

from mmoral_pipeline.domain.taxonomy import DISPLAY_NAMES, Category

Point = tuple[float, float]
Polygon = list[Point]
BoxXYXY = tuple[float, float, float, float]

# COCO category ids 1..15 in taxonomy order; names are the display names the readers unify.
CATEGORY_ORDER: tuple[Category, ...] = tuple(Category)
CATEGORY_NAMES: dict[Category, str] = {c: DISPLAY_NAMES[c] for c in CATEGORY_ORDER}
CATEGORY_IDS: dict[Category, int] = {c: i + 1 for i, c in enumerate(CATEGORY_ORDER)}

# AKUDENTAL-style tooth label names: "36 - 1st Molar".
TOOTH_POSITION_LABELS: dict[int, str] = {
    1: "Central Incisor",
    2: "Lateral Incisor",
    3: "Canine",
    4: "1st Premolar",
    5: "2nd Premolar",
    6: "1st Molar",
    7: "2nd Molar",
    8: "Wisdom Tooth",
}


def tooth_label(fdi: int) -> str:
    return f"{fdi} - {TOOTH_POSITION_LABELS[fdi % 10]}"


@dataclass(slots=True)
class SynthTooth:
    """One visible tooth (or retained root): outline polygon in image pixels plus render parts."""

    fdi: int
    state: str  # "normal" | "impacted" | "retained_root" | "abutment"
    outline: Polygon  # whole tooth (crown + roots); the tooth's box and segmentation
    crown: Polygon  # enamel-covered part (empty for a retained root)
    pulp: Polygon  # pulp chamber and canals
    root_lines: list[Polygon]  # canal centre lines, apex last (root canal treatment follows these)
    apices: list[Point]
    box: BoxXYXY
    axis: tuple[float, float, float, float, float, float] = (
        0.0,
        0.0,
        0.0,
        1.0,
        1.0,
        1.0,
    )  # ox, oy, ax, ay, crown h, root len
    score: float = 1.0


@dataclass(slots=True)
class SynthFinding:
    """One finding: category, box, the tooth it is on (FDI) and what render needs to draw it."""

    category: Category
    box: BoxXYXY
    fdi: int | None = None
    lesion_type: str | None = None
    region: str | None = None  # bone loss: "upper" | "lower"
    side: str | None = None  # canals/sinuses: patient's "left" | "right"
    parts: list[Polygon] = field(default_factory=list)  # filled polygons
    lines: list[Polygon] = field(default_factory=list)  # polylines
    line_width: float = 0.0
    span: tuple[int, ...] = ()  # bridge: FDI of the teeth it spans
    score: float = 1.0


@dataclass(slots=True)
class JawShape:
    """Case-level anatomy the renderer draws (all image pixels)."""

    mandible: Polygon
    maxilla: Polygon
    lower_crest: Polygon  # polyline of the mandibular alveolar crest, left to right
    upper_crest: Polygon
    palate: Polygon  # polyline
    nasal: Polygon
    airway: Polygon
    brightness: float  # exposure variation
    contrast: float
    noise: float


@dataclass(slots=True)
class SynthCase:
    index: int
    name: str
    width: int
    height: int
    teeth: list[SynthTooth]
    findings: list[SynthFinding]
    jaw: JawShape
    render_seed: int

    def counts(self) -> dict[str, int]:
        out = {CATEGORY_NAMES[Category.TOOTH]: len(self.teeth)}
        for f in self.findings:
            key = CATEGORY_NAMES[f.category]
            out[key] = out.get(key, 0) + 1
        return out


class SynthSummary(BaseModel):
    """What `generate` wrote: where, how many, and counts per category (display names)."""

    out: str
    format: str
    seed: int
    n_images: int
    width: int
    height: int
    start_index: int
    images_written: bool
    scores: bool
    counts: dict[str, int]
    seconds: float
