"""COCO detection metrics of an expert on validation images, through pycocotools (the reference evaluator).

Boxes are compared per detector class (a tooth box must carry the right FDI number to count).
Returns mAP@[.5:.95], mAP@0.5 and per-class AP / AP50 with the class's ground-truth count.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from typing import Any

import numpy as np

from mmoral_pipeline.experts.base import Detection
from mmoral_pipeline.experts.classes import parse_class


def _xywh(box: Sequence[float]) -> list[float]:
    x1, y1, x2, y2 = (float(v) for v in box)
    return [x1, y1, x2 - x1, y2 - y1]


def coco_metrics(
    classes: Sequence[str],
    images: Sequence[tuple[str, int, int]],
    truth: dict[str, list[tuple[str, Sequence[float]]]],
    predictions: dict[str, list[Detection]],
) -> dict[str, Any]:
    """`images`: (image_id, width, height); `truth`: image_id -> [(class, box)]; `predictions`: image_id -> detections.

    Classes without a ground-truth box among these images get no AP (None), as COCOeval does.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    cat_id = {name: i + 1 for i, name in enumerate(classes)}
    img_id = {image_id: i + 1 for i, (image_id, _, _) in enumerate(images)}
    gt: dict[str, Any] = {
        "images": [{"id": img_id[i], "width": w, "height": h} for i, w, h in images],
        "annotations": [],
        "categories": [{"id": cid, "name": name} for name, cid in cat_id.items()],
    }
    gt_count = dict.fromkeys(classes, 0)
    for image_id, boxes in truth.items():
        if image_id not in img_id:
            continue
        for name, box in boxes:
            if name not in cat_id:
                continue
            xywh = _xywh(box)
            gt["annotations"].append(
                {"id": len(gt["annotations"]) + 1, "image_id": img_id[image_id], "category_id": cat_id[name],
                 "bbox": xywh, "area": xywh[2] * xywh[3], "iscrowd": 0}
            )
            gt_count[name] += 1
    dets = [
        {"image_id": img_id[image_id], "category_id": cat_id[d.label], "bbox": _xywh(d.box), "score": d.score}
        for image_id, found in predictions.items()
        if image_id in img_id
        for d in found
        if d.label in cat_id
    ]
    result: dict[str, Any] = {
        "evaluator": "pycocotools",
        "images": len(images),
        "ground_truth_boxes": len(gt["annotations"]),
        "predicted_boxes": len(dets),
        "map": 0.0,
        "map50": 0.0,
        "per_class": {},
    }
    if not gt["annotations"]:
        return result
    precision = None
    if dets:
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            coco_gt = COCO()
            coco_gt.dataset = gt
            coco_gt.createIndex()
            ev = COCOeval(coco_gt, coco_gt.loadRes(dets), "bbox")
            ev.params.maxDets = [1, 10, 300]  # an OPG has ~30 teeth and their findings: 100 boxes can be too few
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        precision = ev.eval["precision"]  # [iou, recall, class, area, maxdet]

    def ap(k: int | None, iou_index: int | None) -> float | None:
        if precision is None:  # nothing predicted: every class with a ground-truth box scores 0
            return 0.0
        p = precision[:, :, :, 0, -1] if iou_index is None else precision[iou_index : iou_index + 1, :, :, 0, -1]
        p = p if k is None else p[:, :, k]
        valid = p[p > -1]
        return float(np.mean(valid)) if valid.size else None

    result["map"] = ap(None, None) or 0.0
    result["map50"] = ap(None, 0) or 0.0
    for k, name in enumerate(classes):
        cls = parse_class(name)
        result["per_class"][name] = {
            "category": cls.category.value,
            "tooth": cls.tooth,
            "gt": gt_count[name],
            "ap": None if gt_count[name] == 0 else round(ap(k, None) or 0.0, 4),
            "ap50": None if gt_count[name] == 0 else round(ap(k, 0) or 0.0, 4),
        }
    result["map"] = round(result["map"], 4)
    result["map50"] = round(result["map50"], 4)
    return result


def per_category(metrics: dict[str, Any]) -> dict[str, dict[str, float | int | None]]:
    """Per unified category: mean AP / AP50 over its classes (the 32 tooth classes become 'tooth') and GT count."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in metrics.get("per_class", {}).values():
        groups.setdefault(row["category"], []).append(row)
    out: dict[str, dict[str, float | int | None]] = {}
    for category, rows in groups.items():
        scored = [r for r in rows if r["ap"] is not None]
        out[category] = {
            "gt": sum(r["gt"] for r in rows),
            "ap": round(float(np.mean([r["ap"] for r in scored])), 4) if scored else None,
            "ap50": round(float(np.mean([r["ap50"] for r in scored])), 4) if scored else None,
        }
    return out
