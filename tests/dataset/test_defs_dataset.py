"""The Dagster shell: instruction_samples + checks + exports + card materialise in process; sample_lineage job."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from mmoral_pipeline.dataset.assemble import GENERATION_TABLES
from mmoral_pipeline.defs.dataset import dataset_assets, dataset_checks, dataset_jobs
from mmoral_pipeline.defs.io_manager import ParquetIOManager, read_table
from mmoral_pipeline.defs.partitions import batch_partitions

from .world import SOURCES, build_world


def _stub(name: str) -> dg.AssetsDefinition:
    """Stand-in for an upstream partitioned table (already on disk), so only the dataset stage runs."""

    @dg.asset(name=name, partitions_def=batch_partitions, group_name="upstream")
    def _table() -> pl.DataFrame:
        raise AssertionError("upstream stubs are never materialised here")

    return _table


def _recorded(instance: dg.DagsterInstance) -> None:
    """The world's upstream files as materialisations on the instance (the gate reads only recorded batches)."""
    for name in UPSTREAM:
        for part in SOURCES:
            instance.report_runless_asset_event(dg.AssetMaterialization(name, partition=part))


UPSTREAM = (*GENERATION_TABLES, "raw_images", "image_attributes", "raw_annotations")


def _stubs() -> list[dg.AssetsDefinition]:
    # expert_annotations: declared by referential_integrity, never materialised in this world (no experts)
    return [_stub(n) for n in (*UPSTREAM, "expert_annotations")]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory):
    tmp = Path(tmp_path_factory.mktemp("defs"))
    world = build_world(tmp)
    world.write()
    mp = pytest.MonkeyPatch()
    mp.setenv("MMORAL_HOME", str(world.home))
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("batches", list(SOURCES))
    _recorded(instance)
    stubs = _stubs()
    result = dg.materialize(
        [*stubs, *dataset_assets, *dataset_checks],
        selection=[k for a in dataset_assets for k in a.keys],
        resources={"io_manager": ParquetIOManager(str(world.home))},
        instance=instance,
        run_config={"ops": {"instruction_samples": {"config": {"val_fraction": 0.2, "holdout_fraction": 0.25}},
                            "bench_tsv_export": {"config": {"image_max_side": 48}}}},
    )
    yield world, instance, result, stubs
    mp.undo()


def test_assets_and_checks_materialise(run) -> None:
    world, _, result, _ = run
    assert result.success
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {
        "split_disjoint": True,
        "copies_across_sources": True,
        "rows_accounted": True,
        "referential_integrity": True,
    }
    samples = read_table("instruction_samples", base_dir=str(world.home))
    assert samples.height > 0 and set(samples["split"]) == {"train", "val", "bench"}
    meta = result.asset_materializations_for_node("instruction_samples")
    meta = next(m for m in meta if m.asset_key == dg.AssetKey("instruction_samples")).metadata
    assert meta["exact_duplicates_removed"].value == 1 and meta["near_duplicates_removed"].value == 1
    assert meta["dagster/row_count"].value == samples.height
    assert meta["partitions_used"].value == len(SOURCES) and meta["partitions_left_out"].value == {}
    dropped = read_table("dropped_samples", base_dir=str(world.home))
    assert sorted(dropped.filter(pl.col("action") == "dropped")["reason"].to_list()) == [
        "exact_duplicate",
        "invalid",
        "near_duplicate",
    ]
    kept = dropped.filter(pl.col("reason") == "exact_duplicate")["kept_id"][0]
    assert kept in set(samples["sample_id"])  # a duplicate row names the sample kept in its place
    balance = (
        next(e for e in result.get_asset_check_evaluations() if e.check_name == "rows_accounted")
        .metadata["balance"]
        .value
    )
    assert balance["vqa_items"] == {
        "in": world.tables["vqa_items"].height,
        "out": balance["vqa_items"]["out"],
        "dropped": 3,
        "ok": True,
    }
    exports = world.home / "exports"
    for rel in ("llamafactory/mmoral_train.json", "llamafactory/mmoral_val.json", "llamafactory/dataset_info.json",
                "trl/train.jsonl", "trl/val.jsonl", "trl/hf_dataset/dataset_dict.json", "holdout/closed_ended.tsv",
                "holdout/open_ended.tsv", "DATASET_CARD.md", "dataset_card.png"):
        assert (exports / rel).exists(), rel
    n_train = samples.filter(pl.col("split") == "train").height
    assert len((exports / "trl" / "train.jsonl").read_text().splitlines()) == n_train
    card = (exports / "DATASET_CARD.md").read_text()
    assert f"**{samples.height} samples**" in card and '"holdout_fraction": 0.25' in card and "exact_duplicates" in card
    card_meta = result.asset_materializations_for_node("dataset_card")[0].metadata
    assert "data:image/png;base64," in card_meta["distributions"].value


