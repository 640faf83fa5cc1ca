"""The skip rule of `mmoral materialize` (defs/freshness.py) on a real instance, one reason at a time."""

from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from mmoral_pipeline.defs.freshness import INPUTS_KEY, plan_materialisation
from mmoral_pipeline.defs.io_manager import ParquetIOManager

PARTS = ["a", "b"]
parts = dg.StaticPartitionsDefinition(PARTS)
STATE = {"values": {"a": 1, "b": 2}, "bad": set(), "inputs": "files-v1"}


def make_up(code_version: str) -> dg.AssetsDefinition:
    @dg.asset(
        name="up",
        partitions_def=parts,
        code_version=code_version,
        check_specs=[dg.AssetCheckSpec("positive", asset="up", blocking=True)],
    )
    def up(context: dg.AssetExecutionContext):
        k = context.partition_key
        yield dg.Output(
            pl.DataFrame({"partition": [k], "x": [STATE["values"][k]]}), metadata={INPUTS_KEY: STATE["inputs"]}
        )
        yield dg.AssetCheckResult(check_name="positive", passed=k not in STATE["bad"])

    return up


@dg.asset(code_version="down-v1", ins={"up": dg.AssetIn("up", metadata={"allow_missing_partitions": True})})
def down(up: pl.DataFrame) -> pl.DataFrame:
    return up.select(pl.col("x").sum())


class World:
    def __init__(self, tmp: Path, instance: dg.DagsterInstance):
        self.tmp, self.instance, self.up = tmp, instance, make_up("up-v1")

    def run(self, *assets, partition: str | None = None) -> None:
        result = dg.materialize(
            [self.up, down],
            selection=list(assets),
            partition_key=partition,
            instance=self.instance,
            resources={"io_manager": ParquetIOManager(str(self.tmp))},
            raise_on_error=False,
        )
        assert result.success or STATE["bad"]

    def plan(self, current_inputs=lambda key, part: STATE["inputs"] if key.path == ["up"] else None):
        graph = dg.Definitions(assets=[self.up, down]).get_repository_def().asset_graph
        plan = plan_materialisation(
            self.instance, graph, [dg.AssetKey("up"), dg.AssetKey("down")], PARTS, current_inputs
        )
        return {
            f"{k.to_user_string()}[{p}]" if p else k.to_user_string(): why
            for (k, p), why in plan.reasons.items()
            if why != "up to date"
        }


@pytest.fixture()
def world(tmp_path: Path):
    STATE.update(values={"a": 1, "b": 2}, bad=set(), inputs="files-v1")
    with dg.instance_for_test() as instance:
        w = World(tmp_path, instance)
        assert w.plan() == {"up[a]": "never materialised", "up[b]": "never materialised", "down": "never materialised"}
        for p in PARTS:
            w.run(w.up, partition=p)
        w.run(down)
        yield w


def test_nothing_changed_nothing_runs(world: World) -> None:
    assert world.plan() == {}


def test_an_upstream_rerun_with_the_same_content_does_not_cascade(world: World) -> None:
    world.run(world.up, partition="a")
    assert world.plan() == {}
    STATE["values"]["a"] = 10
    world.run(world.up, partition="a")
    assert world.plan() == {"down": "upstream up [a] changed"}


def test_code_version_inputs_and_missing_output(world: World) -> None:
    world.up = make_up("up-v2")
    assert world.plan() == {
        "up[a]": "code version up-v1 -> up-v2",
        "up[b]": "code version up-v1 -> up-v2",
        "down": "upstream up runs in this plan",
    }
    world.up = make_up("up-v1")
    STATE["inputs"] = "files-v2"
    why = "inputs from outside the graph changed (files or LLM settings)"
    assert world.plan() == {"up[a]": why, "up[b]": why, "down": "upstream up runs in this plan"}
    STATE["inputs"] = "files-v1"
    (world.tmp / "up" / "b.parquet").unlink()
    assert world.plan() == {"up[b]": "its output is missing on disk", "down": "upstream up runs in this plan"}


def test_a_failed_blocking_check_runs_again(world: World) -> None:
    STATE["bad"] = {"b"}
    world.run(world.up, partition="b")
    assert world.plan() == {"up[b]": "a check on it failed", "down": "upstream up runs in this plan"}
