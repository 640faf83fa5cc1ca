"""Jobs, schedule, raw-data sensor and derived-asset automation, evaluated in process on temporary instances."""

import datetime as dt
import json
import os
from pathlib import Path

import dagster as dg
import pytest
import yaml

from mmoral_pipeline.config import load_sources
from mmoral_pipeline.defs import automation
from mmoral_pipeline.defs.automation import (
    batch_fingerprints,
    derived_assets_automation,
    raw_data_sensor,
    weekly_regeneration,
)
from mmoral_pipeline.defs.partitions import BATCHES, batch_partitions
from mmoral_pipeline.defs.resources import SourcesResource
from mmoral_pipeline.synth import generate

from .helpers import full_definitions

SMALL = {"width": 400, "height": 200}


@pytest.fixture()
def sources_file(tmp_path: Path) -> Path:
    generate(n=3, seed=1, out=tmp_path / "alpha", fmt="coco", **SMALL)
    generate(n=4, seed=2, out=tmp_path / "beta", fmt="coco", **SMALL)
    doc = {
        "sources": [
            {"name": "alpha", "format": "coco", "root": "alpha"},
            {"name": "beta", "format": "coco", "root": "beta", "shard_size": 2},
        ]
    }
    path = tmp_path / "sources.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _tick(instance, sources_file: Path, cursor: str | None):
    """One sensor evaluation; applies the partition requests the way the daemon would."""
    # as a context manager: the context enters an instance for its resources, and only its exit
    # resets Dagster's current defs-state storage (left dangling, it breaks later tests)
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"sources": SourcesResource(path=str(sources_file))}
    ) as ctx:
        result = raw_data_sensor(ctx)
    assert isinstance(result, dg.SensorResult)
    added = []
    for req in result.dynamic_partitions_requests or []:
        assert isinstance(req, dg.AddDynamicPartitionsRequest) and req.partitions_def_name == BATCHES
        instance.add_dynamic_partitions(BATCHES, list(req.partition_keys))
        added += list(req.partition_keys)
    requested = {r.partition_key: r.tags["mmoral/change"] for r in result.run_requests}
    return result.cursor, requested, added


def _bump_mtime(path: Path, seconds: int = 10) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + seconds * 1_000_000_000))


def test_sensor_registers_new_batches_and_requests_only_changed_ones(sources_file: Path, tmp_path: Path):
    with dg.instance_for_test() as instance:
        cursor, requested, added = _tick(instance, sources_file, None)
        assert added == ["alpha", "beta__0000", "beta__0001"]
        assert requested == {"alpha": "new", "beta__0000": "new", "beta__0001": "new"}

        cursor, requested, added = _tick(instance, sources_file, cursor)
        assert (requested, added) == ({}, [])

        # two more images in alpha (the generator is deterministic: the first three are the same)
        generate(n=5, seed=1, out=tmp_path / "alpha", fmt="coco", **SMALL)
        cursor, requested, added = _tick(instance, sources_file, cursor)
        assert (requested, added) == ({"alpha": "changed"}, [])

        # one image of the second shard of beta touched: that shard only
        img = sorted((tmp_path / "beta" / "images").glob("*.jpg"))[3]
        _bump_mtime(img)
        cursor, requested, added = _tick(instance, sources_file, cursor)
        assert (requested, added) == ({"beta__0001": "changed"}, [])

        # a new source in the sources file: registered and run, nothing else
        generate(n=2, seed=3, out=tmp_path / "gamma", fmt="coco", **SMALL)
        doc = yaml.safe_load(sources_file.read_text())
        doc["sources"].append({"name": "gamma", "format": "coco", "root": "gamma"})
        sources_file.write_text(yaml.safe_dump(doc))
        cursor, requested, added = _tick(instance, sources_file, cursor)
        assert (requested, added) == ({"gamma": "new"}, ["gamma"])
        assert instance.get_dynamic_partitions(BATCHES) == ["alpha", "beta__0000", "beta__0001", "gamma"]
        assert set(json.loads(cursor)["fingerprints"]) == {"alpha", "beta__0000", "beta__0001", "gamma"}


def test_sensor_switched_on_over_ingested_data_runs_only_what_is_missing(sources_file: Path):
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(BATCHES, ["alpha", "beta__0000"])
        instance.report_runless_asset_event(dg.AssetMaterialization("raw_images", partition="alpha"))
        _, requested, added = _tick(instance, sources_file, None)
        # beta__0000 is registered but never ingested; beta__0001 is not even registered
        assert requested == {"beta__0000": "new", "beta__0001": "new"}
        assert added == ["beta__0001"]


