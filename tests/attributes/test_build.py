"""The builder's accounting and the table layouts others read."""

from __future__ import annotations

import json

import polars as pl

from mmoral_pipeline.attributes import checks
from mmoral_pipeline.attributes.build import build_image_attributes
from mmoral_pipeline.attributes.frames import IMAGE_ATTRIBUTES, TOOTH_ATTRIBUTES, attribute_frames, documents_from_frame
from mmoral_pipeline.attributes.settings import AttributeSettings
from mmoral_pipeline.domain.attributes import ImageAttributes

from .helpers import ann, frames, image


def sample():
    return frames(
        [
            ann("t1", "tooth", [0, 0, 100, 100], 46, 0.9),
            ann("t2", "tooth", [0, 0, 100, 100], 46, 0.8),  # same id: merged
            ann("t3", "tooth", [200, 0, 300, 100], None, 0.9),  # no FDI number
            ann("c1", "caries", [10, 10, 20, 20], None, 0.5),
            ann("x1", "no_such_class", [10, 10, 20, 20]),
            ann("o1", "caries", [10, 10, 20, 20], image_id="ghost"),  # image not given
            ann("b1", "tooth", [0, 0, 50, 50], 11, image_id="second"),
        ],
        [image("img"), image("second"), image("empty")],
    )


def test_every_annotation_gets_exactly_one_named_outcome():
    imgs, anns = sample()
    r = build_image_attributes(imgs, anns)
    assert r.outcomes == {
        "t1": "tooth", "t2": "merged_duplicate", "t3": "dropped:tooth_without_fdi", "c1": "condition",
        "x1": "dropped:unknown_category", "o1": "dropped:image_not_found", "b1": "tooth",
    }
    assert [d.image_id for d in r.documents] == ["empty", "img", "second"]
    out = r.outcomes_frame()
    assert out.height == anns.height and out.filter(pl.col("outcome") == "condition")["tooth_id"].to_list() == [46]


def test_accounting_check_catches_a_lost_annotation():
    imgs, anns = sample()
    r = build_image_attributes(imgs, anns)
    image_frame, _ = attribute_frames(r.documents, imgs, rules_version="v", settings_hash="s")
    ok = checks.finding_accounting(anns, r.outcomes_frame(), image_frame)
    assert ok["passed"] and ok["raw"] == ok["accounted"] == 7
    lost = checks.finding_accounting(anns, r.outcomes_frame().filter(pl.col("annotation_id") != "c1"), image_frame)
    assert not lost["passed"] and lost["missing"] == ["c1"]
    doubled = checks.finding_accounting(anns, pl.concat([r.outcomes_frame(), r.outcomes_frame().head(1)]), image_frame)
    assert not doubled["passed"] and doubled["twice"] == [r.outcomes_frame()["annotation_id"][0]]
    # a kept annotation that no document mentions is a lineage break
    stripped = image_frame.with_columns(pl.col("document").str.replace('"c1"', '"zz"'))
    assert checks.finding_accounting(anns, r.outcomes_frame(), stripped)["kept_not_in_documents"] == ["c1"]


def test_tooth_checks_find_bad_rows():
    imgs, anns = sample()
    r = build_image_attributes(imgs, anns)
    _, teeth = attribute_frames(r.documents, imgs, rules_version="v", settings_hash="s")
    assert checks.invalid_teeth(teeth).height == 0 and checks.repeated_teeth(teeth).height == 0
    bad = pl.concat([teeth, teeth.head(1).with_columns(pl.lit(19, dtype=pl.Int64).alias("tooth_id"))])
    assert checks.invalid_teeth(bad)["problem"].to_list() == ["not an FDI tooth"]
    wrong_side = teeth.head(1).with_columns(pl.lit("upper left").alias("side"))
    assert checks.invalid_teeth(wrong_side).height == 1
    assert checks.repeated_teeth(pl.concat([teeth, teeth.head(1)])).height == 1


def test_table_layouts_and_hashes():
    imgs, anns = sample()
    r = build_image_attributes(imgs, anns)
    image_frame, teeth = attribute_frames(r.documents, imgs, rules_version="v", settings_hash="s")
    assert image_frame.schema == pl.Schema(IMAGE_ATTRIBUTES) and teeth.schema == pl.Schema(TOOTH_ATTRIBUTES)
    for row, doc in zip(image_frame.iter_rows(named=True), r.documents, strict=True):
        assert row["attribute_row_hash"] == doc.content_hash()
        assert ImageAttributes.model_validate(json.loads(row["document"])) == doc
        assert row["partition"] == "p" and row["path"].endswith(".png")
    assert documents_from_frame(image_frame) == r.documents
    row = teeth.row(0, named=True)
    assert row["tooth_id"] == 46 and row["annotation_ids"] == ["t1", "t2"] and row["center"] == [50.0, 50.0]
    assert row["conditions"][0]["category"] == "caries" and row["conditions"][0]["annotation_ids"] == ["c1"]
    empty_images, empty_teeth = attribute_frames([], imgs, rules_version="v", settings_hash="s")
    assert empty_images.height == 0 and empty_teeth.schema == pl.Schema(TOOTH_ATTRIBUTES)


def test_chunked_stage_equals_whole_batch():
    from mmoral_pipeline.attributes.stage import build_attribute_tables
    from mmoral_pipeline.attributes.synth_tables import cases_to_tables
    from mmoral_pipeline.attributes.versions import RULES_VERSION
    from mmoral_pipeline.synth import case_for

    images, anns = cases_to_tables([case_for(3, i, 700, 350) for i in range(5)], scores=True)
    ghost = anns.head(2).with_columns(pl.lit("ghost").alias("image_id"), pl.Series("annotation_id", ["g1", "g2"]))
    anns = pl.concat([anns, ghost])
    whole = build_image_attributes(images, anns)
    image_frame, teeth = attribute_frames(whole.documents, images, rules_version=RULES_VERSION,
                                          settings_hash=AttributeSettings().settings_hash())
    chunked = build_attribute_tables(images, anns, chunk_images=2)
    assert chunked.image_attributes.equals(image_frame)
    assert chunked.tooth_attributes.equals(teeth)
    assert sorted(chunked.annotation_outcomes.drop("annotation_partition").rows()) == sorted(
        whole.outcomes_frame().rows()
    )
    assert (
        chunked.annotation_outcomes["annotation_partition"].to_list() == ["synth"] * anns.height
    )  # where each came from
    assert chunked.outcome_counts()["dropped:image_not_found"] == 2
