"""An expert's label space: detector class <-> (unified category, FDI tooth).

A tooth is enumerated by its class (one class per FDI number, as MMOral's enumeration experts do);
every other category is one class. Label 0 is the detector's background. Pure Python: the Dagster
shell and the annotation tables use it without torch.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from pydantic import BaseModel

from mmoral_pipeline.domain import fdi as fdi_rules
from mmoral_pipeline.domain.taxonomy import Category

TOOTH_PREFIX = "tooth_"


class ExpertClass(BaseModel):
    """One detector class: its name (`tooth_36`, `caries`), unified category and tooth."""

    name: str
    category: Category
    tooth: int | None = None


def class_name(category: Category | str, tooth: int | None) -> str | None:
    """The class of an annotation, or None when it cannot be a class (a tooth without a valid FDI)."""
    category = Category(category)
    if category == Category.TOOTH:
        return f"{TOOTH_PREFIX}{int(tooth)}" if tooth is not None and fdi_rules.is_valid_fdi(int(tooth)) else None
    return category.value


def parse_class(name: str) -> ExpertClass:
    if name.startswith(TOOTH_PREFIX):
        tooth = int(name[len(TOOTH_PREFIX):])
        if not fdi_rules.is_valid_fdi(tooth):
            raise ValueError(f"{name!r}: {tooth} is not an FDI tooth")
        return ExpertClass(name=name, category=Category.TOOTH, tooth=tooth)
    return ExpertClass(name=name, category=Category(name))


def _order(name: str) -> tuple[int, int, str]:
    cls = parse_class(name)
    return (list(Category).index(cls.category), cls.tooth or 0, name)


def classes_from_labels(
    labels: Iterable[tuple[str, int | None]], *, min_instances: int = 1, categories: Sequence[str] | None = None
) -> list[str]:
    """The classes to train: those with at least `min_instances` boxes (in taxonomy order, teeth by FDI).

    `labels` are (category, fdi) pairs of the training annotations; `categories` limits the
    categories (None: all).
    """
    wanted = {Category(c) for c in categories} if categories else None
    counts: Counter[str] = Counter()
    for category, tooth in labels:
        if wanted is not None and Category(category) not in wanted:
            continue
        name = class_name(category, tooth)
        if name is not None:
            counts[name] += 1
    return sorted((n for n, k in counts.items() if k >= min_instances), key=_order)


def categories_of(classes: Iterable[str]) -> list[Category]:
    """The unified categories a list of classes predicts (taxonomy order)."""
    seen = {parse_class(n).category for n in classes}
    return [c for c in Category if c in seen]
