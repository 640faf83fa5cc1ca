"""Location caption: golden file, determinism, section order, version hash."""

from __future__ import annotations

import os
from pathlib import Path

from mmoral_pipeline.attributes import versions
from mmoral_pipeline.attributes.build import build_image_attributes
from mmoral_pipeline.attributes.caption import CAPTION_VERSION, render_caption
from mmoral_pipeline.domain.attributes import ImageAttributes

from .helpers import ann, frames, image

GOLDEN = Path(__file__).parent / "golden" / "location_caption.txt"

SECTION_ORDER = [
    "Teeth visibility with center points",
    "Wisdom teeth detection",
    "Missing teeth",
    "Non-wisdom impacted teeth",
    "Dental caries detection",
    "Periapical lesions detection",
    "Retained roots detection",
    "Historical treatments",
    "Bone loss detection",
    "Mandibular canal visibility",
    "Maxillary sinus visibility",
]


def golden_document() -> ImageAttributes:
    """A hand-made image touching every section (2000x1000; patient's right = image left)."""
    imgs, anns = frames(
        [
            ann("t18", "tooth", [100, 200, 200, 420], 18, 0.91),
            ann("t28", "tooth", [1800, 200, 1900, 420], 28, 0.88),
            ann("t38", "tooth", [1800, 560, 1900, 780], 38, 0.86),
            ann("i38", "impacted_tooth", [1800, 560, 1900, 780], 38, 0.77),
            ann("t13", "tooth", [600, 150, 680, 420], 13, 0.95),
            ann("i13", "impacted_tooth", [600, 150, 680, 420], 13, 0.6),
            ann("t36", "tooth", [1500, 560, 1600, 800], 36, 0.97),
            ann("c36", "caries", [1520, 580, 1550, 610], None, 0.82),
            ann("d36", "deep_caries", [1560, 580, 1595, 640], 36, 0.5),
            ann("p36", "periapical_lesion", [1530, 790, 1570, 830], 36, 0.93, lesion="granuloma"),
            ann("f36", "filling", [1510, 565, 1590, 600], 36, 0.71),
            ann("r36", "root_canal_treatment", [1540, 600, 1560, 790], 36, 0.66),
            ann("t45", "tooth", [700, 560, 780, 800], 45, 0.9),
            ann("rr45", "root piece", [705, 600, 775, 800], 45, 0.58),
            ann("m46", "missing_tooth", [560, 560, 690, 800], 46, 0.84),
            ann("im46", "implant", [580, 620, 660, 820], 46, 0.95),
            ann("bl", "bone_loss", [1400, 600, 1700, 650], None, 0.64),
            ann("mc1", "mandibular_canal", [200, 650, 900, 900]),
            ann("mc2", "mandibular_canal", [1100, 650, 1800, 900]),
            ann("ms", "maxillary_sinus", [300, 50, 800, 250], None, 0.9),
            ann("uc", "caries", [1000, 100, 1010, 110], None, 0.45),
        ],
        [image("img", 2000, 1000)],
    )
    doc = build_image_attributes(imgs, anns).documents[0]
    return doc.model_copy(update={"acquisition_time": "2021-03-04 10:22"})


def test_caption_matches_golden_file():
    caption = render_caption(golden_document())
    if os.environ.get("MMORAL_UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(caption)
    assert caption == GOLDEN.read_text(), "caption changed: review, then rerun with MMORAL_UPDATE_GOLDEN=1"


def test_caption_sections_in_paper_order_with_totals():
    caption = render_caption(golden_document())
    positions = [caption.index(f"{title} (total: ") for title in SECTION_ORDER]
    assert positions == sorted(positions)
    assert "Teeth visibility with center points (total: 6):" in caption
    assert "Wisdom teeth detection (total: 3):" in caption
    assert "'tooth_id': '38', 'is_impacted': true" in caption
    assert "Non-wisdom impacted teeth (total: 1):" in caption
    assert "Dental caries detection (total: 3):" in caption  # two on 36, one unknown tooth
    assert "'label': 'Periapical lesion (granuloma)'" in caption
    assert "'tooth_id': 'unknown', 'side': 'upper left'" in caption
    assert "Mandibular canal visibility (total: 2):" in caption
    assert "Acquisition time: 2021-03-04 10:22" in caption
    assert "Rule-based recommendations (total: 1):" in caption  # 18 without 48


def test_caption_is_deterministic_and_survives_json():
    doc = golden_document()
    again = ImageAttributes.model_validate_json(doc.model_dump_json())
    assert render_caption(doc) == render_caption(again) == render_caption(golden_document())


def test_empty_image_caption_has_all_sections_at_zero():
    imgs, anns = frames([], [image("empty")])
    caption = render_caption(build_image_attributes(imgs, anns).documents[0])
    for title in SECTION_ORDER:
        assert f"{title} (total: 0):\n[]" in caption
    assert "Acquisition time" not in caption


def test_caption_version_hashes_template_and_code(tmp_path: Path):
    assert f"caption-{versions.files_hash(versions.CAPTION_FILES)}" == CAPTION_VERSION
    a = tmp_path / "a.j2"
    a.write_text("x")
    before = versions.files_hash((a,))
    a.write_text("y")
    assert versions.files_hash((a,)) != before