def test_shard_fingerprints_follow_their_items(sources_file: Path, tmp_path: Path):
    sf = load_sources(sources_file)
    before = batch_fingerprints(sf)
    _bump_mtime(sorted((tmp_path / "beta" / "images").glob("*.jpg"))[0])
    after = batch_fingerprints(sf)
    assert before["alpha"] == after["alpha"]
    assert before["beta__0000"] != after["beta__0000"]
    assert before["beta__0001"] == after["beta__0001"]
    # the shared annotation file belongs to every shard of its source
    _bump_mtime(tmp_path / "beta" / "annotations.json")
    again = batch_fingerprints(sf)
    assert again["beta__0000"] != after["beta__0000"] and again["beta__0001"] != after["beta__0001"]
    assert again["alpha"] == after["alpha"]
    # a setting of the source (its class map) changes its batches too
    doc = yaml.safe_load(sources_file.read_text())
    doc["sources"][0]["options"] = {"class_map": {"caries": "caries"}}
    sources_file.write_text(yaml.safe_dump(doc))
    assert batch_fingerprints(load_sources(sources_file))["alpha"] != again["alpha"]


def test_jobs_cover_the_data_assets_and_never_training():
    defs = full_definitions()
    repo = defs.get_repository_def()
    graph = repo.asset_graph
    groups = {k: graph.get(k).group_name for k in graph.get_all_asset_keys()}
    training = {k for k, g in groups.items() if g == "training"}
    assert dg.AssetKey("sft_model") in training
    downstream_of_training = dg.AssetSelection.groups("training").downstream().resolve(graph) | dg.AssetSelection.tag(
        *automation.TRAINING_TAG  # training an expert: the asset, not what it labels
    ).resolve(graph)
    assert dg.AssetKey("expert_model") in downstream_of_training
    assert dg.AssetKey("expert_annotations") not in downstream_of_training

    regenerate = set(repo.get_job("regenerate_dataset").asset_layer.selected_asset_keys)
    per_batch = set(repo.get_job("process_batches").asset_layer.selected_asset_keys)
    expected_data = {k for k, g in groups.items() if g in automation.DATA_GROUPS} - downstream_of_training
    assert regenerate == expected_data
    assert {dg.AssetKey("raw_images"), dg.AssetKey("raw_annotations"), dg.AssetKey("rejected_inputs")} <= per_batch
    assert per_batch <= regenerate
    assert all(graph.get(k).partitions_def == batch_partitions for k in per_batch)
    assert repo.get_job("process_batches").partitions_def == batch_partitions

    # no job, schedule or sensor of the repository can start training
    for job in repo.get_all_jobs():
        if job.name.startswith("__ASSET_JOB"):
            continue
        assert not (set(job.asset_layer.selected_asset_keys) & downstream_of_training), job.name
    assert not (automation.derived_assets.resolve(graph) & downstream_of_training)
    for node in graph.asset_nodes:
        if node.key in downstream_of_training:
            assert node.automation_condition is None, node.key
    sensor_names = {s.name for s in repo.sensor_defs}
    assert {"raw_data_sensor", "derived_assets_automation"} <= sensor_names
    assert {s.name for s in repo.schedule_defs} >= {"weekly_regeneration"}


def test_weekly_schedule_requests_every_registered_batch(sources_file: Path):
    defs = full_definitions()
    repo = defs.get_repository_def()
    per_batch = set(repo.get_job("process_batches").asset_layer.selected_asset_keys)
    with dg.instance_for_test() as instance:
        with dg.build_schedule_context(
            instance=instance,
            scheduled_execution_time=dt.datetime(2026, 11, 30, 3, 0, tzinfo=dt.UTC),
            repository_def=repo,
            resources={"sources": SourcesResource(path=str(sources_file))},
        ) as ctx:
            skipped = weekly_regeneration(ctx)
            assert isinstance(skipped, dg.SkipReason)

            # "old" is registered but no longer in the sources file: not requested (it would fail)
            instance.add_dynamic_partitions(BATCHES, ["alpha", "beta__0000", "beta__0001", "old"])
            requests = weekly_regeneration(ctx)
        assert [r.partition_key for r in requests] == ["alpha", "beta__0000", "beta__0001"]
        for r in requests:
            assert set(r.asset_selection) == per_batch
            assert r.run_key.startswith("weekly:2026-11-30T03:00:")
    assert weekly_regeneration.job_name == "regenerate_dataset"
    assert weekly_regeneration.cron_schedule == automation.WEEKLY_CRON


