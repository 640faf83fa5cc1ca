"""Random but plausible `ImageAttributes` for tests and the scale benchmark (no pixels involved).

Teeth sit in two arches in FDI order (patient's right on the image's left); each tooth may carry
findings with scores on both sides of the 0.80 hedging threshold.
"""

from __future__ import annotations

import random

from mmoral_pipeline.domain import fdi
from mmoral_pipeline.domain.attributes import Condition, ImageAttributes, JawAttributes, Recommendation, ToothAttributes

_UPPER = [18, 17, 16, 15, 14, 13, 12, 11, 21, 22, 23, 24, 25, 26, 27, 28]
_LOWER = [48, 47, 46, 45, 44, 43, 42, 41, 31, 32, 33, 34, 35, 36, 37, 38]
_TOOTH_FINDINGS = [("caries", 0.14), ("deep_caries", 0.04), ("periapical_lesion", 0.04), ("filling", 0.14),
                   ("crown", 0.05), ("root_canal_treatment", 0.06), ("retained_root", 0.01), ("implant", 0.01)]


def random_attributes(rng: random.Random, image_id: str, width: int = 2800, height: int = 1400) -> ImageAttributes:
    teeth = []
    missing = []
    slot_w = width * 0.8 / 16
    for row, arch in enumerate((_UPPER, _LOWER)):
        for i, t in enumerate(arch):
            if rng.random() < (0.35 if t % 10 == 8 else 0.06):
                if t % 10 != 8:
                    missing.append(t)
                continue
            x1 = width * 0.1 + i * slot_w + rng.uniform(-4, 4)
            y1 = height * (0.2 if row == 0 else 0.52) + rng.uniform(-10, 10)
            box = [round(x1, 1), round(y1, 1), round(x1 + slot_w * 0.9, 1), round(y1 + height * 0.26, 1)]
            conds = []
            for cat, p in _TOOTH_FINDINGS:
                if rng.random() < p:
                    cx, cy = rng.uniform(box[0], box[2] - 30), rng.uniform(box[1], box[3] - 30)
                    conds.append(
                        Condition(
                            category=cat,
                            bbox=[round(cx, 1), round(cy, 1), round(cx + 30, 1), round(cy + 30, 1)],
                            score=round(rng.uniform(0.55, 0.99), 2),
                            type=rng.choice(["granuloma", "cyst", "abscess"]) if cat == "periapical_lesion" else None,
                        )
                    )
            wisdom = fdi.is_wisdom(t)
            teeth.append(
                ToothAttributes(
                    tooth_id=t,
                    quadrant=fdi.quadrant(t),
                    is_wisdom=wisdom,
                    side=fdi.side_label(t),
                    bbox=box,
                    center=[round((box[0] + box[2]) / 2, 1), round((box[1] + box[3]) / 2, 1)],
                    score=round(rng.uniform(0.85, 0.99), 2),
                    wisdom_status=(rng.choice(["impacted", "erupted", "erupted"]) if wisdom else None),
                    conditions=conds,
                )
            )
    jaw = JawAttributes(
        bone_loss=[
            Condition(
                category="bone_loss",
                region=r,
                bbox=[
                    width * 0.2,
                    height * (0.3 if r == "upper" else 0.6),
                    width * 0.8,
                    height * (0.45 if r == "upper" else 0.75),
                ],
                score=round(rng.uniform(0.6, 0.95), 2),
            )
            for r in ("upper", "lower")
            if rng.random() < 0.25
        ],
        mandibular_canal=[
            Condition(
                category="mandibular_canal",
                bbox=[
                    width * (0.1 if s == "right" else 0.6),
                    height * 0.7,
                    width * (0.4 if s == "right" else 0.9),
                    height * 0.85,
                ],
                side=s,
            )
            for s in ("right", "left")
            if rng.random() < 0.8
        ],
        maxillary_sinus=[
            Condition(
                category="maxillary_sinus",
                bbox=[
                    width * (0.1 if s == "right" else 0.6),
                    height * 0.05,
                    width * (0.4 if s == "right" else 0.9),
                    height * 0.25,
                ],
                side=s,
            )
            for s in ("right", "left")
            if rng.random() < 0.7
        ],
    )
    missing_regions = [Condition(category="missing_tooth", bbox=[0, 0, 10, 10], teeth=[t], score=0.9) for t in missing]
    present = {t.tooth_id for t in teeth}
    recs = [Recommendation(kind="extraction", tooth_id=u, reason=f"opposing tooth {fdi.opposing(u)} is absent")
            for u in (18, 28) if u in present and fdi.opposing(u) not in present]
    return ImageAttributes(
        image_id=image_id,
        file_name=f"{image_id}.jpg",
        width=width,
        height=height,
        teeth=teeth,
        jaw=jaw,
        missing_teeth=missing_regions,
        recommendations=recs,
    )
