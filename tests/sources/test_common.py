"""Shared reader helpers: label parsing, FDI attributes, polygons, accounting helpers."""

from __future__ import annotations

import math

from mmoral_pipeline.domain.records import IngestBatch, Rejection, RejectReason
from mmoral_pipeline.domain.taxonomy import Category
from mmoral_pipeline.sources.common import (
    Label,
    flat_polygon,
    parse_fdi,
    parse_label,
    reject_annotation,
    reject_for_image,
    reject_image,
)


def test_parse_label():
    assert parse_label("11 - Central Incisor") == Label(Category.TOOTH, None, 11)
    assert parse_label("Tooth_36") == Label(Category.TOOTH, None, 36)
    assert parse_label("48") == Label(Category.TOOTH, None, 48)
    assert parse_label("85") == Label(Category.TOOTH, None, 85)  # primary tooth
    assert parse_label("Filling - Crown") == Label(Category.FILLING)
    assert parse_label("Filling - Filling") == Label(Category.FILLING)
    assert parse_label("periapical abscess") == Label(Category.PERIAPICAL_LESION, "abscess")
    assert parse_label("19 - Extra") == RejectReason.INVALID_TOOTH
    assert parse_label("7") == RejectReason.UNKNOWN_CLASS
    assert parse_label(None) == RejectReason.UNKNOWN_CLASS
    assert parse_label("lump", {"lump": "retained root"}) == Label(Category.RETAINED_ROOT)


def test_parse_fdi():
    assert parse_fdi(None) is None and parse_fdi("") is None
    assert parse_fdi("36") == 36 and parse_fdi(36.0) == 36
    for bad in (36.5, math.nan, "x", 19, 0, True):
        assert parse_fdi(bad) == RejectReason.INVALID_TOOTH


def test_flat_polygon():
    assert flat_polygon([[0, 0], [2, 0], [2, 2]]) == [0.0, 0.0, 2.0, 0.0, 2.0, 2.0]
    assert flat_polygon([0, 0, 2, 0, 2, 2]) == [0.0, 0.0, 2.0, 0.0, 2.0, 2.0]
    assert flat_polygon([[0, 0], [2, 0]]) is None  # under three points
    assert flat_polygon([0, 0, 2, 0, 2]) is None
    assert flat_polygon([[0, "a"], [2, 0], [2, 2]]) is None


def test_accounting_helpers_balance_by_construction():
    batch = IngestBatch()
    missing = reject_image(batch, source="s", path="x.png", reason=RejectReason.IMAGE_MISSING, message="gone")
    reject_for_image(batch, missing, source="s", path="a.json", records=["r1", "r2"])
    corrupt = Rejection(source="s", path="y.png", reason=RejectReason.IMAGE_CORRUPT, message="bad")
    reject_for_image(batch, corrupt, source="s", path="a.json", records=["r3"])
    reject_annotation(batch, source="s", path="a.json", record="r4", reason=RejectReason.UNKNOWN_CLASS, message="?")
    ok, counts = batch.counts_balance()
    assert ok and counts["images_rejected"] == 1 and counts["annotations_rejected"] == 4
    assert [r.reason.value for r in batch.rejections if r.kind == "annotation"] == [
        "image_missing",
        "image_missing",
        "image_rejected",
        "unknown_class",
    ]