# --------------------------------------------------------------------------- derived-asset automation


def _tiny_graph():
    @dg.asset(partitions_def=batch_partitions, group_name="ingest")
    def raw_images():
        return 1

    @dg.asset(group_name="generation", deps=[raw_images], partitions_def=batch_partitions)
    def dialogues():
        return 1

    @dg.asset(group_name="export", deps=[dialogues])
    def dataset_card():
        return 1

    @dg.asset_check(asset=dataset_card, blocking=True)
    def card_not_empty():
        return dg.AssetCheckResult(passed=True)

    @dg.asset(group_name="training", deps=[dataset_card])
    def sft_model():
        return 1

    @dg.asset(group_name="evaluation", deps=[sft_model])
    def benchmark_results():
        return 1

    return dg.Definitions(
        assets=[raw_images, dialogues, dataset_card, sft_model, benchmark_results],
        asset_checks=[card_not_empty],
        sensors=[derived_assets_automation],
    )


class _AutomationTicks:
    def __init__(self, instance, defs: dg.Definitions):
        self.instance = instance
        self.repo = defs.get_repository_def()
        self.cursor = None

    def __call__(self) -> set[str]:
        """Names of the assets and checks requested on this tick (all in one run request)."""
        with dg.build_sensor_context(instance=self.instance, repository_def=self.repo, cursor=self.cursor) as ctx:
            data = derived_assets_automation.evaluate_tick(ctx)
        self.cursor = data.cursor
        assert len(data.run_requests) <= 1
        names = set()
        for r in data.run_requests:
            names |= {k.to_user_string() for k in r.asset_selection or []}
            names |= {k.name for k in r.asset_check_keys or []}
        return names


def _done(instance, asset: str, partition: str | None = None) -> None:
    instance.report_runless_asset_event(dg.AssetMaterialization(asset, partition=partition))


def test_derived_assets_follow_their_upstream_with_their_checks():
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(BATCHES, ["x", "y"])
        tick = _AutomationTicks(instance, _tiny_graph())
        assert tick() == set()  # upstream missing: wait

        _done(instance, "raw_images", "x"), _done(instance, "raw_images", "y"), _done(instance, "dialogues", "x")
        assert tick() == set()  # one batch of dialogues still missing

        _done(instance, "dialogues", "y")
        assert tick() == {"dataset_card", "card_not_empty"}  # the asset and its check, one run
        _done(instance, "dataset_card")
        assert tick() == set()  # up to date

        # a changed prompt made dialogues stale; re-running one batch of them updates the card
        _done(instance, "dialogues", "x")
        assert tick() == {"dataset_card", "card_not_empty"}
        _done(instance, "dataset_card")
        # training and what needs a trained model are never requested, whatever happened upstream
        for _ in range(2):
            assert not ({"sft_model", "benchmark_results"} & tick())


def test_a_failed_blocking_check_holds_back_what_reads_the_asset():
    """Blocking across runs: after instruction_samples' blocking check failed, the export is not requested,
    whatever updated; once the check passes on a new materialisation, it is."""

    @dg.asset(group_name="dataset")
    def instruction_samples():
        return 1

    @dg.asset_check(asset=instruction_samples, blocking=True)
    def split_disjoint():
        return dg.AssetCheckResult(passed=True)

    @dg.asset(group_name="export", deps=[instruction_samples])
    def trl_export():
        return 1

    defs = dg.Definitions(
        assets=[instruction_samples, trl_export], asset_checks=[split_disjoint], sensors=[derived_assets_automation]
    )
    check = dg.AssetCheckKey(dg.AssetKey("instruction_samples"), "split_disjoint")

    def evaluated(passed: bool) -> None:
        instance.report_runless_asset_event(
            dg.AssetCheckEvaluation(asset_key=check.asset_key, check_name=check.name, passed=passed)
        )

    with dg.instance_for_test() as instance:
        tick = _AutomationTicks(instance, defs)
        tick()
        _done(instance, "instruction_samples")
        evaluated(True)
        _done(instance, "trl_export")
        assert tick() == set()
        _done(instance, "instruction_samples")  # a new assembly, whose split check fails
        evaluated(False)
        assert "trl_export" not in tick()
        assert "trl_export" not in tick()
        _done(instance, "instruction_samples")  # fixed: the check passes on the new materialisation
        evaluated(True)
        assert "trl_export" in tick()
