"""The fan-in gate on a small graph: which partition is left out, and why (fast; the pipeline-level test is
tests/ops/test_gates.py)."""

import dagster as dg

from mmoral_pipeline.defs.gates import GateReport, partition_gate

parts = dg.DynamicPartitionsDefinition(name="gate_test")
FAIL_SIDE: set[str] = set()
WARN: set[str] = set()
BOOM: set[str] = set()


@dg.multi_asset(
    outs={"raw": dg.AssetOut(), "rejected": dg.AssetOut()},
    partitions_def=parts,
    check_specs=[dg.AssetCheckSpec("balance", asset="rejected", blocking=True, partitions_def=parts)],
)
def ingest(context: dg.AssetExecutionContext):
    yield dg.Output(1, output_name="raw")
    yield dg.Output(0, output_name="rejected")
    yield dg.AssetCheckResult(check_name="balance", asset_key="rejected", passed=True)


@dg.asset_check(asset="raw", blocking=True, partitions_def=parts)
def side(context: dg.AssetCheckExecutionContext, raw: int) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=context.partition_key not in FAIL_SIDE, description="teeth on the wrong side")


@dg.asset_check(asset="raw", blocking=True, partitions_def=parts)
def advisory(context: dg.AssetCheckExecutionContext, raw: int) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=context.partition_key not in WARN, severity=dg.AssetCheckSeverity.WARN)


@dg.asset(partitions_def=parts, deps=["raw"])
def gen(context: dg.AssetExecutionContext) -> int:
    if context.partition_key in BOOM:
        raise RuntimeError("the endpoint went away")
    return 2


def test_partition_gate_reasons():
    defs = dg.Definitions(assets=[ingest, gen], asset_checks=[side, advisory])
    graph = defs.get_repository_def().asset_graph
    everything = [ingest, gen, side, advisory]
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("gate_test", ["ok", "side", "warn", "boom", "stale", "never"])

        def run(p: str, selection=None) -> None:
            dg.materialize(everything, partition_key=p, instance=instance, selection=selection, raise_on_error=False,
                           resources={"io_manager": dg.mem_io_manager})

        for p in ("ok", "side", "warn", "boom", "stale"):
            run(p)  # every partition passes once
        FAIL_SIDE.add("side")
        WARN.add("warn")
        BOOM.add("boom")
        for p in ("side", "warn", "boom"):
            run(p)
        # re-materialised without its separate checks (only the one its step yields): unchecked data
        balance = dg.AssetCheckKey(dg.AssetKey("rejected"), "balance")
        only_step = dg.AssetSelection.assets("raw", "rejected").without_checks() | dg.AssetSelection.checks(balance)
        run("stale", selection=only_step)
        gate = partition_gate(instance, graph, dg.AssetKey("gen"), ["ok", "side", "warn", "boom", "stale", "never"])
    assert gate.admitted == ["ok", "warn"]  # a failed WARN never blocks
    assert gate.left_out["side"] == "blocking check raw.side failed: teeth on the wrong side"
    assert gate.left_out["boom"].startswith("latest run ")
    assert "(failure) did not materialise gen" in gate.left_out["boom"]
    assert "has not run on its latest materialisation" in gate.left_out["stale"]
    assert gate.left_out["never"] == "gen was never materialised for it"
    merged = GateReport(["a", "b"], {"c": "x"}).merge(GateReport(["a"], {"b": "y"}))
    assert (merged.admitted, merged.left_out) == (["a"], {"b": "y", "c": "x"})
