"""Blocking means blocking: which partitions a fan-in (an unpartitioned asset or check that reads every
batch) may read.

Dagster stops a failed check's downstream steps inside one run, but a later run of an unpartitioned
asset would read every partition's Parquet on disk, including a partition whose latest run failed
(its files are the earlier, passing run's) or whose blocking check failed. So the project IO manager
asks this module before it loads several partitions, whatever started the run (`mmoral materialize`,
a job, a backfill, the automation), and the fan-in assets show the same answer in their metadata.

A partition is left out when, for the loaded asset or any batch asset upstream of it (or produced
by the same step as one of those):

- its latest planned materialisation has none after it: the run failed, was skipped by a failed
  blocking check, or is still in progress (`get_latest_asset_partition_materialization_attempts_
  without_materializations`);
- a blocking check's latest execution on that partition did not pass with its latest
  materialisation: failed with ERROR severity, did not complete, or ran on an older materialisation
  (`get_asset_check_partition_info`, one query for all checks and partitions). The checks are those
  of the run's graph and of the project's Definitions: a run that selects only the fan-in asset
  carries none of the batch checks itself;
- the loaded asset itself was never materialised for it.

Reads only the instance's event log (no Parquet), in a few queries per asset.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import dagster as dg
from dagster._core.event_api import PartitionKeyFilter
from dagster._core.events import DagsterEventType
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._core.storage.dagster_run import DagsterRunStatus


@dataclass
class GateReport:
    """The partitions a fan-in reads, and why each other one was left out."""

    admitted: list[str] = field(default_factory=list)
    left_out: dict[str, str] = field(default_factory=dict)  # partition -> the first reason found

    def merge(self, other: "GateReport") -> "GateReport":
        left = {**other.left_out, **self.left_out}
        return GateReport(sorted((set(self.admitted) | set(other.admitted)) - set(left)), dict(sorted(left.items())))

    def metadata(self) -> dict[str, dg.MetadataValue]:
        """`partitions_used` / `partitions_left_out` for the materialisation (the UI's answer)."""
        rows = "\n".join(f"| {p} | {why} |" for p, why in self.left_out.items())
        return {
            "partitions_used": dg.MetadataValue.int(len(self.admitted)),
            "partitions_left_out": dg.MetadataValue.json(self.left_out),
            "partitions_left_out_table": dg.MetadataValue.md(
                f"| partition | left out because |\n|---|---|\n{rows}"
                if rows
                else "_none: every registered partition passed_"
            ),
        }


def _batch_closure(graph, key: dg.AssetKey) -> list[dg.AssetKey]:
    """`key`, the assets upstream of it and the assets materialised by the same step as any of them,
    restricted to those partitioned like `key` (the per-batch assets a fan-in reads through it)."""
    partitions_def = graph.get(key).partitions_def
    seen: set[dg.AssetKey] = set()
    todo = [key]
    while todo:
        k = todo.pop()
        if k in seen or not graph.has(k):
            continue
        node = graph.get(k)
        if node.partitions_def != partitions_def:
            continue
        seen.add(k)
        todo.extend(node.parent_keys)
        todo.extend(node.execution_set_asset_keys)
    return sorted(seen, key=lambda k: k.to_user_string())


def _run_status(instance: dg.DagsterInstance, run_id: str, cache: dict[str, str]) -> str:
    if run_id not in cache:
        run = instance.get_run_by_id(run_id)
        cache[run_id] = run.status.value if run else "DELETED"
    return cache[run_id]


def _why_not_materialised(asset: str, run_id: str, status: str) -> str:
    if status in (DagsterRunStatus.SUCCESS.value,):
        return f"run {run_id[:8]} planned {asset} but skipped it (a blocking check upstream failed)"
    if status in (DagsterRunStatus.FAILURE.value, DagsterRunStatus.CANCELED.value, "DELETED"):
        return f"latest run {run_id[:8]} ({status.lower()}) did not materialise {asset}; the files on disk are older"
    return f"run {run_id[:8]} ({status.lower()}) is still materialising {asset}"


def partition_gate(
    instance: dg.DagsterInstance,
    graph,
    asset_key: dg.AssetKey,
    partitions: Sequence[str],
    current_run_id: str | None = None,
) -> GateReport:
    """Which of `partitions` of `asset_key` a fan-in may read (see the module docstring).

    What the reading run itself has planned (`current_run_id`) is not held against a partition: inside
    one run Dagster's own blocking already orders checks before what depends on their asset, and a
    partitioned step reading every batch must see its own batch.

    The reason given for a partition left out is its failed blocking checks when there are any (the
    cause), else the run that did not materialise an asset of it, else a check that did not settle.
    """
    partitions = list(partitions)
    storage = instance.event_log_storage
    statuses: dict[str, str] = {}  # run id -> status (a cache)
    closure = _batch_closure(graph, asset_key)
    latest_mat: dict[dg.AssetKey, dict[str, int]] = {}
    unfinished: dict[str, str] = {}  # partition -> the run that did not materialise one of its assets
    for key in closure:
        latest_mat[key] = dict(
            storage.get_latest_storage_id_by_partition(key, DagsterEventType.ASSET_MATERIALIZATION, set(partitions))
        )
        attempts = storage.get_latest_asset_partition_materialization_attempts_without_materializations(key)
        for p in partitions:
            if p in attempts and p not in unfinished and attempts[p][0] != current_run_id:
                run_id = attempts[p][0]
                status = _run_status(instance, run_id, statuses)
                unfinished[p] = _why_not_materialised(key.to_user_string(), run_id, status)
    for p in partitions:
        if p not in latest_mat.get(asset_key, {}) and p not in unfinished:
            unfinished[p] = f"{asset_key.to_user_string()} was never materialised for it"

    failed: dict[str, list[str]] = {}  # partition -> its blocking checks that failed
    unsettled: dict[str, list[str]] = {}  # partition -> its blocking checks that did not complete or are stale
    blocking = _blocking_checks(graph, closure)
    infos = {
        (i.check_key, i.partition_key): i
        for i in (storage.get_asset_check_partition_info(blocking, partition_keys=partitions) if blocking else [])
    }
    for p in partitions:
        for ck in blocking:
            info = infos.get((ck, p))
            if info is None or p not in latest_mat.get(ck.asset_key, {}):
                continue  # never evaluated on it, or no data of it: nothing failed (runs select checks with assets)
            name = f"{ck.asset_key.to_user_string()}.{ck.name}"
            if info.latest_execution_status == AssetCheckExecutionRecordStatus.PLANNED:
                if info.latest_planned_run_id == current_run_id:
                    continue  # still to run in this very run: Dagster blocks inside the run
                status = _run_status(instance, info.latest_planned_run_id, statuses)
                run = info.latest_planned_run_id[:8]
                why = f"blocking check {name} did not complete (run {run}: {status.lower()})"
                unsettled.setdefault(p, []).append(why)
            elif not info.is_current:
                unsettled.setdefault(p, []).append(f"blocking check {name} has not run on its latest materialisation")
            elif info.latest_execution_status == AssetCheckExecutionRecordStatus.FAILED:
                description = _failure(storage, ck, p)
                if description is not None:
                    why = f"blocking check {name} failed" + (f": {description}" if description else "")
                    failed.setdefault(p, []).append(why)
    left: dict[str, str] = {}
    for p in partitions:  # the cause first: failed checks, then the run that did not finish, then anything else
        if p in failed:
            left[p] = "; ".join(failed[p])
        elif p in unfinished:
            left[p] = unfinished[p]
        elif p in unsettled:
            left[p] = unsettled[p][0]
    return GateReport([p for p in partitions if p not in left], dict(sorted(left.items())))


def _blocking_checks(graph, closure: list[dg.AssetKey]) -> list[dg.AssetCheckKey]:
    """Every blocking check on an asset of `closure`: those of the run's graph and of the project's
    Definitions (a run that selects only the fan-in has none of the batch checks in its own graph)."""
    graphs = [graph]
    try:
        from mmoral_pipeline.definitions import defs

        graphs.append(defs.get_repository_def().asset_graph)
    except Exception:  # the project's definitions are a second opinion, not a requirement (tests build their own)
        pass
    in_closure = set(closure)
    found: set[dg.AssetCheckKey] = set()
    for g in graphs:
        found |= {ck for ck in g.asset_check_keys if ck.asset_key in in_closure and g.get_check_spec(ck).blocking}
    return sorted(found, key=lambda k: (k.asset_key.to_user_string(), k.name))


def _failure(storage, check_key: dg.AssetCheckKey, partition: str) -> str | None:
    """The failed evaluation's description ('' without one), or None when it failed with WARN severity
    (a warning never blocks)."""
    record = storage.get_latest_asset_check_execution_by_key(
        [check_key], partition_filter=PartitionKeyFilter(key=partition)
    ).get(check_key)
    evaluation = record.evaluation if record is not None else None
    if evaluation is not None and evaluation.severity == dg.AssetCheckSeverity.WARN:
        return None
    return (evaluation.description or "") if evaluation is not None else ""


def fan_in_gate(
    context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext, upstream: Iterable[str]
) -> GateReport:
    """The gate for every partitioned table in `upstream` that a fan-in step reads (for its metadata)."""
    instance = context.instance
    graph = context.op_execution_context.job_def.asset_layer.asset_graph
    report = GateReport()
    for name in upstream:
        key = dg.AssetKey(name)
        if not graph.has(key) or graph.get(key).partitions_def is None:
            continue
        partitions_def = graph.get(key).partitions_def
        keys = partitions_def.get_partition_keys(dynamic_partitions_store=instance)
        report = report.merge(partition_gate(instance, graph, key, keys, current_run_id=context.run_id))
    return report
