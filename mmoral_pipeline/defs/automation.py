"""When the pipeline runs without a person: jobs, the weekly schedule, the raw-data sensor and the
declarative automation of cheap derived assets.

- `regenerate_dataset` (job) covers every data asset (ingest -> attributes -> generation -> dataset
  -> exports, and benchmark items); anything downstream of training is excluded. The weekly
  schedule `weekly_regeneration` requests one run of it per registered batch (the per-batch assets),
  and the dataset-wide assets (instruction samples, exports, dataset card, benchmark items) follow
  through `derived_assets_automation` once no batch is in flight.
- `raw_data_sensor` watches the folders of every source in the sources file, registers new batches
  as dynamic partitions and requests `process_batches` runs for new or changed batches only.
- `derived_assets_automation` evaluates `DERIVED_CONDITION` (eager) on the unpartitioned
  dataset-level assets and their checks; it is the only automation that is on by default, because
  those assets are cheap and make no LLM requests.
- Training (`sft_model`) and anything downstream of it is never triggered automatically: it is in
  no job, schedule or sensor target here. Nor is training an expert (`expert_model`); the batches'
  `expert_annotations` are data and run with the other per-batch assets.

Selections are built from groups and partition kinds, not asset names, so assets of other groups
join the right job as they land.
"""

import hashlib
import json
import os
import warnings
from collections.abc import Iterable
from pathlib import Path

import dagster as dg

from mmoral_pipeline.batches import Batch, plan_batches
from mmoral_pipeline.config import SourcesFile
from mmoral_pipeline.defs.partitions import BATCHES, batch_partitions
from mmoral_pipeline.defs.resources import SourcesResource

DATA_GROUPS = ("ingest", "attributes", "generation", "dataset", "export", "evaluation")
TRAINING_GROUPS = ("training",)
DERIVED_GROUPS = ("dataset", "export", "evaluation")
WEEKLY_CRON = os.environ.get("MMORAL_REGENERATION_CRON", "0 3 * * 1")  # Mondays 03:00 UTC
RAW_DATA_SENSOR_INTERVAL_S = int(os.environ.get("MMORAL_RAW_DATA_SENSOR_INTERVAL_S", "60"))
FIRST_ASSET = dg.AssetKey("raw_images")  # materialised for a batch = the batch has been ingested
TRIGGER_TAG = "mmoral/trigger"

# Everything that is data: the stage groups, minus training and whatever needs a trained model
# (benchmark results). Benchmark items are data; scoring a model is not. Training an expert
# (`expert_model`, tagged TRAINING_TAG) is training too, but what it labels is data: only the asset
# itself is excluded.
TRAINING_TAG = ("mmoral/training", "true")
never_automatic = dg.AssetSelection.groups(*TRAINING_GROUPS).downstream() | dg.AssetSelection.tag(*TRAINING_TAG)
data_assets = dg.AssetSelection.groups(*DATA_GROUPS) - never_automatic
# The per-batch tables (one dynamic partition per source batch).
batch_assets = data_assets & dg.AssetSelection.from_string('partitions:"dynamic"')
# Dataset-wide tables computed from all batches: assembly, exports, card, benchmark items.
derived_assets = (dg.AssetSelection.groups(*DERIVED_GROUPS) - never_automatic) & dg.AssetSelection.from_string(
    'partitions:"none"'
)

# Cheap derived assets (and their checks, in the same run): `eager()` = materialise when missing or
# when any upstream updated, but never while an upstream batch is missing or still running (a weekly
# regeneration finishes every batch first). A changed prompt reaches them the same way: re-running
# the stale generation outputs updates their upstream. (`code_version_changed()` cannot be part of
# it: the sensor's default condition also applies to the checks, which have no code version.)
# Blocking means blocking across runs too: an export is never requested while a blocking check of an
# unpartitioned upstream (split_disjoint, rows_accounted) has not passed on its latest materialisation.
# Partitioned upstreams are gated per batch by the IO manager instead (defs/gates.py): one failing batch
# is left out of instruction_samples, it does not stop the dataset.
DERIVED_CONDITION = dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed().allow(
    dg.AssetSelection.from_string('partitions:"none"')
)

