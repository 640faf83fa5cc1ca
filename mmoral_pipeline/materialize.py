"""`mmoral materialize`: register partitions from the sources file, then materialise a selection
for every partition on the persistent Dagster instance, so runs show up in the UI afterwards.
"""

from __future__ import annotations

import os
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


def materialize(selection: str | None = None, sources_path: str | None = None, instance=None, run_config=None, log=print) -> MaterializeReport:
    import dagster as dg

    from mmoral_pipeline.definitions import defs

    if sources_path:
        os.environ["MMORAL_SOURCES"] = str(Path(sources_path).resolve())
    if instance is None:
        ensure_dagster_home()
        instance = dg.DagsterInstance.get()
    if LLM_POOL not in instance.event_log_storage.get_concurrency_keys():
        instance.event_log_storage.set_concurrency_slots(LLM_POOL, int(os.environ.get("MMORAL_LLM_POOL_LIMIT", "2")))

    if run_config is None:
        # The run logs are in the UI; on the terminal only warnings and our own progress lines.
        level = os.environ.get("MMORAL_LOG_LEVEL", "WARNING").upper()
        run_config = {"loggers": {"console": {"config": {"log_level": level}}}}
    report = MaterializeReport(partitions=register_partitions(instance, sources_path))
    repo = defs.get_repository_def()
    graph = repo.asset_graph
    sel = dg.AssetSelection.from_string(selection) if selection else dg.AssetSelection.all()
    chosen = sel.resolve(graph)
    partitioned = {k for k in chosen if graph.get(k).is_partitioned}
    unpartitioned = chosen - partitioned
    assets = list(defs.assets or []) + list(defs.asset_checks or [])
    resources = dict(defs.resources or {})

    def _run(keys, partition_key):
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
        if not result.success:
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
        log(f"  {'ok  ' if result.success else 'FAIL'} {label}: run {result.run_id[:8]}")

    if partitioned:
        log(f"Materialising {len(partitioned)} partitioned asset(s) for {len(report.partitions)} partition(s)")
        for key in report.partitions:
            _run(partitioned, key)
    if unpartitioned:
        log(f"Materialising {len(unpartitioned)} unpartitioned asset(s)")
        _run(unpartitioned, None)
    return report


def format_checks(report: MaterializeReport) -> str:
    lines = ["Asset checks:"]
    for c in report.checks:
        status = "PASS" if c.passed else ("WARN" if c.severity == "WARN" else "FAIL")
        part = f" [{c.partition}]" if c.partition else ""
        desc = f" - {c.description}" if c.description and not c.passed else ""
        lines.append(f"  {status:4} {c.asset}.{c.check}{part}{desc}")
    if len(lines) == 1:
        lines.append("  (none ran)")
    return "\n".join(lines)
