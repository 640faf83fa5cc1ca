"""`mmoral materialize`: register partitions from the sources file, then materialise a selection
for every partition on the persistent Dagster instance, so runs show up in the UI afterwards.
"""

from __future__ import annotations

import os
import textwrap
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from mmoral_pipeline.config import REPO_ROOT, load_sources

DEFAULT_DAGSTER_HOME = REPO_ROOT / ".dagster_home"
LLM_POOL = "llm"


def ensure_dagster_home() -> Path:
    """Use $DAGSTER_HOME, else ./.dagster_home with the repo's dagster.yaml copied in."""
    home = Path(os.environ.get("DAGSTER_HOME") or DEFAULT_DAGSTER_HOME).resolve()
    home.mkdir(parents=True, exist_ok=True)
    cfg = home / "dagster.yaml"
    if not cfg.exists():
        cfg.write_text((REPO_ROOT / "dagster.yaml").read_text())
    os.environ["DAGSTER_HOME"] = str(home)
    return home


@dataclass
class CheckLine:
    asset: str
    check: str
    partition: str | None
    passed: bool
    severity: str
    description: str | None = None


@dataclass
class MaterializeReport:
    partitions: list[str] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)
    checks: list[CheckLine] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    left_out: dict[str, dict[str, str]] = field(default_factory=dict)  # fan-in asset -> {partition: why}

    @property
    def ok(self) -> bool:
        return not self.failed and all(c.passed or c.severity == "WARN" for c in self.checks)


def register_partitions(instance, sources_path: str | None = None) -> list[str]:
    from mmoral_pipeline.batches import plan_batches
    from mmoral_pipeline.defs.partitions import BATCHES

    keys = [b.key for b in plan_batches(load_sources(sources_path))]
    existing = set(instance.get_dynamic_partitions(BATCHES))
    new = [k for k in keys if k not in existing]
    if new:
        instance.add_dynamic_partitions(BATCHES, new)
    return keys


def default_selection(sources_path: str | None = None):
    """Everything, except training a visual expert when no source labels with it (`experts: [expert_model]`):
    `--select expert_model` trains it on request."""
    import dagster as dg

    from mmoral_pipeline.config import TRAINED_EXPERT

    if any(TRAINED_EXPERT in s.experts for s in load_sources(sources_path).sources):
        return dg.AssetSelection.all()
    return dg.AssetSelection.all() - dg.AssetSelection.assets(TRAINED_EXPERT)


def run_phases(graph, chosen: set) -> list[tuple[bool, set]]:
    """The selected assets in the order their runs go: [(partitioned?, keys), ...].

    A phase of partitioned assets runs once per partition; a phase of unpartitioned ones runs once.
    An asset runs in the first phase of its kind after every selected parent it cannot share a run
    with: an unpartitioned parent of a partitioned asset (`expert_annotations` <- `expert_model`), a
    partitioned parent of an unpartitioned one (`expert_model` <- `raw_images` of every batch), or a
    partitioned parent read across batches. Without such edges: the partitioned assets, then the others.
    """
    import dagster as dg

    phase: dict = {}

    def phase_of(key) -> int:
        if key in phase:
            return phase[key]
        node = graph.get(key)
        partitioned = node.is_partitioned
        need = 0
        for parent in node.parent_keys:
            if parent not in chosen:
                continue
            p, parent_partitioned = phase_of(parent), graph.get(parent).is_partitioned
            same_run = parent_partitioned == partitioned and (
                not partitioned or isinstance(graph.get_partition_mapping(key, parent), dg.IdentityPartitionMapping)
            )
            need = max(need, p if same_run else p + 1)
        if need % 2 != (0 if partitioned else 1):  # even phases: partitioned; odd: unpartitioned
            need += 1
        phase[key] = need
        return need

    by_phase: dict[int, set] = {}
    for key in chosen:
        by_phase.setdefault(phase_of(key), set()).add(key)
    return [(i % 2 == 0, by_phase[i]) for i in sorted(by_phase)]


def run_problems(instance, run_id: str) -> list[str]:
    """What went wrong in a run, for the terminal: unexpected step errors (with their stack trace) and
    warnings logged by the assets. A failed blocking check is expected: its figures and fix are in the
    check summary, so its step failure is not repeated here (no stack trace)."""
    import logging

    lines = []
    for entry in instance.all_logs(run_id):
        if entry.level < logging.WARNING:
            continue
        event = entry.dagster_event
        if event is None:
            if "allow_missing_partitions" not in entry.user_message:  # a batch not materialised yet: normal
                lines.append(f"  WARN {entry.step_key or ''}: {entry.user_message}")
        elif event.event_type_value == "STEP_FAILURE":
            error = event.step_failure_data.error if event.step_failure_data else None
            if error is not None and error.cls_name == "DagsterAssetCheckFailedError":
                continue
            lines.append(f"  ERROR {entry.step_key}: {error.to_string() if error else entry.user_message}")
    return lines


