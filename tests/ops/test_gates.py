"""The gates through the real pipeline (`mmoral materialize`'s code path, a job, the automation condition)
on a temporary instance, with synthetic sources written in real formats:

1. Blocking means blocking: a batch whose side check fails after an earlier passing run, and a batch whose
   generation run fails, are left out of instruction_samples although their earlier files are on disk;
   the report and the metadata say why.
2. Split by content: a second source holding re-encoded, resized copies of the first source's X-rays
   lands in the same splits; configured to group less, the split separates copies and split_disjoint fails
   and blocks the exports.
"""

import json
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import yaml
from PIL import Image

from mmoral_pipeline.defs.io_manager import read_table
from mmoral_pipeline.materialize import format_left_out, materialize
from mmoral_pipeline.synth import generate

SMALL = {"width": 500, "height": 250, "scores": True, "polygons": False}
BATCHES = 'group:"ingest" or group:"attributes" or group:"generation"'
DATASET = 'group:"dataset"'  # instruction_samples, dropped_samples and their checks
PIPELINE = f"{BATCHES} or {DATASET}"
EXPORT = f'{DATASET} or key:"llamafactory_export"'  # one export is enough to see the block (no HF dataset to write)


def _sources(tmp: Path, sources: list[dict]) -> Path:
    path = tmp / "sources.yaml"
    path.write_text(yaml.safe_dump({"sources": sources}))
    return path


def _samples_by_source(home: Path) -> dict[str, int]:
    samples = read_table("instruction_samples", base_dir=str(home))
    return dict(samples.group_by("source").len().iter_rows())


