"""`mmoral materialize`: register partitions from the sources file, then materialise a selection
for every partition on the persistent Dagster instance, so runs show up in the UI afterwards.
"""

from __future__ import annotations

import gc
import os
import textwrap
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from mmoral_pipeline.config import REPO_ROOT, load_sources
from mmoral_pipeline.sources import clear_caches

DEFAULT_DAGSTER_HOME = REPO_ROOT / ".dagster_home"
LLM_POOL = "llm"
EPHEMERAL_JOB_NAME = "__ephemeral_asset_job__"  # the job name dg.materialize gives its runs


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
    skipped: int = 0  # asset partitions left alone: up to date (defs/freshness.py)
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


@dataclass
class RunOutcome:
    """What one run of a selection for one partition gave (plain data: it crosses process boundaries)."""

    run_id: str
    success: bool
    checks: list[CheckLine]
    problems: list[str]
    left_out: dict[str, dict[str, str]] = field(default_factory=dict)  # fan-in asset -> {partition: why}


def execute_run(
    keys: list[str], partition_key: str | None, run_config: dict, instance=None, quiet_console: bool = True
) -> RunOutcome:
    """One run: the assets `keys` (and their checks) for one partition, with the terminal logger that also
    shows progress lines (what dg.materialize does otherwise). Without `instance`: the DAGSTER_HOME one
    (worker processes)."""
    import dagster as dg

    from mmoral_pipeline.definitions import defs
    from mmoral_pipeline.defs.console import progress_console_logger

    instance = instance or dg.DagsterInstance.get()
    asset_keys = [dg.AssetKey.from_user_string(k) for k in keys]
    # Include the checks targeting these assets, so their results come back with the run.
    check_sel = dg.AssetSelection.assets(*asset_keys) | dg.AssetSelection.checks_for_assets(*asset_keys)
    job = dg.define_asset_job(EPHEMERAL_JOB_NAME, selection=check_sel)
    job_defs = dg.Definitions(
        jobs=[job],
        assets=list(defs.assets or []) + list(defs.asset_checks or []),
        resources=dict(defs.resources or {}),
        loggers={"console": progress_console_logger},
    )
    job_def = job_defs.resolve_job_def(EPHEMERAL_JOB_NAME)
    if run_config.get("ops"):  # one run config for the whole selection: each run takes its own ops' part
        run_config = {**run_config, "ops": {k: v for k, v in run_config["ops"].items() if k in job_def.graph.node_dict}}
    result = job_def.execute_in_process(
        run_config=run_config,
        instance=instance,
        partition_key=partition_key,
        raise_on_error=False,
        tags={"mmoral/cli": "materialize"},
    )
    checks = [
        CheckLine(
            asset=ev.asset_key.to_user_string(),
            check=ev.check_name,
            partition=partition_key,
            passed=ev.passed,
            severity=ev.severity.value,
            description=ev.description,
        )
        for ev in result.get_asset_check_evaluations()
    ]
    left_out: dict[str, dict[str, str]] = {}
    for mat in result.get_asset_materialization_events():
        left = mat.step_materialization_data.materialization.metadata.get("partitions_left_out")
        if left is not None and left.value:
            left_out[mat.asset_key.to_user_string()] = dict(left.value)
    problems = run_problems(instance, result.run_id) if quiet_console else []
    return RunOutcome(result.run_id, result.success, checks, problems, left_out)


def _execute_in_worker(job: tuple[list[str], str | None, dict, bool]) -> RunOutcome:
    keys, partition_key, run_config, quiet_console = job
    return execute_run(keys, partition_key, run_config, quiet_console=quiet_console)


