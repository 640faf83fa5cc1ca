"""Each post-processing rule on hand-made cases (pure functions and through the builder)."""

from __future__ import annotations

import pytest

from mmoral_pipeline.attributes import rules
from mmoral_pipeline.attributes.build import build_image_attributes
from mmoral_pipeline.attributes.rules import Finding, ToothCandidate
from mmoral_pipeline.attributes.settings import AttributeSettings
from mmoral_pipeline.domain.geometry import iou
from mmoral_pipeline.domain.taxonomy import Category

from .helpers import ann, frames


def tooth(fdi: int, box, score: float = 1.0, aid: str | None = None) -> ToothCandidate:
    return ToothCandidate(fdi=fdi, box=tuple(box), score=score, annotation_ids=[aid or f"t{fdi}-{score}"])


def finding(aid: str, cat: Category, box, score: float = 1.0, fdi: int | None = None) -> Finding:
    return Finding(annotation_id=aid, category=cat, box=tuple(box), score=score, fdi=fdi)


# ----------------------------------------------------------------- best box per tooth id


def test_best_box_per_tooth_keeps_highest_score_and_lineage():
    kept, merged = rules.best_box_per_tooth(
        [
            tooth(36, (0, 0, 10, 10), 0.6, "a"),
            tooth(36, (50, 0, 60, 10), 0.9, "b"),
            tooth(11, (20, 0, 30, 10), 0.5, "c"),
        ]
    )
    assert [t.fdi for t in kept] == [11, 36]
    best = kept[1]
    assert best.box == (50, 0, 60, 10) and best.score == 0.9
    assert best.annotation_ids == ["b", "a"]
    assert merged == {"a": "b"}


def test_best_box_tie_is_deterministic_larger_box_wins():
    a, b = tooth(21, (0, 0, 10, 10), 0.7, "a"), tooth(21, (0, 0, 12, 12), 0.7, "b")
    assert rules.best_box_per_tooth([a, b])[0][0].annotation_ids[0] == "b"
    a, b = tooth(21, (0, 0, 10, 10), 0.7, "a"), tooth(21, (0, 0, 12, 12), 0.7, "b")
    assert rules.best_box_per_tooth([b, a])[0][0].annotation_ids[0] == "b"


# ----------------------------------------------------------------- duplicate teeth


def test_duplicates_above_iou_merge_into_higher_score_with_conditions():
    low = tooth(35, (0, 0, 100, 100), 0.5, "low")
    high = tooth(36, (0, 0, 100, 99), 0.8, "high")  # IoU 0.99
    low.conditions.append(finding("car", Category.CARIES, (10, 10, 20, 20)))
    kept, merged = rules.merge_duplicate_teeth([low, high], 0.95)
    assert len(kept) == 1 and kept[0].fdi == 36
    assert [c.annotation_id for c in kept[0].conditions] == ["car"]
    assert merged == {"low": "high"} and kept[0].annotation_ids == ["high", "low"]


def test_overlap_at_or_below_threshold_is_two_teeth():
    a, b = tooth(35, (0, 0, 100, 100), 0.5), tooth(36, (0, 0, 100, 95), 0.8)
    assert iou(a.box, b.box) == pytest.approx(0.95)
    kept, merged = rules.merge_duplicate_teeth([a, b], 0.95)
    assert len(kept) == 2 and merged == {}


def test_duplicate_merge_in_builder_reports_merged_duplicate():
    imgs, anns = frames([ann("a", "tooth", [0, 0, 100, 100], 35, 0.5), ann("b", "tooth", [0, 0, 100, 99], 36, 0.8)])
    r = build_image_attributes(imgs, anns)
    assert r.outcomes == {"a": "merged_duplicate", "b": "tooth"}
    assert [t.tooth_id for t in r.documents[0].teeth] == [36]
    assert r.documents[0].teeth[0].annotation_ids == ["b", "a"]


# ----------------------------------------------------------------- finding -> tooth


def test_finding_goes_to_tooth_it_overlaps_most():
    teeth = [tooth(46, (0, 0, 100, 200)), tooth(45, (100, 0, 200, 200))]
    f = finding("f", Category.FILLING, (60, 10, 130, 40))  # 40 px in 46, 30 px in 45
    assert rules.assign_finding(f, teeth, 0.5) == (0, "overlap")
    f = finding("f", Category.FILLING, (80, 10, 190, 40))
    assert rules.assign_finding(f, teeth, 0.5) == (1, "overlap")


def test_source_named_tooth_wins_when_present():
    teeth = [tooth(46, (0, 0, 100, 200)), tooth(45, (100, 0, 200, 200))]
    f = finding("f", Category.FILLING, (60, 10, 130, 40), fdi=45)
    assert rules.assign_finding(f, teeth, 0.5) == (1, "label")


