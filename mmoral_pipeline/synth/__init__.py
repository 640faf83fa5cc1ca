"""Synthetic panoramic X-rays (OPGs) with COCO / labelme annotations, deterministic per seed.

`make_case` builds geometry only (fast, for scale tests), `render` paints it, `generate` writes a
folder. The embedded sample in assets/sample/ is rebuilt by `python -m mmoral_pipeline.synth.sample`.
"""

from mmoral_pipeline.synth.case import make_case
from mmoral_pipeline.synth.generate import case_for, case_rng, generate, image_name
from mmoral_pipeline.synth.model import (
    CATEGORY_IDS,
    CATEGORY_NAMES,
    SynthCase,
    SynthFinding,
    SynthSummary,
    SynthTooth,
    tooth_label,
)
from mmoral_pipeline.synth.render import render

__all__ = [
    "CATEGORY_IDS",
    "CATEGORY_NAMES",
    "SynthCase",
    "SynthFinding",
    "SynthSummary",
    "SynthTooth",
    "case_for",
    "case_rng",
    "generate",
    "image_name",
    "make_case",
    "render",
    "tooth_label",
]