def materialize(
    selection: str | None = None,
    sources_path: str | None = None,
    instance=None,
    run_config=None,
    log=print,
    force: bool = False,
    workers: int = 1,
) -> MaterializeReport:
    """Run what is not up to date (every asset partition with `force`); see defs/freshness.py for the rule.

    The selection runs in phases (`run_phases`); a phase of partitioned assets runs once per batch, the
    assets in it that read every batch first. `workers` > 1 runs the batches of a phase in that many
    processes at once (each its own Dagster run, as the UI's backfills do); 1 runs them one after the
    other in this process. A batch whose blocking check failed runs nothing further, and the assets
    that read every batch leave it out (the IO manager's gate).
    """
    import dagster as dg

    from mmoral_pipeline.definitions import defs
    from mmoral_pipeline.defs import freshness

    if sources_path:
        os.environ["MMORAL_SOURCES"] = str(Path(sources_path).resolve())
    if instance is None:
        ensure_dagster_home()
        instance = dg.DagsterInstance.get()
    if LLM_POOL not in instance.event_log_storage.get_concurrency_keys():
        instance.event_log_storage.set_concurrency_slots(LLM_POOL, int(os.environ.get("MMORAL_LLM_POOL_LIMIT", "2")))

    own_loggers = "loggers" in (run_config or {})
    quiet_console = not own_loggers and "MMORAL_LOG_LEVEL" not in os.environ
    if not own_loggers:
        # The run logs are in the UI. On the terminal: progress lines (defs/console.py), the check summary and
        # `run_problems` (MMORAL_LOG_LEVEL=INFO/DEBUG shows Dagster's own console log instead).
        level = os.environ.get("MMORAL_LOG_LEVEL", "CRITICAL").upper()
        run_config = {**(run_config or {}), "loggers": {"console": {"config": {"log_level": level}}}}
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
    resources = dict(defs.resources or {})

    def _record(outcome: RunOutcome, partition_key: str | None) -> None:
        report.runs.append(outcome.run_id)
        label = partition_key or "(unpartitioned)"
        if not outcome.success and label not in report.failed:
            report.failed.append(label)
        report.checks.extend(outcome.checks)
        report.left_out.update(outcome.left_out)
        log(f"  {'ok  ' if outcome.success else 'FAIL'} {label}: run {outcome.run_id[:8]}")
        for line in outcome.problems:
            log(line)

    def _run_all(jobs: list[tuple[set, str | None]]) -> None:
        """Run (keys, partition) jobs: in worker processes when asked and worth it, else here, in order."""
        plain = [([k.to_user_string() for k in sorted(keys)], part, run_config, quiet_console) for keys, part in jobs]
        if workers > 1 and len(jobs) > 1:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=context) as pool:
                for (_, part), outcome in zip(jobs, pool.map(_execute_in_worker, plain), strict=True):
                    _record(outcome, part)
        else:
            for (_, part), job in zip(jobs, plain, strict=True):
                _record(execute_run(job[0], part, run_config, instance, quiet_console), part)

    current_inputs = freshness.external_inputs(graph, load_sources(sources_path), resources["llm"])
    clear_caches()  # the parsed annotation files served planning; ingest parses again, other steps need not carry them
    gc.collect()

    configured = set((run_config or {}).get("ops") or {})  # ops given config: their assets always run
    forced = {k for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition) and a.node_def.name in configured
              for k in a.keys}

    def plan_now():  # re-planned at each step: what earlier steps wrote is judged by its content
        return freshness.plan_materialisation(
            instance, graph, chosen, report.partitions, current_inputs, force=force, forced=forced
        )

    plan = plan_now()
    report.skipped = sum(len(v) for v in plan.skip.values())
    if report.skipped:
        log(
            f"{report.skipped} asset partition(s) up to date (code, upstream content and inputs unchanged; "
            "--force re-runs them)"
        )
    phases = run_phases(graph, chosen)
    stages = sum(1 for p, _ in phases if p)
    first_partitioned = next((i for i, (partitioned, _) in enumerate(phases) if partitioned), None)
    for i, (partitioned, keys) in enumerate(phases):
        if i:
            plan = plan_now()
        if not partitioned:
            log(f"Materialising {len(keys)} unpartitioned asset(s)")
            todo = plan.run.get(None, set()) & keys
            if todo:
                _run_all([(todo, None)])
            else:
                log("  skip (unpartitioned): up to date")
            continue
        if i == first_partitioned:
            note = (
                f" in {stages} stages (a stage that reads every batch, or an unpartitioned asset such as "
                "expert_model, waits for all of them)"
                if stages > 1
                else ""
            )
        else:
            note = " (next stage)"
        log(f"Materialising {len(keys)} partitioned asset(s) for {len(report.partitions)} partition(s){note}")
        # Assets that read every batch (image_copies) run first, for all batches; then the plan is made again,
        # so what they recomputed without a change does not re-run their batches' downstream.
        readers = freshness.fan_in_readers(graph, keys)
        steps = [readers, keys - readers] if readers and readers != keys else [keys]
        ran: set[str] = set()
        for j, step in enumerate(steps):
            if j:
                plan = plan_now()
            jobs = []
            # Later stages go in partition-key order: the batch that owns a merged document comes first.
            for key in report.partitions if i == first_partitioned else sorted(report.partitions):
                if key in report.failed:  # a blocking check failed upstream: nothing downstream runs for it
                    if j == len(steps) - 1:
                        log(f"  skip {key}: an earlier stage failed")
                    continue
                todo = plan.run.get(key, set()) & step
                if todo:
                    ran.add(key)
                    jobs.append((todo, key))
                elif j == len(steps) - 1 and key not in ran:
                    log(f"  skip {key}: up to date")
            _run_all(jobs)
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