@pytest.fixture()
def env(tmp_path: Path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("MMORAL_HOME", str(home))
    monkeypatch.setenv("MMORAL_SOURCES", str(tmp_path / "sources.yaml"))  # materialize() sets it: restored after
    with dg.instance_for_test() as instance:
        yield tmp_path, home, instance


def test_failed_batches_are_left_out_of_every_fan_in(env):
    tmp, home, instance = env
    generate(n=3, seed=31, out=tmp / "alpha", fmt="coco", **SMALL)
    generate(n=3, seed=32, out=tmp / "beta", fmt="coco", **SMALL)
    spec = [{"name": "alpha", "format": "coco", "root": "alpha", "options": {"score_field": "score"}},
            {"name": "beta", "format": "coco", "root": "beta", "options": {"score_field": "score"}}]
    sources = _sources(tmp, spec)
    first = materialize(selection=PIPELINE, sources_path=str(sources), instance=instance, log=lambda *_: None)
    assert first.ok and first.left_out == {}
    assert set(_samples_by_source(home)) == {"alpha", "beta"}

    # beta's labels change so that its side check fails (its earlier, passing files stay on disk)
    spec[1]["options"]["quadrant_map"] = {1: 2, 2: 1, 3: 4, 4: 3}
    sources = _sources(tmp, spec)
    second = materialize(selection=PIPELINE, sources_path=str(sources), instance=instance, log=lambda *_: None)
    assert second.failed == ["beta"]
    assert any(c.check == "fdi_side_consistency" and c.partition == "beta" and not c.passed for c in second.checks)
    assert (home / "reports" / "beta.parquet").exists()  # the stale files are there ...
    assert set(_samples_by_source(home)) == {"alpha"}  # ... and were not read
    why = second.left_out["instruction_samples"]["beta"]
    assert "blocking check raw_annotations.fdi_side_consistency failed" in why
    assert "beta: blocking check raw_annotations.fdi_side_consistency failed" in format_left_out(second)
    assert not [
        k for k in second.left_out if k != "instruction_samples"
    ]  # exports read instruction_samples, not batches
    mat = instance.get_latest_materialization_event(dg.AssetKey("instruction_samples")).asset_materialization
    assert mat.metadata["partitions_left_out"].value == {"beta": why}
    assert mat.metadata["partitions_used"].value == 1

    # labels fixed, but beta's generation run fails: its earlier reports must not come back either
    del spec[1]["options"]["quadrant_map"]
    sources = _sources(tmp, spec)
    from mmoral_pipeline.definitions import defs

    broken = {"ops": {"generate_instructions": {"config": {"dialogue_turns": 3}}}}  # GenerationSettings refuses < 8
    result = dg.materialize(
        list(defs.assets) + list(defs.asset_checks),
        selection=dg.AssetSelection.from_string(BATCHES),
        partition_key="beta",
        instance=instance,
        resources=dict(defs.resources),
        run_config=broken,
        raise_on_error=False,
    )
    assert not result.success
    assert {c.check_name: c.passed for c in result.get_asset_check_evaluations()}["fdi_side_consistency"]
    third = materialize(selection=DATASET, sources_path=str(sources), instance=instance, log=lambda *_: None)
    assert set(_samples_by_source(home)) == {"alpha"}
    assert "(failure) did not materialise" in third.left_out["instruction_samples"]["beta"]

    # the same gate whatever starts the run: here the regenerate_dataset job, for the dataset assets only
    job = defs.resolve_job_def("regenerate_dataset")
    keys = [dg.AssetKey("instruction_samples"), dg.AssetKey("dropped_samples")]
    assert job.execute_in_process(instance=instance, asset_selection=keys).success
    assert set(_samples_by_source(home)) == {"alpha"}

    # beta's batch run succeeds again: it is read again
    assert dg.materialize(list(defs.assets) + list(defs.asset_checks), selection=dg.AssetSelection.from_string(BATCHES),
                          partition_key="beta", instance=instance, resources=dict(defs.resources)).success
    fourth = materialize(selection=DATASET, sources_path=str(sources), instance=instance, log=lambda *_: None)
    assert fourth.ok and fourth.left_out == {}
    assert set(_samples_by_source(home)) == {"alpha", "beta"}


def _reencoded_copy(src: Path, out: Path, scale: float = 0.9, quality: int = 60) -> None:
    """Every image of a COCO folder re-encoded (JPEG quality) and resized, boxes scaled to match."""
    doc = json.loads((src / "annotations.json").read_text())
    (out / "images").mkdir(parents=True)
    for im in doc["images"]:
        with Image.open(src / "images" / im["file_name"]) as pic:
            w, h = round(pic.width * scale), round(pic.height * scale)
            pic.convert("L").resize((w, h)).save(out / "images" / im["file_name"], quality=quality)
        im["width"], im["height"] = w, h
    for ann in doc["annotations"]:
        ann["bbox"] = [v * scale for v in ann["bbox"]]
        ann.pop("segmentation", None)
        ann.pop("area", None)
    (out / "annotations.json").write_text(json.dumps(doc))


def test_reencoded_copies_share_a_split_and_split_disjoint_can_fail(env):
    tmp, home, instance = env
    generate(n=6, seed=41, out=tmp / "orig", fmt="coco", **SMALL)
    _reencoded_copy(tmp / "orig", tmp / "copy")
    sources = _sources(tmp, [{"name": "orig", "format": "coco", "root": "orig", "options": {"score_field": "score"}},
                             {"name": "copy", "format": "coco", "root": "copy", "options": {"score_field": "score"}}])
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    assert materialize(selection=BATCHES, sources_path=str(sources), instance=instance, log=lambda *_: None).ok
    images = read_table("raw_images", base_dir=str(home), partitions=["orig", "copy"])
    assert images["sha256"].n_unique() == 12  # no exact copy: only the perceptual hash can link them

    split = {"val_fraction": 0.2, "holdout_fraction": 0.5}
    report = materialize(selection=EXPORT, sources_path=str(sources), instance=instance, log=lambda *_: None,
                         run_config={**quiet, "ops": {"instruction_samples": {"config": split}}})
    checks = {c.check: c for c in report.checks}
    assert checks["split_disjoint"].passed and not checks["copies_across_sources"].passed  # a warning: 6 copies
    samples = read_table("instruction_samples", base_dir=str(home))
    per_image = samples.unique("image_id").select("image_id", "split", "split_group")
    by_name = {
        r["image_id"].split("-", 1)[1]: r for r in per_image.iter_rows(named=True) if r["image_id"].startswith("orig-")
    }
    for r in per_image.iter_rows(named=True):
        if r["image_id"].startswith("copy-"):
            twin = by_name[r["image_id"].split("-", 1)[1]]
            assert (r["split"], r["split_group"]) == (twin["split"], twin["split_group"])
    assert set(per_image["split"]) >= {"train", "bench"}
    assert (home / "exports" / "llamafactory" / "mmoral_train.json").exists()

    # grouping only exact copies (distance 0): copies land in different splits, the check fails and blocks
    (home / "exports").rename(home / "exports_before")
    report = materialize(
        selection=EXPORT,
        sources_path=str(sources),
        instance=instance,
        log=lambda *_: None,
        run_config={**quiet, "ops": {"instruction_samples": {"config": {**split, "near_duplicate_max_distance": 0}}}},
    )
    failed = next(c for c in report.checks if c.check == "split_disjoint")
    assert not failed.passed and "phash" in failed.description
    assert not (home / "exports" / "llamafactory").exists()
    evaluation = instance.get_latest_asset_check_evaluation_record(
        dg.AssetCheckKey(dg.AssetKey("instruction_samples"), "split_disjoint")
    )
    meta = evaluation.evaluation.metadata
    assert meta["pairs_by_kind"].value["phash"] == meta["image_pairs_across_splits"].value >= 1
    assert all(e["kind"] == "phash" and e["phash_distance"] <= 24 for e in meta["examples"].value)
    assert pl.read_parquet(home / "instruction_samples.parquet").height == samples.height