def test_finding_overlapping_no_tooth_is_unknown():
    teeth = [tooth(46, (0, 0, 100, 200))]
    assert rules.assign_finding(finding("f", Category.CARIES, (300, 10, 320, 30)), teeth, 0.5) == (None, "unknown")


def test_named_tooth_absent_reassigned_only_above_iou():
    teeth = [tooth(46, (0, 0, 100, 100))]
    close = finding("f", Category.CROWN, (0, 0, 100, 60), fdi=47)  # IoU 0.6 with 46
    far = finding("g", Category.CROWN, (0, 0, 100, 40), fdi=47)  # IoU 0.4
    assert rules.assign_finding(close, teeth, 0.5) == (0, "reassigned")
    assert rules.assign_finding(far, teeth, 0.5) == (None, "unknown")


def test_unknown_bucket_in_builder_carries_side():
    # image 1000x500: patient's right is the image's left; upper half is the upper jaw
    imgs, anns = frames([
        ann("t", "tooth", [0, 0, 100, 100], 18),
        ann("u1", "caries", [800, 50, 820, 70]),  # image right, top -> upper left
        ann("u2", "implant", [300, 300, 340, 420], fdi=46),  # named tooth absent -> side from quadrant
    ])
    doc = build_image_attributes(imgs, anns).documents[0]
    sides = {c.annotation_ids[0]: (c.side, c.teeth) for c in doc.unknown_tooth_findings}
    assert sides == {"u1": ("upper left", []), "u2": ("lower right", [46])}


# ----------------------------------------------------------------- thresholds


@pytest.mark.parametrize(
    ("category", "name", "value"),
    [
        ("caries", "finding_threshold", 0.4),
        ("filling", "finding_threshold", 0.4),
        ("periapical_lesion", "periapical_lesion_threshold", 0.7),
        ("impacted_tooth", "impacted_threshold", 0.55),
        ("bone_loss", "bone_loss_threshold", 0.6),
    ],
)
def test_default_thresholds_by_class(category: str, name: str, value: float):
    s = AttributeSettings()
    cat = Category(category)
    assert s.threshold_for(cat) == (name, value)
    assert rules.failed_threshold(cat, value - 0.01, s) == name
    assert rules.failed_threshold(cat, value, s) is None  # the threshold itself passes


def test_thresholds_are_configurable():
    s = AttributeSettings(finding_threshold=0.2, class_thresholds={"caries": 0.9})
    assert rules.failed_threshold(Category.FILLING, 0.3, s) is None
    assert rules.failed_threshold(Category.CARIES, 0.8, s) == "class_thresholds.caries"


def test_dropped_annotations_name_their_threshold():
    imgs, anns = frames([
        ann("t", "tooth", [0, 0, 100, 100], 46, 0.9),
        ann("pl", "periapical_lesion", [10, 80, 30, 100], 46, 0.65),
        ann("ca", "caries", [10, 10, 20, 20], 46, 0.65),
        ann("bl", "bone_loss", [0, 90, 300, 120], None, 0.59),
    ])
    r = build_image_attributes(imgs, anns)
    assert r.outcomes == {"t": "tooth", "pl": "dropped:periapical_lesion_threshold", "ca": "condition",
                          "bl": "dropped:bone_loss_threshold"}


def test_unscored_annotations_count_as_one_unless_configured():
    assert rules.effective_score(None, AttributeSettings()) == 1.0
    assert rules.effective_score(0.3, AttributeSettings()) == 0.3
    imgs, anns = frames(
        [ann("t", "tooth", [0, 0, 100, 100], 46), ann("pl", "periapical_lesion", [10, 80, 30, 100], 46)]
    )
    r = build_image_attributes(imgs, anns)
    assert r.outcomes["pl"] == "condition" and r.documents[0].teeth[0].conditions[0].score == 1.0
    r = build_image_attributes(imgs, anns, AttributeSettings(unscored_score=0.6))
    assert r.outcomes["pl"] == "dropped:periapical_lesion_threshold"


# ----------------------------------------------------------------- crown vs filling


def test_crown_filling_overlap_keeps_higher_score():
    crown = finding("c", Category.CROWN, (0, 0, 100, 50), 0.7)
    filling = finding("f", Category.FILLING, (0, 0, 100, 48), 0.8)  # IoU 0.96
    kept, suppressed = rules.suppress_crown_filling([crown, filling], 0.9)
    assert [k.annotation_id for k in kept] == ["f"] and suppressed == {"c": "f"}
    crown.score = 0.9
    kept, suppressed = rules.suppress_crown_filling([crown, filling], 0.9)
    assert [k.annotation_id for k in kept] == ["c"] and suppressed == {"f": "c"}