regenerate_dataset_job = dg.define_asset_job(
    "regenerate_dataset",
    selection=data_assets,
    description="Every data asset from raw files to exports and benchmark items (training excluded). "
    "Launch it for one batch from the launchpad, or let `weekly_regeneration` request it for all.",
    tags={TRIGGER_TAG: "regenerate_dataset"},
)

process_batches_job = dg.define_asset_job(
    "process_batches",
    selection=batch_assets,
    partitions_def=batch_partitions,
    description="The per-batch assets (ingest, attributes, generation) for one batch; "
    "what `raw_data_sensor` requests for new or changed batches.",
)


# --------------------------------------------------------------------------- fingerprints (pure)


def folder_stats(root: Path) -> dict[str, tuple[int, int]]:
    """relative path -> (mtime_ns, size) of every non-hidden file under `root`."""
    stats: dict[str, tuple[int, int]] = {}
    if not root.is_dir():
        return stats
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if name.startswith("."):
                continue
            path = Path(dirpath) / name
            try:
                st = path.stat()
            except OSError:  # vanished between listing and stat: the next tick sees the result
                continue
            stats[path.relative_to(root).as_posix()] = (st.st_mtime_ns, st.st_size)
    return stats


def _item_of(rel: str, items: set[str]) -> str | None:
    """The shard item a file belongs to: item keys are relative paths, or stems for paired formats."""
    p = Path(rel)
    for candidate in (rel, p.with_suffix("").as_posix(), p.stem, p.name):
        if candidate in items:
            return candidate
    return None


def _digest(parts: Iterable[str]) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def batch_fingerprints(sources: SourcesFile, batches: list[Batch] | None = None) -> dict[str, str]:
    """partition key -> fingerprint of the files that batch reads, and of its source's settings.

    A whole-source batch changes when any file under the source root changes. A shard changes when
    one of its items' files changes, when its item list changes, or when a file that belongs to no
    item (an annotation file shared by all shards) changes.
    """
    batches = plan_batches(sources) if batches is None else batches
    out: dict[str, str] = {}
    by_source: dict[str, list[Batch]] = {}
    for b in batches:
        by_source.setdefault(b.source.name, []).append(b)
    for source_batches in by_source.values():
        spec = source_batches[0].source
        stats = folder_stats(sources.root_of(spec))
        spec_json = spec.model_dump_json()
        if all(b.items is None for b in source_batches):
            fp = _digest([spec_json, *(f"{rel}:{m}:{s}" for rel, (m, s) in sorted(stats.items()))])
            for b in source_batches:
                out[b.key] = fp
            continue
        all_items = {i for b in source_batches for i in (b.items or ())}
        per_item: dict[str, list[str]] = {}
        shared: list[str] = []
        for rel, (m, s) in sorted(stats.items()):
            item = _item_of(rel, all_items)
            (per_item.setdefault(item, []) if item is not None else shared).append(f"{rel}:{m}:{s}")
        shared_fp = _digest([spec_json, *shared])
        for b in source_batches:
            parts = [shared_fp]
            for item in b.items or ():
                parts.append(f"item {item}")
                parts.extend(per_item.get(item, []))
            out[b.key] = _digest(parts)
    return out


# --------------------------------------------------------------------------- sensor


def _load_cursor(raw: str | None) -> dict | None:
    if not raw:
        return None
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError:
        return None
    return doc if isinstance(doc, dict) and isinstance(doc.get("fingerprints"), dict) else None


