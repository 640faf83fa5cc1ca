import random

import pytest

from mmoral_pipeline.domain import fdi
from mmoral_pipeline.domain.attributes import Condition, ImageAttributes, JawAttributes, ToothAttributes
from mmoral_pipeline.generation.facts import facts_of
from mmoral_pipeline.generation.pipeline import ImageInput, fallback_caption
from mmoral_pipeline.generation.samples import random_attributes


def tooth(t: int, x: float, conds=(), wisdom_status=None, score=0.95) -> ToothAttributes:
    y = 300 if fdi.arch(t) == "upper" else 800
    return ToothAttributes(
        tooth_id=t,
        quadrant=fdi.quadrant(t),
        is_wisdom=fdi.is_wisdom(t),
        side=fdi.side_label(t),
        bbox=[x, y, x + 150, y + 300],
        center=[x + 75, y + 150],
        score=score,
        wisdom_status=wisdom_status,
        conditions=[
            Condition(category=c, bbox=[x + 10, y + 10, x + 60, y + 60], score=s, type=ty) for c, s, ty in conds
        ],
    )


@pytest.fixture
def hand_attributes() -> ImageAttributes:
    """A hand-built case: definite caries on 36, suspected caries on 26 (0.60), granuloma on 46,
    filling + RCT on 16, impacted 48, missing 37, lower bone loss 0.65, two canals."""
    teeth = [
        tooth(16, 400, [("filling", 0.95, None), ("root_canal_treatment", 0.9, None)]),
        tooth(15, 560), tooth(14, 720), tooth(11, 1200), tooth(21, 1400), tooth(24, 1880), tooth(25, 2040),
        tooth(26, 2200, [("caries", 0.60, None)]),
        tooth(36, 2200, [("caries", 0.92, None)]),
        tooth(35, 2040), tooth(31, 1400), tooth(41, 1200), tooth(45, 560),
        tooth(46, 400, [("periapical_lesion", 0.88, "granuloma")]),
        tooth(48, 100, wisdom_status="impacted"),
    ]
    return ImageAttributes(
        image_id="hand1", width=2800, height=1400, teeth=teeth,
        jaw=JawAttributes(
            bone_loss=[Condition(category="bone_loss", region="lower", bbox=[300, 900, 2500, 1000], score=0.65)],
            mandibular_canal=[Condition(category="mandibular_canal", bbox=[100, 1100, 900, 1200], side="right"),
                              Condition(category="mandibular_canal", bbox=[1900, 1100, 2700, 1200], side="left")],
        ),
        missing_teeth=[Condition(category="missing_tooth", bbox=[2360, 800, 2500, 1100], teeth=[37], score=0.9)],
        recommendations=[],
    )


@pytest.fixture
def hand_facts(hand_attributes):
    return facts_of(hand_attributes)


def image_inputs(n: int, seed: int = 0, partition: str = "b1") -> list[ImageInput]:
    out = []
    for i in range(n):
        a = random_attributes(random.Random(seed * 1000 + i), f"img{seed}_{i}")
        out.append(ImageInput(a.image_id, partition, a.content_hash(), a, fallback_caption(a)))
    return out


@pytest.fixture
def make_images():
    return image_inputs
