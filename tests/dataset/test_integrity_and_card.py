"""Referential integrity (no orphans, images unchanged) and the dataset card."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from mmoral_pipeline.dataset.assemble import assemble_samples
from mmoral_pipeline.dataset.card import card_markdown, distribution_png, distributions, write_card
from mmoral_pipeline.dataset.integrity import check_integrity, report_markdown

from .world import SOURCES, build_world, generated


def _samples(world) -> pl.DataFrame:
    return assemble_samples(generated(world), world.tables["raw_images"], val_fraction=0.2, holdout_fraction=0.25)[0]


def test_clean_world_has_no_orphans(world) -> None:
    report = check_integrity(_samples(world), world.read)
    assert report.ok, report.problems
    assert report.images_checked == sum(SOURCES.values())
    assert "| none | 0 |" in report_markdown(report)


def test_orphans_and_changed_images_are_found(tmp_path: Path) -> None:
    w = build_world(tmp_path)
    samples = _samples(w)
    victim = samples.filter(pl.col("task_type") == "dialogue").row(0, named=True)
    w.tables["dialogues"] = w.tables["dialogues"].filter(pl.col("item_id") != victim["item_id"])
    w.tables["raw_annotations"] = w.tables["raw_annotations"].filter(pl.col("annotation_id") != "srcA-img02-caries36")
    changed = samples.filter(pl.col("image_id") == "srcB-img01")["image_path"][0]
    Path(changed).write_bytes(Path(changed).read_bytes() + b"x")
    gone = samples.filter(pl.col("image_id") == "srcB-img02")["image_path"][0]
    Path(gone).unlink()
    w.tables["image_attributes"] = w.tables["image_attributes"].filter(pl.col("image_id") != "srcA-img05")
    report = check_integrity(samples, w.read)
    assert not report.ok
    assert report.problems == {
        "orphan_generation_row": 1,
        "orphan_annotation": 1,
        "image_sha256_changed": 1,
        "image_path_missing": 1,
        "orphan_attribute_row": samples.filter(pl.col("image_id") == "srcA-img05").height,
    }
    assert victim["sample_id"] in report.examples["orphan_generation_row"][0]


def test_missing_table_fails_the_check(world) -> None:
    def read(name: str):
        return None if name == "image_attributes" else world.read(name)

    report = check_integrity(_samples(world), read)
    assert not report.ok and report.missing_tables == ["image_attributes"]


def test_card_counts_and_figure(world, tmp_path: Path) -> None:
    samples = _samples(world)
    dist = distributions(samples)
    assert sum(dist["split"].values()) == sum(dist["task"].values()) == sum(dist["source"].values()) == samples.height
    assert dist["dimension"]["Teeth"] == samples.filter(pl.col("dimensions").list.contains("Teeth")).height
    png = distribution_png(samples)
    assert png[:4] == b"\x89PNG"
    md = card_markdown(
        samples,
        config={"dataset": {"holdout_fraction": 0.25}},
        code_versions={"exports": "export-v1", "git_commit": "abc"},
        assembly_stats={"exact_duplicates": 1},
        figure="dataset_card.png",
    )
    assert f"**{samples.height} samples**" in md and "holdout_fraction" in md and "export-v1" in md
    assert "| vqa_closed |" in md and "| report | v-abc123 | offline |" in md
    assert "| rule:tooth_at_point | rules-v1 | rules |" in md
    written = write_card(tmp_path, md, png)
    assert (tmp_path / "DATASET_CARD.md").read_text() == md and (tmp_path / "dataset_card.png") in written
