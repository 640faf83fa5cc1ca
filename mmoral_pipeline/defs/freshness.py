"""Which asset partitions `mmoral materialize` may skip because nothing they depend on changed.

An asset partition is up to date when its latest materialisation
1. exists, its output is still on disk (`dagster/uri`), and no ERROR check on it failed in the run
   that made it (a failed blocking check runs again, and blocks again, until the data is fixed);
2. was made by the asset's current code version (prompt hashes and rule versions are code versions);
3. read the current content of every upstream partition: an upstream partition materialised after
   it must have the same content (`mmoral/content_sha256` from the IO manager, else Dagster's data
   version), so re-running an upstream step that changed nothing does not cascade;
4. saw the same inputs from outside the graph, recorded as `mmoral/inputs` metadata: the batch's
   files (mtime/size fingerprint) for ingest, the LLM backend, model, sampling parameters and
   generation settings for generation.
An asset planned to run makes every selected asset downstream of it run too (its new content is
not known before it runs). A changed prompt therefore re-runs only what it shapes, and the
response cache answers every request whose text did not change.
"""

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from mmoral_pipeline.defs.io_manager import CONTENT_HASH_KEY

INPUTS_KEY = "mmoral/inputs"
CODE_VERSION_TAG = "dagster/code_version"
DATA_VERSION_TAG = "dagster/data_version"

PartitionKey = str | None  # None: an unpartitioned asset
InputsFn = Callable[[dg.AssetKey, PartitionKey], str | None]


def fingerprint(value: object) -> str:
    """A short stable hash of JSON-able settings (what `mmoral/inputs` records)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class Plan:
    """For each partition (None: the unpartitioned assets), what runs and what is skipped, with the reason."""

    run: dict[PartitionKey, set[dg.AssetKey]] = field(default_factory=dict)
    skip: dict[PartitionKey, set[dg.AssetKey]] = field(default_factory=dict)
    reasons: dict[tuple[dg.AssetKey, PartitionKey], str] = field(default_factory=dict)

    def runs(self, key: dg.AssetKey, partition: PartitionKey) -> bool:
        return key in self.run.get(partition, set())


class _History:
    """Materialisation records of the instance, fetched once per asset and cached."""

    def __init__(self, instance: dg.DagsterInstance):
        self.instance = instance
        self._latest: dict[dg.AssetKey, dict[PartitionKey, int]] = {}
        self._records: dict[int, dg.EventLogRecord | None] = {}
        self._failed_checks: dict[str, set[dg.AssetKey]] = {}

    def latest_ids(self, key: dg.AssetKey, partitioned: bool) -> dict[PartitionKey, int]:
        if key not in self._latest:
            if partitioned:
                ids = self.instance.event_log_storage.get_latest_storage_id_by_partition(
                    key, dg.DagsterEventType.ASSET_MATERIALIZATION
                )
                self._latest[key] = dict(ids)
            else:
                recs = self.instance.fetch_materializations(key, limit=1).records
                self._latest[key] = {None: recs[0].storage_id} if recs else {}
        return self._latest[key]

    def record(self, key: dg.AssetKey, storage_id: int) -> dg.EventLogRecord | None:
        if storage_id not in self._records:
            recs = self.instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=key, storage_ids=[storage_id]), limit=1
            ).records
            self._records[storage_id] = recs[0] if recs else None
        return self._records[storage_id]

    def before(self, key: dg.AssetKey, partition: PartitionKey, storage_id: int) -> dg.EventLogRecord | None:
        """The latest materialisation of (key, partition) older than `storage_id` (what a downstream run read)."""
        recs = self.instance.fetch_materializations(
            dg.AssetRecordsFilter(
                asset_key=key, asset_partitions=[partition] if partition else None, before_storage_id=storage_id
            ),
            limit=1,
        ).records
        return recs[0] if recs else None

    def failed_checks(self, run_id: str) -> set[dg.AssetKey]:
        """Assets with an ERROR-severity check that failed in this run."""
        if run_id not in self._failed_checks:
            records = self.instance.get_records_for_run(
                run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
            ).records
            evaluations = [
                r.event_log_entry.dagster_event.event_specific_data for r in records if r.event_log_entry.dagster_event
            ]
            self._failed_checks[run_id] = {
                e.asset_key for e in evaluations if not e.passed and e.severity == dg.AssetCheckSeverity.ERROR
            }
        return self._failed_checks[run_id]


def _content(record: dg.EventLogRecord | None) -> str | None:
    """What identifies a materialisation's content: the file hash, else the data version."""
    if record is None or record.asset_materialization is None:
        return None
    mat = record.asset_materialization
    digest = mat.metadata.get(CONTENT_HASH_KEY)
    if digest is not None:
        return str(getattr(digest, "value", digest))
    return (mat.tags or {}).get(DATA_VERSION_TAG)


