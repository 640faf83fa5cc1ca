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


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory):
    tmp = Path(tmp_path_factory.mktemp("defs"))
    world = build_world(tmp)
    world.write()
    mp = pytest.MonkeyPatch()
    mp.setenv("MMORAL_HOME", str(world.home))
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("batches", list(SOURCES))
    stubs = [_stub(n) for n in (*GENERATION_TABLES, "raw_images")]
    result = dg.materialize(
        [*stubs, *dataset_assets, *dataset_checks],
        selection=[a.key for a in dataset_assets],
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
    assert checks == {"split_disjoint": True, "referential_integrity": True}
    samples = read_table("instruction_samples", base_dir=str(world.home))
    assert samples.height > 0 and set(samples["split"]) == {"train", "val", "bench"}
    meta = result.asset_materializations_for_node("instruction_samples")[0].metadata
    assert meta["exact_duplicates_removed"].value == 1 and meta["near_duplicates_removed"].value == 1
    assert meta["dagster/row_count"].value == samples.height
    exports = world.home / "exports"
    for rel in ("llamafactory/mmoral_train.json", "llamafactory/mmoral_val.json", "llamafactory/dataset_info.json",
                "trl/train.jsonl", "trl/val.jsonl", "trl/hf_dataset/dataset_dict.json", "holdout/closed_ended.tsv",
                "holdout/open_ended.tsv", "DATASET_CARD.md", "dataset_card.png"):
        assert (exports / rel).exists(), rel
    n_train = samples.filter(pl.col("split") == "train").height
    assert sum(1 for _ in open(exports / "trl" / "train.jsonl")) == n_train
    card = (exports / "DATASET_CARD.md").read_text()
    assert f"**{samples.height} samples**" in card and '"holdout_fraction": 0.25' in card and "exact_duplicates" in card
    card_meta = result.asset_materializations_for_node("dataset_card")[0].metadata
    assert "data:image/png;base64," in card_meta["distributions"].value


def test_overlap_check_blocks_exports(run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    world, instance, _, stubs = run
    out = tmp_path / "home2"
    monkeypatch.setenv("MMORAL_HOME", str(out))
    # a broken split: the same image in train and bench
    bad = read_table("instruction_samples", base_dir=str(world.home))
    img = bad.filter(pl.col("split") == "train")["image_id"][0]
    bad = pl.concat([bad, bad.filter(pl.col("image_id") == img).with_columns(split=pl.lit("bench"), sample_id=pl.col("sample_id") + "x")])

    @dg.asset(name="instruction_samples", group_name="dataset")
    def broken() -> pl.DataFrame:
        return bad

    from mmoral_pipeline.defs.dataset import llamafactory_export, split_disjoint

    result = dg.materialize(
        [broken, llamafactory_export, split_disjoint],
        resources={"io_manager": ParquetIOManager(str(out))},
        instance=instance,
        raise_on_error=False,
    )
    evals = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert evals["split_disjoint"].passed is False
    assert evals["split_disjoint"].metadata["images_in_several_splits"].value == 1
    assert not result.asset_materializations_for_node("llamafactory_export")
    assert not (out / "exports").exists()


def test_sample_lineage_job(run) -> None:
    world, instance, _, _ = run
    samples = read_table("instruction_samples", base_dir=str(world.home))
    sid = samples.filter(pl.col("task_type") == "dialogue")["sample_id"][0]
    defs = dg.Definitions(jobs=dataset_jobs, resources={"io_manager": ParquetIOManager(str(world.home))})
    job = defs.get_job_def("sample_lineage")
    result = job.execute_in_process(run_config={"ops": {"trace_sample": {"config": {"sample_id": sid}}}}, instance=instance)
    assert result.success
    obs = [e.event_specific_data.asset_observation for e in result.all_events if e.event_type_value == "ASSET_OBSERVATION"]
    assert len(obs) == 1
    md = obs[0].metadata["lineage"].value
    assert sid in md and "### Raw image" in md and "Raw response" in md
    chain = obs[0].metadata["chain"].value
    assert chain["image"]["sha256_matches"] is True and chain["problems"] == []
    bad = job.execute_in_process(run_config={"ops": {"trace_sample": {"config": {"sample_id": "nope"}}}}, instance=instance, raise_on_error=False)
    assert not bad.success
    failure = next(e for e in bad.all_events if e.event_type_value == "STEP_FAILURE")
    assert "train.jsonl" in failure.event_specific_data.error.message  # says where sample ids are found


def test_definitions_objects_are_well_formed() -> None:
    keys = {a.key.to_user_string() for a in dataset_assets}
    assert keys == {"instruction_samples", "llamafactory_export", "trl_export", "bench_tsv_export", "dataset_card"}
    groups = {a.key.to_user_string(): a.group_names_by_key[a.key] for a in dataset_assets}
    assert groups["instruction_samples"] == "dataset" and {groups[k] for k in keys - {"instruction_samples"}} == {"export"}
    assert all(a.descriptions_by_key.get(a.key) for a in dataset_assets)
    assert [j.name for j in dataset_jobs] == ["sample_lineage"]
