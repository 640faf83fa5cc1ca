"""COCO metrics through pycocotools: perfect predictions score 1, wrong classes and misplaced boxes do not."""

from __future__ import annotations

from mmoral_pipeline.experts.base import Detection
from mmoral_pipeline.experts.evaluate import coco_metrics, per_category

CLASSES = ["tooth_11", "tooth_21", "caries"]
IMAGES = [("a", 200, 100), ("b", 200, 100)]
TRUTH = {
    "a": [("tooth_11", [10, 10, 30, 60]), ("tooth_21", [40, 10, 60, 60]), ("caries", [12, 12, 18, 18])],
    "b": [("tooth_11", [10, 10, 30, 60])],
}


def _det(label: str, box, score: float = 0.9) -> Detection:
    category = "tooth" if label.startswith("tooth_") else label
    tooth = int(label.split("_")[1]) if label.startswith("tooth_") else None
    return Detection(label, category, tooth, tuple(float(v) for v in box), score)


def test_perfect_predictions_score_one():
    preds = {i: [_det(c, b) for c, b in boxes] for i, boxes in TRUTH.items()}
    m = coco_metrics(CLASSES, IMAGES, TRUTH, preds)
    assert m["map"] == 1.0 and m["map50"] == 1.0
    assert m["per_class"]["tooth_11"] == {"category": "tooth", "tooth": 11, "gt": 2, "ap": 1.0, "ap50": 1.0}
    assert per_category(m)["tooth"] == {"gt": 3, "ap": 1.0, "ap50": 1.0}


def test_a_tooth_with_the_wrong_number_and_a_shifted_box_do_not_count():
    preds = {
        "a": [_det("tooth_21", [10, 10, 30, 60]), _det("tooth_11", [40, 10, 60, 60]), _det("caries", [30, 30, 36, 36])],
        "b": [_det("tooth_11", [10, 10, 30, 60])],
    }
    m = coco_metrics(CLASSES, IMAGES, TRUTH, preds)
    assert m["per_class"]["tooth_21"]["ap50"] == 0.0 and m["per_class"]["caries"]["ap50"] == 0.0
    # One of its two boxes found (recall 0.5) at precision 0.5: COCO's 101-point AP is 51/101 * 0.5.
    assert m["per_class"]["tooth_11"]["ap50"] == round(51 / 101 * 0.5, 4)
    assert 0.0 < m["map50"] < 1.0


def test_no_predictions_score_zero_and_classes_without_truth_have_no_ap():
    m = coco_metrics(CLASSES + ["implant"], IMAGES, TRUTH, {})
    assert m["map50"] == 0.0 and m["per_class"]["caries"]["ap50"] == 0.0
    assert m["per_class"]["implant"]["ap50"] is None and m["per_class"]["implant"]["gt"] == 0
