"""Small ImageAttributes factories for the evaluation tests (synthetic, varied per seed)."""

from __future__ import annotations

import random

from mmoral_pipeline.domain.attributes import Condition, ImageAttributes, JawAttributes, Recommendation, ToothAttributes
from mmoral_pipeline.domain.fdi import PERMANENT_TEETH, side_label
from mmoral_pipeline.domain.taxonomy import Category


def make_attributes(seed: int, width: int = 2000, height: int = 1000) -> ImageAttributes:
    rng = random.Random(seed)
    teeth = []
    present = [t for t in PERMANENT_TEETH if rng.random() > 0.12]
    for fdi in present:
        q, p = divmod(fdi, 10)
        x = width / 2 + (-1 if q in (1, 4) else 1) * (p * 90)
        y = height * (0.35 if q in (1, 2) else 0.65)
        box = [x - 40, y - 80, x + 40, y + 80]
        conds = []
        r = rng.random()
        if r < 0.10:
            conds.append(
                Condition(category=Category.CARIES, bbox=[x - 20, y - 30, x + 20, y + 10], score=rng.choice([0.6, 0.9]))
            )
        elif r < 0.15:
            conds.append(
                Condition(
                    category=Category.PERIAPICAL_LESION,
                    bbox=[x - 25, y + 50, x + 25, y + 90],
                    score=0.85,
                    type="granuloma",
                )
            )
        elif r < 0.25:
            conds.append(
                Condition(
                    category=rng.choice([Category.FILLING, Category.CROWN, Category.ROOT_CANAL_TREATMENT]),
                    bbox=[x - 30, y - 60, x + 30, y],
                    score=0.95,
                )
            )
        wisdom = p == 8
        status = ("impacted" if rng.random() < 0.5 else "erupted") if wisdom else None
        teeth.append(ToothAttributes(tooth_id=fdi, quadrant=q, is_wisdom=wisdom, side=side_label(fdi), bbox=box,
                                     center=[x, y], score=0.95, wisdom_status=status, conditions=conds))
    missing = [t for t in PERMANENT_TEETH if t not in present and t % 10 != 8]
    jaw = JawAttributes(
        bone_loss=[Condition(category=Category.BONE_LOSS, bbox=[100, 600, 1900, 900], region="lower", score=0.7)]
        if rng.random() < 0.4
        else [],
        mandibular_canal=[Condition(category=Category.MANDIBULAR_CANAL, bbox=[100, 700, 900, 900])] * 2,
        maxillary_sinus=[Condition(category=Category.MAXILLARY_SINUS, bbox=[200, 100, 800, 300])] * 2,
    )
    recs = (
        [Recommendation(kind="extraction", tooth_id=18, reason="opposing tooth 48 absent")]
        if 18 in present and 48 not in present
        else []
    )
    return ImageAttributes(
        image_id=f"img{seed:03d}", file_name=f"img{seed:03d}.jpg", width=width, height=height, teeth=teeth, jaw=jaw,
        missing_teeth=[Condition(category=Category.MISSING_TOOTH, bbox=[0, 0, 10, 10], teeth=[m]) for m in missing],
        recommendations=recs,
    )