def _output_missing(record: dg.EventLogRecord) -> bool:
    uri = record.asset_materialization.metadata.get("dagster/uri") if record.asset_materialization else None
    path = str(getattr(uri, "value", uri or ""))
    return bool(path) and "://" not in path and not Path(path).exists()


def plan_materialisation(
    instance: dg.DagsterInstance,
    graph,  # the repository's asset graph
    selected: Iterable[dg.AssetKey],
    partitions: list[str],
    current_inputs: InputsFn,
    force: bool = False,
    forced: Iterable[dg.AssetKey] = (),
) -> Plan:
    """Decide, asset partition by asset partition (in graph order), what must run; see the module docstring.
    `forced` assets run whatever their record says (their run config was given: it is not recorded)."""
    history = _History(instance)
    plan = Plan()
    chosen = set(selected)
    order = [k for k in graph.toposorted_asset_keys if k in chosen]
    slots = [(k, p) for k in order for p in (partitions if graph.get(k).is_partitioned else [None])]
    forced = set(forced)
    for key, part in slots:  # own reasons, independent of the rest of the plan
        if force:
            plan.reasons[(key, part)] = "forced (--force)"
        elif key in forced:
            plan.reasons[(key, part)] = "run config given for it"
        else:
            plan.reasons[(key, part)] = _stale_reason(history, graph, key, part, partitions, current_inputs) or ""
    changed = True
    while changed:  # spread runs downstream and to multi-asset siblings until nothing changes
        changed = False
        for key, part in slots:
            if plan.runs(key, part):
                continue
            reason = plan.reasons[(key, part)] or _upstream_runs(graph, plan, key, part, partitions)
            if reason:
                plan.reasons[(key, part)] = reason
                for s in graph.get_execution_set_asset_and_check_keys(key):
                    if isinstance(s, dg.AssetKey) and s in chosen:
                        plan.run.setdefault(part, set()).add(s)
                        plan.reasons[(s, part)] = (
                            plan.reasons[(s, part)] or f"runs with {key.to_user_string()} (one multi-asset)"
                        )
                changed = True
    for key, part in slots:
        if not plan.runs(key, part):
            plan.skip.setdefault(part, set()).add(key)
            plan.reasons[(key, part)] = "up to date"
    return plan


def _upstream_runs(graph, plan: Plan, key: dg.AssetKey, part: PartitionKey, partitions: list[str]) -> str | None:
    for parent in sorted(graph.get(key).parent_keys):
        if any(plan.runs(parent, p) for p in _upstream_partitions(graph, key, parent, part, partitions)):
            return f"upstream {parent.to_user_string()} runs in this plan"
    return None


def fan_in_readers(graph, keys: Iterable[dg.AssetKey]) -> set[dg.AssetKey]:
    """The partitioned assets among `keys` that read every batch of a partitioned parent (not only their own)."""
    return {
        k
        for k in keys
        if graph.get(k).is_partitioned
        and any(
            graph.get(p).is_partitioned
            and not isinstance(graph.get_partition_mapping(k, p), dg.IdentityPartitionMapping)
            for p in graph.get(k).parent_keys
        )
    }


