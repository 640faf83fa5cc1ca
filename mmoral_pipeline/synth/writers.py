"""Write synthetic cases in real annotation formats: COCO (one JSON) and labelme 5.x (one per image).

The layout is a contract with the COCO / labelme readers (see `assets/sample/README.md`).
"""

from __future__ import annotations

from typing import Any

from mmoral_pipeline.domain.taxonomy import Category
from mmoral_pipeline.synth.model import CATEGORY_IDS, CATEGORY_NAMES, CATEGORY_ORDER, Polygon, SynthCase, tooth_label

LABELME_VERSION = "5.5.0"


def _r(v: float) -> float:
    return round(float(v), 1)


def _clip_poly(poly: Polygon, width: int, height: int) -> list[float]:
    flat: list[float] = []
    for x, y in poly:
        flat += [_r(min(max(x, 0.0), width)), _r(min(max(y, 0.0), height))]
    return flat


def coco_categories() -> list[dict[str, Any]]:
    return [{"id": CATEGORY_IDS[c], "name": CATEGORY_NAMES[c], "supercategory": "dental"} for c in CATEGORY_ORDER]


def coco_image_id(case: SynthCase) -> int:
    return case.index + 1


def coco_entries(
    case: SynthCase, *, scores: bool, polygons: bool = True
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The COCO `images` entry and `annotations` of one case. Ids are stable per index (shard-safe)."""
    image_id = coco_image_id(case)
    image = {"id": image_id, "file_name": f"{case.name}.jpg", "width": case.width, "height": case.height}
    anns: list[dict[str, Any]] = []

    def add(
        cat: Category,
        box: tuple[float, float, float, float],
        score: float,
        attrs: dict[str, Any],
        seg: Polygon | None = None,
    ) -> None:
        x1, y1, x2, y2 = box
        w, h = _r(x2 - x1), _r(y2 - y1)
        ann: dict[str, Any] = {
            "id": image_id * 1000 + len(anns),
            "image_id": image_id,
            "category_id": CATEGORY_IDS[cat],
            "bbox": [_r(x1), _r(y1), w, h],
            "area": _r(w * h),
            "iscrowd": 0,
        }
        if seg is not None and polygons:
            ann["segmentation"] = [_clip_poly(seg, case.width, case.height)]
        if scores:
            ann["score"] = score
        ann["attributes"] = attrs
        anns.append(ann)

    for t in case.teeth:
        add(Category.TOOTH, t.box, t.score, {"fdi": t.fdi}, t.outline)
    for f in case.findings:
        attrs: dict[str, Any] = {}
        if f.fdi is not None:
            attrs["fdi"] = f.fdi
        if f.lesion_type:
            attrs["lesion_type"] = f.lesion_type
        if f.region:
            attrs["region"] = f.region
        if f.side:
            attrs["side"] = f.side
        if f.span:
            attrs["span"] = list(f.span)
        add(f.category, f.box, f.score, attrs)
    return image, anns


def coco_document(images: list[dict[str, Any]], annotations: list[dict[str, Any]], description: str) -> dict[str, Any]:
    return {
        "info": {"description": description, "version": "1.0"},
        "images": images,
        "annotations": annotations,
        "categories": coco_categories(),
    }


def labelme_document(case: SynthCase, *, scores: bool) -> dict[str, Any]:
    """A labelme 5.x JSON for one case: tooth polygons '<FDI> - <Name>', findings as rectangles."""
    shapes: list[dict[str, Any]] = []
    for t in case.teeth:
        pts = _clip_poly(t.outline, case.width, case.height)
        shape: dict[str, Any] = {
            "label": tooth_label(t.fdi),
            "points": [[pts[i], pts[i + 1]] for i in range(0, len(pts), 2)],
            "group_id": t.fdi,
            "description": "",
            "shape_type": "polygon",
            "flags": {},
            "mask": None,
        }
        if scores:
            shape["score"] = t.score
        shapes.append(shape)
    for f in case.findings:
        x1, y1, x2, y2 = f.box
        shape = {
            "label": CATEGORY_NAMES[f.category],
            "points": [[_r(x1), _r(y1)], [_r(x2), _r(y2)]],
            "group_id": f.fdi,
            "description": f.lesion_type or f.region or f.side or "",
            "shape_type": "rectangle",
            "flags": {},
            "mask": None,
        }
        if scores:
            shape["score"] = f.score
        shapes.append(shape)
    return {
        "version": LABELME_VERSION,
        "flags": {},
        "shapes": shapes,
        "imagePath": f"{case.name}.jpg",
        "imageData": None,
        "imageHeight": case.height,
        "imageWidth": case.width,
    }
