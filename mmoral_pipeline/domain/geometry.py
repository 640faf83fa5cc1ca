"""Box geometry in pixel coordinates `[x1, y1, x2, y2]`: the one home for IoU and overlap."""

from __future__ import annotations

import math
from collections.abc import Sequence

Box = tuple[float, float, float, float]


def box_area(b: Sequence[float]) -> float:
    return max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])


def intersection(a: Sequence[float], b: Sequence[float]) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return w * h if w > 0 and h > 0 else 0.0


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    inter = intersection(a, b)
    if inter == 0.0:
        return 0.0
    return inter / (box_area(a) + box_area(b) - inter)


def overlap_of(a: Sequence[float], b: Sequence[float]) -> float:
    """Share of `a`'s area that lies inside `b` (small findings inside a large tooth box score 1.0)."""
    area = box_area(a)
    return intersection(a, b) / area if area > 0 else 0.0


def center(b: Sequence[float]) -> tuple[float, float]:
    return ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0)


def box_from_points(points: Sequence[Sequence[float]]) -> Box:
    xs = [float(p[0]) for p in points]
    ys = [float(p[1]) for p in points]
    return (min(xs), min(ys), max(xs), max(ys))


def xywh_to_xyxy(x: float, y: float, w: float, h: float) -> Box:
    return (float(x), float(y), float(x) + float(w), float(y) + float(h))


def yolo_to_xyxy(cx: float, cy: float, w: float, h: float, width: int, height: int) -> Box:
    return (
        (cx - w / 2.0) * width,
        (cy - h / 2.0) * height,
        (cx + w / 2.0) * width,
        (cy + h / 2.0) * height,
    )


def box_problem(
    b: Sequence[float], width: int | None = None, height: int | None = None, tol: float = 1.0
) -> str | None:
    """Why a box is unusable, or None. `tol` pixels of slack at the image border."""
    if len(b) != 4:
        return "box_malformed"
    if any(v is None or not isinstance(v, (int, float)) or math.isnan(v) or math.isinf(v) for v in b):
        return "box_nan"
    if any(v < -tol for v in b):
        return "box_negative"
    if b[2] <= b[0] or b[3] <= b[1]:
        return "box_zero_area"
    if width is not None and height is not None and (b[2] > width + tol or b[3] > height + tol):
        return "box_out_of_bounds"
    return None


def clip_box(b: Sequence[float], width: int, height: int) -> Box:
    return (max(0.0, b[0]), max(0.0, b[1]), min(float(width), b[2]), min(float(height), b[3]))
