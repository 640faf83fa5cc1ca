"""Label coverage in the attribute documents, and one document per X-ray (copies merged), as pure functions."""

from __future__ import annotations

import polars as pl

from mmoral_pipeline import tables
from mmoral_pipeline.attributes.build import build_image_attributes
from mmoral_pipeline.attributes.copies import copy_conflicts, image_copies, images_for_documents, merge_plan
from mmoral_pipeline.attributes.stage import build_attribute_tables
from mmoral_pipeline.domain.attributes import ImageAttributes
from mmoral_pipeline.domain.taxonomy import Category as C

from .helpers import ann, frames, image


def covered(img: dict, *cats: C) -> dict:
    return {**img, "covers": [c.value for c in cats]}


def test_labels_outside_coverage_are_dropped_by_name_and_coverage_is_recorded():
    images, anns = frames(
        [
            ann("t", "tooth", [100, 100, 200, 300], 36),
            ann("c", "caries", [120, 120, 160, 160]),
            ann("f", "filling", [300, 100, 340, 140]),
        ],
        [covered(image(), C.CARIES)],
    )
    res = build_image_attributes(images, anns)
    (doc,) = res.documents
    assert doc.assessed == [C.CARIES] and doc.teeth == []
    assert res.outcomes == {"t": "dropped:outside_coverage", "c": "unknown_tooth", "f": "dropped:outside_coverage"}
    assert [c.category for c in doc.unknown_tooth_findings] == [C.CARIES] and doc.unknown_tooth_findings[0].side


def test_a_frame_without_coverage_assesses_everything():
    images, anns = frames([ann("t", "tooth", [100, 100, 200, 300], 38)])
    (doc,) = build_image_attributes(images.drop("covers"), anns).documents
    assert set(doc.assessed) == set(C) and doc.teeth[0].wisdom_status == "erupted"


def test_wisdom_status_needs_impaction_labels():
    images, anns = frames([ann("t", "tooth", [100, 100, 200, 300], 38)], [covered(image(), C.TOOTH)])
    (doc,) = build_image_attributes(images, anns).documents
    assert doc.teeth[0].wisdom_status is None  # not "erupted": impaction was not looked for


def _copy_tables():
    """One X-ray (same sha256) in two batches: teeth labelled in 'a', caries in 'b' (and one caries in both)."""
    a = {**covered(image("a-x", partition="a"), C.TOOTH, C.CARIES), "source": "a", "sha256": "same"}
    b = {**covered(image("b-x", partition="b"), C.CARIES), "source": "b", "sha256": "same"}
    other = {**covered(image("b-y", partition="b"), C.CARIES), "source": "b", "sha256": "other"}
    images, _ = frames([], [a, b, other])
    anns = [
        ann("a-t36", "tooth", [100, 100, 200, 300], 36, image_id="a-x"),
        ann("a-c1", "caries", [120, 120, 160, 160], image_id="a-x"),  # the same lesion as b-c1
        ann("b-c1", "caries", [121, 121, 161, 161], image_id="b-x"),
        ann("b-c2", "caries", [130, 200, 170, 240], image_id="b-x"),  # only b saw this one
    ]
    frame = pl.DataFrame(
        [{**r, "partition": r["image_id"][0], "source": r["image_id"][0]} for r in anns], schema=tables.RAW_ANNOTATIONS
    )
    return images, frame


def test_image_copies_names_one_owner_per_xray():
    images, _ = _copy_tables()
    in_a, in_b = image_copies(images, "a"), image_copies(images, "b")
    assert in_a["image_id"].to_list() == ["a-x"] and in_a["is_owner"].to_list() == [True]
    row = in_b.row(0, named=True)
    assert (row["image_id"], row["owner_image_id"], row["owner_partition"], row["is_owner"]) == (
        "b-x",
        "a-x",
        "a",
        False,
    )
    assert row["group_covers"] == ["tooth", "caries"] and row["group_sources"] == ["a", "b"]
    assert copy_conflicts(in_b) == {"patient_key_conflicts": [], "same_source_copies": []}


def test_the_owner_builds_one_merged_document_and_the_copy_none():
    images, anns = _copy_tables()
    plan_a = merge_plan(image_copies(images, "a"), "a")
    built = build_attribute_tables(
        images_for_documents(images.filter(pl.col("partition") == "a"), plan_a), anns, owner_of=plan_a.owner_of
    )
    (row,) = built.image_attributes.rows(named=True)
    doc = ImageAttributes.model_validate_json(row["document"])
    assert row["assessed"] == ["tooth", "caries"] and row["sources"] == ["a", "b"] and row["copies"] == ["b-x"]
    (t36,) = doc.teeth
    # the caries both sources labelled is one finding citing both annotations; b's other lesion joins tooth 36 too
    assert sorted(sorted(c.annotation_ids) for c in t36.conditions) == [["a-c1", "b-c1"], ["b-c2"]]
    outcomes = dict(zip(built.annotation_outcomes["annotation_id"], built.annotation_outcomes["outcome"], strict=True))
    assert outcomes == {"a-t36": "tooth", "a-c1": "condition", "b-c1": "merged_duplicate", "b-c2": "condition"}
    assert (
        dict(
            zip(
                built.annotation_outcomes["annotation_id"],
                built.annotation_outcomes["annotation_partition"],
                strict=True,
            )
        )["b-c2"]
        == "b"
    )

    plan_b = merge_plan(image_copies(images, "b"), "b")
    assert plan_b.elsewhere == {"b-x": "a-x"}
    own_b = anns.filter(pl.col("partition") == "b")
    built_b = build_attribute_tables(
        images.filter(pl.col("partition") == "b"), own_b, copies_elsewhere=plan_b.elsewhere
    )
    assert built_b.image_attributes["image_id"].to_list() == ["b-y"]  # the copy gets no document of its own
    moved = built_b.annotation_outcomes.filter(pl.col("outcome") == "in_owner_document")
    assert sorted(moved["annotation_id"].to_list()) == ["b-c1", "b-c2"] and set(moved["image_id"]) == {"a-x"}


def test_copies_inside_one_source_merge_and_are_reported():
    a1 = {**covered(image("s-1", partition="s"), C.TOOTH), "source": "s", "sha256": "dup"}
    a2 = {**covered(image("s-2", partition="s"), C.TOOTH), "source": "s", "sha256": "dup", "patient_key": "p2"}
    a1["patient_key"] = "p1"
    images, _ = frames([], [a1, a2])
    copies = image_copies(images, "s")
    found = copy_conflicts(copies)
    assert len(found["same_source_copies"]) == 2 and found["patient_key_conflicts"][0]["patient_keys"] == ["p1", "p2"]
    plan = merge_plan(copies, "s")
    assert plan.owner_of == {"s-2": "s-1"} and plan.elsewhere == {}
    anns = pl.DataFrame(
        [
            ann("x1", "tooth", [1, 1, 50, 50], 11, image_id="s-1"),
            ann("x2", "tooth", [1, 1, 50, 50], 11, image_id="s-2"),
        ],
        schema=tables.RAW_ANNOTATIONS,
    )
    built = build_attribute_tables(images_for_documents(images, plan), anns, owner_of=plan.owner_of)
    assert built.image_attributes["image_id"].to_list() == ["s-1"] and built.tooth_attributes.height == 1
