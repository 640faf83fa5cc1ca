"""What a source labels completely: its `covers:` in the sources file, or its format's default.

The default per format (README "Label coverage"):

| format         | default coverage                                                        |
|----------------|-------------------------------------------------------------------------|
| dc1000_masks   | caries (or `options.category`)                                          |
| ufba_masks     | tooth                                                                   |
| dentex         | tooth, impacted tooth, caries, deep caries, periapical lesion          |
| tufts          | tooth                                                                   |
| mmoral_json    | each document's own `assessed` list; everything when it has none       |
| yolo           | the categories its class names map onto (`class_map` / `dataset_yaml`)  |
| coco           | the categories of the file's `categories` list (through `class_map`)   |
| labelme        | `class_map` targets plus the categories found in the batch's labels    |
| manifest       | `class_map` targets plus the categories found in the batch's rows      |

A source that labels a category only partly must leave it out of `covers:`: coverage promises that
an image without a label of that category has none.
"""

from __future__ import annotations

from mmoral_pipeline.config import SourcesFile, SourceSpec
from mmoral_pipeline.domain.coverage import ALL_CATEGORIES, parse_coverage, sorted_categories
from mmoral_pipeline.domain.records import IngestBatch
from mmoral_pipeline.domain.taxonomy import Category
from mmoral_pipeline.sources.common import Label, name_map, parse_label

FIXED: dict[str, frozenset[Category]] = {
    "ufba_masks": frozenset({Category.TOOTH}),
    "tufts": frozenset({Category.TOOTH}),
    "dentex": frozenset(
        {Category.TOOTH, Category.IMPACTED_TOOTH, Category.CARIES, Category.DEEP_CARIES, Category.PERIAPICAL_LESION}
    ),
    "mmoral_json": ALL_CATEGORIES,
}
OBSERVED_FORMATS = ("labelme", "manifest")


def _categories_of(names: list[str], spec: SourceSpec) -> set[Category]:
    out = set()
    for n in names:
        label = parse_label(n, name_map(spec))
        if isinstance(label, Label):
            out.add(label.category)
    return out


def _coco_class_names(spec: SourceSpec, sources: SourcesFile) -> list[str]:
    from mmoral_pipeline.sources.coco import CocoReader, _categories

    _, ann_path, _, _ = CocoReader()._paths(spec, sources)
    index = CocoReader()._index(ann_path)
    doc = None if isinstance(index, str) else index.doc
    return list(_categories(doc.get("categories")).values()) if doc else []


def source_coverage(spec: SourceSpec, sources: SourcesFile, batch: IngestBatch) -> tuple[frozenset[Category], str]:
    """(coverage, how it was decided) for the images of one batch that carry none of their own."""
    if spec.covers is not None:
        return parse_coverage(spec.covers), "covers: in the sources file"
    fmt = spec.format
    if fmt == "dc1000_masks":
        return parse_coverage(
            [spec.options.get("category", "caries")]
        ), "format default (dc1000_masks: its mask category)"
    if fmt in FIXED:
        return FIXED[fmt], f"format default ({fmt})"
    if fmt == "yolo":
        from mmoral_pipeline.sources.yolo import load_class_names

        return frozenset(_categories_of(list(load_class_names(spec, sources).values()), spec)), "yolo class names"
    if fmt == "coco":
        names = _coco_class_names(spec, sources)
        if names:
            return frozenset(_categories_of(names, spec)), "coco categories list"
    mapped = _categories_of(list((name_map(spec) or {}).values()), spec)
    observed = {a.category for a in batch.annotations}
    return frozenset(mapped | observed), "class_map targets + categories found in the batch (set covers: to state it)"


def apply_coverage(spec: SourceSpec, sources: SourcesFile, batch: IngestBatch) -> tuple[frozenset[Category], str]:
    """Give every image of the batch its coverage: `covers:` wins; else the reader's own per-image value
    (an MMOral document's `assessed`); else the format default. Returns the batch-level coverage."""
    coverage, basis = source_coverage(spec, sources, batch)
    for image in batch.images:
        if spec.covers is not None or not image.covers:
            image.covers = sorted_categories(coverage)
    return coverage, basis