def test_crown_filling_tie_keeps_crown_and_low_overlap_keeps_both():
    crown = finding("c", Category.CROWN, (0, 0, 100, 50), 0.8)
    filling = finding("f", Category.FILLING, (0, 0, 100, 48), 0.8)
    assert rules.suppress_crown_filling([crown, filling], 0.9)[1] == {"f": "c"}
    small = finding("s", Category.FILLING, (0, 0, 50, 50), 0.99)  # IoU 0.5
    kept, suppressed = rules.suppress_crown_filling([crown, small], 0.9)
    assert len(kept) == 2 and suppressed == {}


def test_two_fillings_are_not_suppressed():
    a, b = finding("a", Category.FILLING, (0, 0, 10, 10), 0.5), finding("b", Category.FILLING, (0, 0, 10, 10), 0.9)
    assert rules.suppress_crown_filling([a, b], 0.9) == ([a, b], {})


# ----------------------------------------------------------------- root piece, wisdom, sides, recommendations


def test_root_piece_is_retained_root():
    assert rules.canonical_category("root piece") == Category.RETAINED_ROOT
    assert rules.canonical_category("Root_Piece") == Category.RETAINED_ROOT
    assert rules.canonical_category("retained_root") == Category.RETAINED_ROOT
    assert rules.canonical_category("no such thing") is None
    imgs, anns = frames([ann("t", "tooth", [0, 0, 100, 100], 46), ann("rp", "root piece", [10, 10, 90, 90], 46, 0.5)])
    r = build_image_attributes(imgs, anns)
    assert r.outcomes["rp"] == "condition"
    assert r.documents[0].teeth[0].conditions[0].category == Category.RETAINED_ROOT


def test_wisdom_status():
    imp = finding("i", Category.IMPACTED_TOOTH, (0, 0, 1, 1))
    car = finding("c", Category.CARIES, (0, 0, 1, 1))
    assert rules.wisdom_status(38, [imp]) == "impacted"
    assert rules.wisdom_status(38, [car]) == "erupted"
    assert rules.wisdom_status(37, [imp]) is None


def test_extraction_of_upper_wisdom_tooth_without_opposing_lower():
    recs = rules.extraction_recommendations([18, 28, 38, 11])
    assert [(r.kind, r.tooth_id) for r in recs] == [("extraction", 18)]
    assert rules.extraction_recommendations([18, 48, 28, 38]) == []
    assert rules.extraction_recommendations([38, 48]) == []
    assert [r.tooth_id for r in rules.extraction_recommendations([18, 28])] == [18, 28]


def test_side_from_quadrant_else_from_image_centre():
    assert rules.side_of(26, (0, 400, 10, 410), 1000, 500) == "upper left"  # quadrant wins over position
    assert rules.side_of(None, (100, 50, 120, 60), 1000, 500) == "upper right"  # image left = patient right
    assert rules.side_of(None, (800, 400, 820, 420), 1000, 500) == "lower left"
    assert rules.side_from_centre((0, 0, 1000, 500), 1000, 500) == "lower left"  # centre on the midline


def test_jaw_findings_region_and_side():
    imgs, anns = frames([
        ann("bl", "bone_loss", [600, 300, 800, 340], None, 0.9),
        ann("bl2", "bone_loss", [100, 300, 300, 340], None, 0.9, extra={"region": "upper"}),
        ann("mc", "mandibular_canal", [100, 300, 400, 450]),
        ann("ms", "maxillary_sinus", [600, 20, 800, 100], extra={"side": "left"}),
    ])
    doc = build_image_attributes(imgs, anns).documents[0]
    assert [(c.region, c.side) for c in doc.jaw.bone_loss] == [("upper", "upper right"), ("lower", "lower left")]
    assert [(c.region, c.side) for c in doc.jaw.mandibular_canal] == [("lower", "right")]
    assert [(c.region, c.side) for c in doc.jaw.maxillary_sinus] == [("upper", "left")]


def test_periapical_lesion_type_kept_only_for_lesions():
    imgs, anns = frames([
        ann("t", "tooth", [0, 0, 100, 100], 46),
        ann("pl", "periapical_lesion", [10, 80, 30, 100], 46, lesion="cyst"),
        ann("c", "caries", [10, 10, 20, 20], 46, lesion="cyst"),
    ])
    conds = {c.annotation_ids[0]: c.type for c in build_image_attributes(imgs, anns).documents[0].teeth[0].conditions}
    assert conds == {"pl": "cyst", "c": None}