def test_only_registered_recorded_batches_are_read(tmp_path: Path) -> None:
    """A registered batch without a recorded materialisation, and files of a batch no longer registered,
    are on disk but never reach instruction_samples; the metadata says which batch was left out and why."""
    world = build_world(tmp_path)
    world.write()
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("batches", [*SOURCES, "ghost"])
    _recorded(instance)
    extra = (
        world.tables["vqa_items"]
        .filter(pl.col("partition") == "srcA")
        .with_columns(question=pl.col("question") + " (extra)")
    )
    extra.with_columns(partition=pl.lit("ghost")).write_parquet(world.home / "vqa_items" / "ghost.parquet")
    extra.with_columns(partition=pl.lit("gone")).write_parquet(
        world.home / "vqa_items" / "gone.parquet"
    )  # not registered
    result = dg.materialize([*_stubs(), *dataset_assets], selection=["instruction_samples", "dropped_samples"],
                            resources={"io_manager": ParquetIOManager(str(world.home))}, instance=instance)
    samples = read_table("instruction_samples", base_dir=str(world.home))
    assert (
        set(samples["partition"]) == set(SOURCES)
        and not samples["question"].str.contains("(extra)", literal=True).any()
    )
    meta = next(
        m
        for m in result.asset_materializations_for_node("instruction_samples")
        if m.asset_key.path == ["instruction_samples"]
    ).metadata
    assert meta["partitions_left_out"].value == {"ghost": "reports was never materialised for it"}
    assert "| ghost |" in meta["partitions_left_out_table"].value


def test_sample_lineage_job(run) -> None:
    world, instance, _, _ = run
    samples = read_table("instruction_samples", base_dir=str(world.home))
    sid = samples.filter(pl.col("task_type") == "dialogue")["sample_id"][0]
    defs = dg.Definitions(jobs=dataset_jobs, resources={"io_manager": ParquetIOManager(str(world.home))})
    job = defs.get_job_def("sample_lineage")
    result = job.execute_in_process(
        run_config={"ops": {"trace_sample": {"config": {"sample_id": sid}}}}, instance=instance
    )
    assert result.success
    obs = [
        e.event_specific_data.asset_observation for e in result.all_events if e.event_type_value == "ASSET_OBSERVATION"
    ]
    assert len(obs) == 1
    md = obs[0].metadata["lineage"].value
    assert sid in md and "### Raw image" in md and "Raw response" in md
    chain = obs[0].metadata["chain"].value
    assert chain["image"]["sha256_matches"] is True and chain["problems"] == []
    bad = job.execute_in_process(
        run_config={"ops": {"trace_sample": {"config": {"sample_id": "nope"}}}}, instance=instance, raise_on_error=False
    )
    assert not bad.success
    failure = next(e for e in bad.all_events if e.event_type_value == "STEP_FAILURE")
    assert "train.jsonl" in failure.event_specific_data.error.message  # says where sample ids are found


def test_definitions_objects_are_well_formed() -> None:
    groups = {k.to_user_string(): a.group_names_by_key[k] for a in dataset_assets for k in a.keys}
    assert set(groups) == {
        "instruction_samples",
        "dropped_samples",
        "llamafactory_export",
        "trl_export",
        "bench_tsv_export",
        "dataset_card",
    }
    assert {groups["instruction_samples"], groups["dropped_samples"]} == {"dataset"}
    assert {g for k, g in groups.items() if k.endswith(("_export", "_card"))} == {"export"}
    assert all(a.descriptions_by_key.get(k) for a in dataset_assets for k in a.keys)
    assert [j.name for j in dataset_jobs] == ["sample_lineage"]