@dg.sensor(
    name="raw_data_sensor",
    job=process_batches_job,
    minimum_interval_seconds=RAW_DATA_SENSOR_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Watches the folders of every source in the sources file (mtime/size fingerprints in "
    "the cursor); registers new batches as dynamic partitions and runs `process_batches` for new or "
    "changed batches only. Off by default: turning it on spends LLM requests on new data.",
)
def raw_data_sensor(context: dg.SensorEvaluationContext, sources: SourcesResource) -> dg.SensorResult:
    sources_file = sources.load()
    batches = plan_batches(sources_file)
    current = batch_fingerprints(sources_file, batches)
    cursor = _load_cursor(context.cursor)
    registered = set(context.instance.get_dynamic_partitions(BATCHES))
    new_keys = [k for k in current if k not in registered]

    if cursor is None:
        # First tick: batches that are registered and already ingested are the baseline (the
        # sensor was switched on over existing data); everything else needs a run.
        ingested = context.instance.get_materialized_partitions(FIRST_ASSET)
        to_run = {k: "new" for k in current if k not in registered or k not in ingested}
        seq = 0
    else:
        previous: dict[str, str] = cursor["fingerprints"]
        to_run = {k: ("changed" if k in previous else "new") for k, fp in current.items() if previous.get(k) != fp}
        seq = int(cursor.get("seq", 0))
    if to_run:
        seq += 1
    gone = sorted(registered - set(current))
    if gone:
        context.log.info(f"registered batches no longer in the sources file (kept, not run): {gone}")

    run_requests = [
        dg.RunRequest(
            run_key=f"{key}@{current[key][:16]}#{seq}",
            partition_key=key,
            tags={TRIGGER_TAG: "raw_data_sensor", "mmoral/change": why},
        )
        for key, why in to_run.items()
    ]
    new_cursor = json.dumps({"seq": seq, "fingerprints": current}, sort_keys=True)
    return dg.SensorResult(
        run_requests=run_requests,
        dynamic_partitions_requests=[dg.AddDynamicPartitionsRequest(BATCHES, new_keys)] if new_keys else [],
        cursor=new_cursor,
        skip_reason=None if run_requests else "no new or changed batches",
    )


# --------------------------------------------------------------------------- schedule


@dg.schedule(
    name="weekly_regeneration",
    cron_schedule=WEEKLY_CRON,
    job=regenerate_dataset_job,
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Regenerates the whole dataset weekly: one `regenerate_dataset` run per registered batch "
    "(per-batch assets); the dataset-wide assets follow via `derived_assets_automation`. Unchanged LLM "
    "requests are answered from the response cache. Off by default.",
)
def weekly_regeneration(context: dg.ScheduleEvaluationContext, sources: SourcesResource):
    planned = [b.key for b in plan_batches(sources.load())]
    registered = set(context.instance.get_dynamic_partitions(BATCHES))
    keys = [k for k in planned if k in registered]
    if not keys:
        return dg.SkipReason(
            "no registered batch is in the sources file; run `mmoral partitions` or the raw_data_sensor"
        )
    per_batch = sorted(batch_assets.resolve(context.repository_def.asset_graph), key=lambda k: k.to_user_string())
    stamp = context.scheduled_execution_time.strftime("%Y-%m-%dT%H:%M") if context.scheduled_execution_time else "now"
    return [
        dg.RunRequest(
            run_key=f"weekly:{stamp}:{key}",
            partition_key=key,
            asset_selection=per_batch,
            tags={TRIGGER_TAG: "weekly_regeneration"},
        )
        for key in keys
    ]


# --------------------------------------------------------------------------- declarative automation

# `default_condition` (conditions for assets owned by other modules, without touching them) needs
# the user-code-server evaluation, both beta in Dagster 1.13: deliberate, so the warning is noise.
warnings.filterwarnings("ignore", message=".*(use_user_code_server|default_condition).*", category=dg.BetaWarning)

derived_assets_automation = dg.AutomationConditionSensorDefinition(
    "derived_assets_automation",
    target=derived_assets,
    default_condition=DERIVED_CONDITION,
    use_user_code_server=True,
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    run_tags={TRIGGER_TAG: "derived_assets_automation"},
    description="Keeps the cheap dataset-wide assets (instruction samples, exports, dataset card, benchmark "
    "items) and their checks up to date: eager, once no upstream batch is missing or running. No LLM calls.",
)

automation_jobs = [regenerate_dataset_job, process_batches_job]
automation_schedules = [weekly_regeneration]
automation_sensors = [raw_data_sensor, derived_assets_automation]