def materialize(
    selection: str | None = None, sources_path: str | None = None, instance=None, run_config=None, log=print
) -> MaterializeReport:
    import dagster as dg

    from mmoral_pipeline.definitions import defs

    if sources_path:
        os.environ["MMORAL_SOURCES"] = str(Path(sources_path).resolve())
    if instance is None:
        ensure_dagster_home()
        instance = dg.DagsterInstance.get()
    if LLM_POOL not in instance.event_log_storage.get_concurrency_keys():
        instance.event_log_storage.set_concurrency_slots(LLM_POOL, int(os.environ.get("MMORAL_LLM_POOL_LIMIT", "2")))

    quiet_console = run_config is None and "MMORAL_LOG_LEVEL" not in os.environ
    if run_config is None:
        # The run logs are in the UI. On the terminal: our own progress lines, the check summary and
        # `run_problems` (MMORAL_LOG_LEVEL=INFO/DEBUG shows Dagster's own console log instead).
        level = os.environ.get("MMORAL_LOG_LEVEL", "CRITICAL").upper()
        run_config = {"loggers": {"console": {"config": {"log_level": level}}}}
    report = MaterializeReport(partitions=register_partitions(instance, sources_path))
    repo = defs.get_repository_def()
    graph = repo.asset_graph
    with warnings.catch_warnings():  # the selection parser's own beta notice is noise on the terminal
        warnings.simplefilter("ignore", dg.BetaWarning)
        # an asset made together with others (instruction_samples and dropped_samples) brings them along
        sel = default_selection(sources_path)
        if selection:
            sel = dg.AssetSelection.from_string(selection).required_multi_asset_neighbors()
    chosen = sel.resolve(graph)
    assets = list(defs.assets or []) + list(defs.asset_checks or [])
    resources = dict(defs.resources or {})

    def _run(keys, partition_key) -> bool:
        # Include the checks targeting these assets, so their results come back with the run.
        check_sel = dg.AssetSelection.assets(*keys) | dg.AssetSelection.checks_for_assets(*keys)
        result = dg.materialize(
            assets,
            selection=check_sel,
            partition_key=partition_key,
            instance=instance,
            resources=resources,
            run_config=run_config,
            raise_on_error=False,
            tags={"mmoral/cli": "materialize"},
        )
        report.runs.append(result.run_id)
        label = partition_key or "(unpartitioned)"
        if not result.success and label not in report.failed:
            report.failed.append(label)
        for ev in result.get_asset_check_evaluations():
            report.checks.append(
                CheckLine(
                    asset=ev.asset_key.to_user_string(),
                    check=ev.check_name,
                    partition=partition_key,
                    passed=ev.passed,
                    severity=ev.severity.value,
                    description=ev.description,
                )
            )
        for mat in result.get_asset_materialization_events():
            left = mat.step_materialization_data.materialization.metadata.get("partitions_left_out")
            if left is not None and left.value:
                report.left_out[mat.asset_key.to_user_string()] = dict(left.value)
        log(f"  {'ok  ' if result.success else 'FAIL'} {label}: run {result.run_id[:8]}")
        if quiet_console:
            for line in run_problems(instance, result.run_id):
                log(line)
        return result.success

    phases = run_phases(graph, chosen)
    first_partitioned = next((i for i, (partitioned, _) in enumerate(phases) if partitioned), None)
    for i, (partitioned, keys) in enumerate(phases):
        if not partitioned:
            log(f"Materialising {len(keys)} unpartitioned asset(s)")
            _run(keys, None)
            continue
        stages = sum(1 for p, _ in phases if p)
        if i == first_partitioned:
            note = (
                (
                    f" in {stages} stages (a stage that reads every batch, or an unpartitioned asset such as "
                    "expert_model, "
                    "waits for all of them)"
                )
                if stages > 1
                else ""
            )
        else:
            note = " (next stage)"
        log(f"Materialising {len(keys)} partitioned asset(s) for {len(report.partitions)} partition(s){note}")
        # Later stages go in partition-key order: the batch that owns a merged document comes first.
        for key in report.partitions if i == first_partitioned else sorted(report.partitions):
            if key in report.failed:  # a blocking check failed upstream: nothing downstream runs for it
                log(f"  skip {key}: an earlier stage failed")
                continue
            _run(keys, key)
    return report


def format_left_out(report: MaterializeReport) -> str:
    """Which batches the dataset-wide assets did not read, and why (empty when every batch was read)."""
    lines = []
    for asset, left in sorted(report.left_out.items()):
        lines.append(f"Partitions left out of {asset} (blocking means blocking; fix and re-materialise them):")
        lines += [f"  {partition}: {why}" for partition, why in left.items()]
    return "\n".join(lines)


def format_checks(report: MaterializeReport) -> str:
    """One line per check; a failed check adds its description (figures and likely fix) below it."""
    lines = ["Asset checks:"]
    for c in report.checks:
        status = "PASS" if c.passed else ("WARN" if c.severity == "WARN" else "FAIL")
        part = f" [{c.partition}]" if c.partition else ""
        lines.append(f"  {status:4} {c.asset}.{c.check}{part}")
        if c.description and not c.passed:
            lines += [f"         {line}" for line in textwrap.wrap(c.description, 110)]
    if len(lines) == 1:
        lines.append("  (none ran)")
    return "\n".join(lines)
