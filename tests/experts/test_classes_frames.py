"""The expert's label space, the expert tables and who assesses which category (pure, no torch)."""

from __future__ import annotations

import json

import polars as pl
import pytest

from mmoral_pipeline import tables
from mmoral_pipeline.config import SourceSpec
from mmoral_pipeline.domain.fdi import mirrored
from mmoral_pipeline.domain.taxonomy import Category
from mmoral_pipeline.experts.annotate import annotation_id, assignments, human_covers
from mmoral_pipeline.experts.classes import categories_of, class_name, classes_from_labels, parse_class
from mmoral_pipeline.experts.data import mirrored_class
from mmoral_pipeline.experts.frames import (
    EXPERT_ANNOTATIONS,
    as_raw_annotations,
    assessed_by_experts,
    expert_of_annotation,
    with_expert_annotations,
    with_expert_coverage,
)


def test_class_names_round_trip_and_teeth_need_a_valid_fdi():
    assert class_name("tooth", 36) == "tooth_36"
    assert class_name(Category.CARIES, None) == "caries"
    assert class_name("tooth", None) is None and class_name("tooth", 99) is None
    cls = parse_class("tooth_36")
    assert (cls.category, cls.tooth) == (Category.TOOTH, 36)
    assert parse_class("bone_loss").tooth is None
    with pytest.raises(ValueError):
        parse_class("tooth_19")


def test_classes_from_labels_keeps_frequent_classes_in_taxonomy_order():
    labels = (
        [("caries", None)] * 3 + [("tooth", 21)] * 5 + [("tooth", 11)] * 5 + [("tooth", None)] * 9 + [("implant", None)]
    )
    assert classes_from_labels(labels, min_instances=3) == ["tooth_11", "tooth_21", "caries"]
    assert classes_from_labels(labels, min_instances=1, categories=["caries", "implant"]) == ["caries", "implant"]
    assert [c.value for c in categories_of(["caries", "tooth_11", "tooth_21"])] == ["tooth", "caries"]


def test_a_left_right_flip_renumbers_teeth_to_the_other_side():
    assert [mirrored(t) for t in (11, 18, 21, 36, 47, 55, 61, 75, 84)] == [21, 28, 11, 46, 37, 65, 51, 85, 74]
    assert mirrored_class("tooth_36") == "tooth_46" and mirrored_class("caries") == "caries"


def test_human_labels_come_first_then_experts_in_their_order():
    plan = assignments({"tooth"}, [["tooth", "caries", "filling"], ["caries", "bone_loss"]])
    assert plan == [(["caries", "filling"], ["tooth"]), (["bone_loss"], ["caries"])]
    assert human_covers(SourceSpec(name="a", format="images", root=".")) == set()
    assert "caries" in human_covers(SourceSpec(name="b", format="coco", root="."))


def _expert_rows() -> pl.DataFrame:
    rows = [
        {
            "annotation_id": annotation_id("v1", "img-1", "tooth_11", [1, 2, 3, 4]),
            "image_id": "img-1",
            "source": "s",
            "partition": "s",
            "category": "tooth",
            "tooth": 11,
            "box": [1.0, 2.0, 3.0, 4.0],
            "score": 0.91,
            "label": "tooth_11",
            "expert": "e",
            "expert_version": "v1",
            "checkpoint": "/ckpt",
        },
        {
            "annotation_id": annotation_id("v1", "img-1", "caries", [1, 2, 3, 4]),
            "image_id": "img-1",
            "source": "s",
            "partition": "s",
            "category": "caries",
            "tooth": None,
            "box": [1.0, 2.0, 3.0, 4.0],
            "score": 0.5,
            "label": "caries",
            "expert": "e",
            "expert_version": "v1",
            "checkpoint": "/ckpt",
        },
    ]
    return pl.DataFrame(rows, schema=EXPERT_ANNOTATIONS)


def test_expert_rows_become_raw_annotations_that_name_their_expert():
    expert = _expert_rows()
    raw = as_raw_annotations(expert)
    assert raw.schema == pl.Schema({**tables.RAW_ANNOTATIONS, "expert": pl.String})
    first = raw.row(0, named=True)
    assert first["expert"] == "e@v1"
    assert first["fdi"] == 11 and first["source_file"] == "/ckpt" and first["record"] == "expert e@v1"
    assert expert_of_annotation(first["extra"]) == {"expert": "e", "expert_version": "v1", "label": "tooth_11"}
    assert expert_of_annotation(json.dumps({"side": "left"})) is None
    human = pl.DataFrame(
        [{"annotation_id": "h1", "image_id": "img-1", "category": "tooth", "fdi": 21, "box": [5.0, 5, 9, 9]}]
    )
    both = with_expert_annotations(human, expert)
    assert both.height == 3 and set(both["annotation_id"]) == {"h1", *expert["annotation_id"]}
    assert both.filter(pl.col("annotation_id") == "h1")["expert"].to_list() == [None]
    assert with_expert_annotations(human, None).drop("expert").equals(human)
    assert annotation_id("v1", "img-1", "caries", [1, 2, 3, 4]) != annotation_id("v2", "img-1", "caries", [1, 2, 3, 4])


def test_coverage_of_experts_is_the_union_per_image():
    cov = pl.DataFrame({"image_id": ["a", "a", "b"], "assessed": [["tooth"], ["caries"], []]})
    assert assessed_by_experts(cov) == {"a": {"tooth", "caries"}, "b": set()}
    assert assessed_by_experts(None) == {}
    images = pl.DataFrame({"image_id": ["a", "b", "c"]})
    # a folder of images: nothing of its own; what the experts assessed on each image
    assert with_expert_coverage(images, cov, []) ["covers"].to_list() == [["tooth", "caries"], [], []]
    # a source covering teeth (its own `covers` column) gains the experts' categories
    own = images.with_columns(pl.Series("covers", [["tooth"], ["tooth", "filling"], None], dtype=pl.List(pl.String)))
    merged = with_expert_coverage(own, cov, None)["covers"].to_list()
    assert merged[0] == ["tooth", "caries"] and merged[1] == ["tooth", "filling"] and len(merged[2]) == len(Category)
    assert len(with_expert_coverage(images, None, None)["covers"][0]) == len(Category)


def test_only_images_labelled_for_every_learnt_category_train_an_expert():
    from mmoral_pipeline.experts.data import fully_labelled

    images = pl.DataFrame({"image_id": ["a", "b", "c"]}).with_columns(
        pl.Series("covers", [["tooth", "caries"], ["tooth"], None], dtype=pl.List(pl.String))
    )
    assert fully_labelled(images, ["tooth", "caries"])["image_id"].to_list() == ["a", "c"]
    assert fully_labelled(images, ["tooth"])["image_id"].to_list() == ["a", "b", "c"]
    assert fully_labelled(images.drop("covers"), ["caries"]).height == 3
