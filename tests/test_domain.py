"""Domain core: FDI numbering, Universal mapping, taxonomy, geometry."""

import math

import pytest

from mmoral_pipeline.domain import fdi
from mmoral_pipeline.domain.geometry import box_problem, center, iou, overlap_of, yolo_to_xyxy
from mmoral_pipeline.domain.taxonomy import PATHOLOGY, TREATMENTS, Category, group_of, unify_category


def test_tooth_sets():
    assert len(fdi.PERMANENT_TEETH) == 32
    assert len(fdi.PRIMARY_TEETH) == 20
    assert not fdi.is_valid_fdi(19) and not fdi.is_valid_fdi(56) and not fdi.is_valid_fdi(None)


@pytest.mark.parametrize(
    "tooth,quadrant,arch,side,half,wisdom",
    [
        (18, 1, "upper", "right", "left", True),
        (21, 2, "upper", "left", "right", False),
        (38, 3, "lower", "left", "right", True),
        (46, 4, "lower", "right", "left", False),
        (55, 1, "upper", "right", "left", False),
        (75, 3, "lower", "left", "right", False),
    ],
)
def test_tooth_geometry(tooth, quadrant, arch, side, half, wisdom):
    assert fdi.quadrant(tooth) == quadrant
    assert fdi.arch(tooth) == arch
    assert fdi.patient_side(tooth) == side
    assert fdi.image_half(tooth) == half
    assert fdi.is_wisdom(tooth) is wisdom


def test_universal_round_trip_and_anchor_points():
    # anchor points from the Tufts README: 1-8 -> 18..11, 9-16 -> 21..28, 17-24 -> 38..31, 25-32 -> 41..48
    assert [fdi.universal_to_fdi(u) for u in (1, 8, 9, 16, 17, 24, 25, 32)] == [18, 11, 21, 28, 38, 31, 41, 48]
    assert fdi.universal_to_fdi("A") == 55 and fdi.universal_to_fdi("J") == 65
    assert fdi.universal_to_fdi("K") == 75 and fdi.universal_to_fdi("T") == 85
    for t in fdi.ALL_TEETH:
        assert fdi.universal_to_fdi(fdi.fdi_to_universal(t)) == t
    with pytest.raises(ValueError):
        fdi.universal_to_fdi(33)


def test_opposing_and_names():
    assert fdi.opposing(18) == 48 and fdi.opposing(28) == 38 and fdi.opposing(38) == 28
    assert fdi.tooth_name(36) == "lower left first molar"


def test_taxonomy_groups_and_synonyms():
    assert Category.CARIES in PATHOLOGY and Category.CROWN in TREATMENTS
    assert group_of(Category.MAXILLARY_SINUS) == "anatomy"
    assert unify_category("Root Piece") == (Category.RETAINED_ROOT, None)
    assert unify_category("Periapical_Cyst") == (Category.PERIAPICAL_LESION, "cyst")
    assert unify_category("Deep Caries") == (Category.DEEP_CARIES, None)
    assert unify_category("no such thing") is None
    assert unify_category("cls7", extra={"cls7": "implant"}) == (Category.IMPLANT, None)


def test_geometry():
    a = (0, 0, 10, 10)
    assert iou(a, a) == 1.0
    assert iou(a, (10, 10, 20, 20)) == 0.0
    assert math.isclose(iou(a, (5, 0, 15, 10)), 50 / 150)
    assert overlap_of((2, 2, 4, 4), a) == 1.0
    assert center(a) == (5.0, 5.0)
    assert yolo_to_xyxy(0.5, 0.5, 0.2, 0.4, 100, 50) == pytest.approx((40, 15, 60, 35))
    assert box_problem([0, 0, 5, 5], 10, 10) is None
    assert box_problem([0, 0, 50, 5], 10, 10) == "box_out_of_bounds"
    assert box_problem([-5, 0, 5, 5], 10, 10) == "box_negative"
    assert box_problem([3, 3, 3, 5], 10, 10) == "box_zero_area"
    assert box_problem([float("nan"), 0, 5, 5], 10, 10) == "box_nan"
