"""How an expert's pseudo-labels change what a report says: pseudo-labelled documents against the same
images' true labels, statement by statement. Pure (polars, PIL); the `mmoral expert compare` command
and the README figures use it.

A report states what its attribute document holds (`generation.facts`): the teeth present, each
finding on its tooth (or jaw side), the missing teeth; a finding scoring below 0.80 is worded as a
suspicion (hedged). Per statement of the categories the expert assessed:

- recovered: in both the pseudo-labelled and the true document (same category, same tooth or side);
- invented: only in the pseudo-labelled one (a wrong tooth number counts as one invented and one missed);
- missed: only in the true one;
- hedged: pseudo statements worded as suspicion (score < 0.80), split by recovered / invented.

True statements of categories the expert did not assess are `unsaid`: the pseudo report says nothing
about them, neither present nor absent.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mmoral_pipeline.domain.attributes import ImageAttributes
from mmoral_pipeline.domain.taxonomy import Category
from mmoral_pipeline.generation.facts import Facts, facts_of
from mmoral_pipeline.generation.prompts import HEDGE_THRESHOLD

Key = tuple[str, str]  # (category, tooth number or side)


def statements(facts: Facts) -> dict[Key, float]:
    """Every statement a report written from `facts` makes, with its score (1.0 for a tooth present)."""
    out: dict[Key, float] = {}
    for tooth in facts.teeth:
        out[(Category.TOOTH.value, str(tooth))] = 1.0
    for tooth in facts.missing:
        out[(Category.MISSING_TOOTH.value, str(tooth))] = 1.0
    for f in facts.findings:
        where = str(f.tooth_id) if f.tooth_id is not None else (f.region or "").split()[-1] if f.region else "?"
        key = (f.category.value, where)
        out[key] = max(out.get(key, 0.0), f.score)
    return out


@dataclass
class CategoryCounts:
    true: int = 0
    pseudo: int = 0
    recovered: int = 0
    invented: int = 0
    missed: int = 0
    hedged_recovered: int = 0
    hedged_invented: int = 0

    def add(self, other: CategoryCounts) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass
class Comparison:
    images: int = 0
    assessed: list[str] = field(default_factory=list)
    per_category: dict[str, CategoryCounts] = field(default_factory=dict)
    unsaid: dict[str, int] = field(default_factory=dict)  # true statements of categories not assessed

    def total(self, categories: Iterable[str] | None = None) -> CategoryCounts:
        out = CategoryCounts()
        for name, counts in self.per_category.items():
            if categories is None or name in set(categories):
                out.add(counts)
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "images": self.images,
            "assessed": self.assessed,
            "per_category": {k: v.as_dict() for k, v in self.per_category.items()},
            "total": self.total().as_dict(),
            "findings_total": self.total([c for c in self.per_category if c != Category.TOOTH.value]).as_dict(),
            "unsaid": self.unsaid,
        }


def compare_documents(pseudo: Sequence[ImageAttributes], truth: Sequence[ImageAttributes]) -> Comparison:
    """Pseudo-labelled documents against the true ones of the same images (matched by image_id)."""
    by_id = {d.image_id: d for d in truth}
    result = Comparison()
    assessed: set[str] = set()
    for doc in pseudo:
        true_doc = by_id.get(doc.image_id)
        if true_doc is None:
            continue
        result.images += 1
        mine = {c.value for c in doc.assessed}
        assessed |= mine
        said, real = statements(facts_of(doc)), statements(facts_of(true_doc))
        for key in said.keys() | real.keys():
            category = key[0]
            if category not in mine:
                if key in real:
                    result.unsaid[category] = result.unsaid.get(category, 0) + 1
                continue
            counts = result.per_category.setdefault(category, CategoryCounts())
            hedged = key in said and said[key] < HEDGE_THRESHOLD and category != Category.TOOTH.value
            counts.true += key in real
            counts.pseudo += key in said
            if key in said and key in real:
                counts.recovered += 1
                counts.hedged_recovered += hedged
            elif key in said:
                counts.invented += 1
                counts.hedged_invented += hedged
            else:
                counts.missed += 1
    order = [c.value for c in Category]
    result.assessed = [c for c in order if c in assessed]
    result.per_category = dict(sorted(result.per_category.items(), key=lambda kv: order.index(kv[0])))
    result.unsaid = dict(sorted(result.unsaid.items(), key=lambda kv: order.index(kv[0])))
    return result


def _pct(n: int, d: int) -> str:
    return f"{100.0 * n / d:.0f} %" if d else "–"


def comparison_markdown(result: Comparison) -> str:
    """The comparison as a Markdown table: one row per assessed category, totals, and what went unsaid."""
    lines = [
        "| statement | true | pseudo | recovered | missed | invented | hedged (recovered / invented) | recall | "
        "precision |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def row(name: str, c: CategoryCounts) -> str:
        return (
            f"| {name} | {c.true} | {c.pseudo} | {c.recovered} | {c.missed} | {c.invented} | "
            f"{c.hedged_recovered} / {c.hedged_invented} | {_pct(c.recovered, c.true)} | "
            f"{_pct(c.recovered, c.pseudo)} |"
        )

    for name, counts in result.per_category.items():
        label = "tooth present (FDI)" if name == Category.TOOTH.value else name.replace("_", " ")
        lines.append(row(label, counts))
    findings = [c for c in result.per_category if c != Category.TOOTH.value]
    if findings:
        lines.append(row("**all findings**", result.total(findings)))
    unsaid = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in result.unsaid.items()) or "none"
    lines += [
        "",
        (
            f"{result.images} images. True statements of categories the expert did not assess (the pseudo-labelled "
            f"reports say nothing about them): {unsaid}."
        ),
    ]
    return "\n".join(lines)


def side_by_side_sheet(
    rows: Sequence[tuple[str, Sequence[tuple[str, str, Sequence[float]]], Sequence[tuple[str, str, Sequence[float]]]]],
    *, thumb_width: int = 560,
):
    """A PNG-ready sheet: per image, the true boxes (left) and the expert's (right).

    `rows`: (image path, true boxes, predicted boxes); a box is (category, label, [x1, y1, x2, y2]).
    """
    from PIL import Image, ImageDraw

    from mmoral_pipeline.viz import DrawnBox, draw_boxes

    cells = []
    for path, true_boxes, pred_boxes in rows:
        with Image.open(path) as im:
            grey = im.convert("L")
        scale = thumb_width / grey.width
        small = grey.resize((thumb_width, max(1, round(grey.height * scale))))
        pair = []
        for boxes in (true_boxes, pred_boxes):
            drawn = [DrawnBox([v * scale for v in box], category, label) for category, label, box in boxes]
            pair.append(draw_boxes(small, drawn, width=1))
        cells.append(pair)
    if not cells:
        return Image.new("RGB", (2 * thumb_width, 40), "black")
    header = 22
    cell_h = max(c[0].height for c in cells)
    sheet = Image.new("RGB", (2 * thumb_width + 6, header + len(cells) * (cell_h + 4)), "black")
    draw = ImageDraw.Draw(sheet)
    draw.text((8, 4), "true labels (withheld from the pipeline)", fill=(255, 255, 255))
    draw.text((thumb_width + 14, 4), "expert's boxes (score > 0.3)", fill=(255, 255, 255))
    for i, (left, right) in enumerate(cells):
        y = header + i * (cell_h + 4)
        sheet.paste(left, (0, y))
        sheet.paste(right, (thumb_width + 6, y))
    return sheet