def _upstream_partitions(
    graph, child: dg.AssetKey, parent: dg.AssetKey, child_partition: PartitionKey, partitions: list[str]
) -> list[PartitionKey]:
    """The parent partitions a child partition reads: the same batch, or every batch (a fan-in)."""
    if not graph.get(parent).is_partitioned:
        return [None]
    if child_partition is not None and isinstance(
        graph.get_partition_mapping(child, parent), dg.IdentityPartitionMapping
    ):
        return [child_partition]
    return list(partitions)


def _stale_reason(
    history: _History, graph, key: dg.AssetKey, part: PartitionKey, partitions: list[str], current_inputs: InputsFn
) -> str | None:
    """Why this asset partition must run, judged on its own record and its upstream's content; None: up to date."""
    node = graph.get(key)
    own_id = history.latest_ids(key, node.is_partitioned).get(part)
    if own_id is None:
        return "never materialised"
    record = history.record(key, own_id)
    if record is None or record.asset_materialization is None:
        return "materialisation record not found"
    if key in history.failed_checks(record.run_id):
        return "a check on it failed"
    if _output_missing(record):
        return "its output is missing on disk"
    tags = record.asset_materialization.tags or {}
    if node.code_version is not None and tags.get(CODE_VERSION_TAG) != node.code_version:
        return f"code version {tags.get(CODE_VERSION_TAG)} -> {node.code_version}"
    left_out = _gate_change(history, graph, key, part, partitions, record)
    if left_out:
        return left_out
    want = current_inputs(key, part)
    if want is not None:
        had = record.asset_materialization.metadata.get(INPUTS_KEY)
        if str(getattr(had, "value", had)) != want:
            return "inputs from outside the graph changed (files or LLM settings)"
    for parent in sorted(node.parent_keys):
        pnode = graph.get(parent)
        latest = history.latest_ids(parent, pnode.is_partitioned)
        for p in _upstream_partitions(graph, key, parent, part, partitions):
            up_id = latest.get(p)
            if up_id is None or up_id < own_id:
                continue  # not materialised since: what this partition read is still current
            if _content(history.record(parent, up_id)) != _content(history.before(parent, p, own_id)):
                return f"upstream {parent.to_user_string()}{f' [{p}]' if p else ''} changed"
    return None


def _gate_change(
    history: _History, graph, key: dg.AssetKey, part: PartitionKey, partitions: list[str], record: dg.EventLogRecord
) -> str | None:
    """A fan-in that records which batches it left out (`partitions_left_out`, defs/gates.py) is stale when
    the gate would now leave out others, or for another reason (a batch fixed, or newly failed)."""
    from mmoral_pipeline.defs.gates import GateReport, partition_gate

    had = record.asset_materialization.metadata.get("partitions_left_out")
    if had is None:
        return None
    gate = GateReport()
    for parent in sorted(graph.get(key).parent_keys):
        if graph.get(parent).is_partitioned and _upstream_partitions(graph, key, parent, part, partitions) != [part]:
            gate = gate.merge(partition_gate(history.instance, graph, parent, partitions))
    before = dict(getattr(had, "value", had) or {})
    if gate.left_out != before:
        return f"the batches it may read changed: left out {sorted(before)} -> {sorted(gate.left_out)}"
    return None


def external_inputs(graph, sources_file, llm) -> InputsFn:
    """What each asset saw from outside the graph, as its materialisation records it (`INPUTS_KEY`):
    ingest the files of its batch, generation the LLM settings. Other assets: nothing to compare."""
    from mmoral_pipeline.defs.automation import batch_fingerprints
    from mmoral_pipeline.defs.experts import expert_inputs
    from mmoral_pipeline.defs.generation import GenerationConfig, generation_inputs

    files = batch_fingerprints(sources_file)
    llm_settings = generation_inputs(llm, GenerationConfig())
    experts = {dg.AssetKey("expert_annotations"), dg.AssetKey("expert_coverage")}

    def current(key: dg.AssetKey, partition: PartitionKey) -> str | None:
        group = graph.get(key).group_name
        if key in experts and partition:
            return expert_inputs(sources_file, partition, files.get(partition, ""))
        if group == "ingest":
            return files.get(partition or "")
        return llm_settings if group == "generation" else None

    return current
