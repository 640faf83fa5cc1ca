"""Groups `dataset` and `export`: instruction_samples (+ dropped_samples), its checks, the exports, the
card, sample lineage.

The rules live in mmoral_pipeline/dataset/ (assemble, split, drops, exports, lineage, integrity, card);
this module only wires them: inputs from the generation tables (every batch partition the gate
admits, `defs.gates`), config from the launchpad, metadata on every materialisation, blocking
checks before the exports.
"""

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

from mmoral_pipeline.dataset import assemble, card, drops, exports, integrity, lineage, split
from mmoral_pipeline.dataset.settings import DatasetSettings, exports_dir
from mmoral_pipeline.defs.gates import fan_in_gate
from mmoral_pipeline.defs.io_manager import registered_partitions, table_reader
from mmoral_pipeline.defs.metadata import counts_markdown, png_markdown, table_metadata
from mmoral_pipeline.domain.near_duplicates import NEAR_DUPLICATE_MAX_DISTANCE, content_links
from mmoral_pipeline.progress import Progress, reporting

DATASET_CODE_VERSION = f"{assemble.messages_version()}+{split.SPLIT_VERSION}"
EXPORT_CODE_VERSION = exports.EXPORT_VERSION
FAN_IN = (*assemble.GENERATION_TABLES, "raw_images")  # the batch tables instruction_samples reads


class InstructionSamplesConfig(dg.Config):
    """Split and filtering knobs (same fields as mmoral_pipeline.dataset.settings.DatasetSettings)."""

    val_fraction: float = split.DEFAULT_VAL_FRACTION
    holdout_fraction: float = split.DEFAULT_HOLDOUT_FRACTION
    holdout_image_ids: list[str] = []
    holdout_file: str = ""
    require_validated: bool = True
    near_duplicate_max_distance: int = NEAR_DUPLICATE_MAX_DISTANCE

    def settings(self) -> DatasetSettings:
        return DatasetSettings(**self.model_dump())


def _all_batches(name: str) -> dg.AssetIn:
    """Every registered batch of a partitioned table (a fan-in: the IO manager's gate applies)."""
    return dg.AssetIn(name, metadata={"allow_missing_partitions": True})


@dg.multi_asset(
    outs={
        "instruction_samples": dg.AssetOut(
            description="Every generated instance in one schema: content-hash ids, messages, provenance; "
            "de-duplicated; split train / val / bench by content group.",
            kinds={"parquet", "polars"},
            code_version=DATASET_CODE_VERSION,
        ),
        "dropped_samples": dg.AssetOut(
            description="One row per generation row the assembly dropped (invalid, no image, failed validation, "
            "exact or near duplicate) or altered (dialogue turns merged or trimmed), with its reason.",
            kinds={"parquet", "polars"},
            code_version=DATASET_CODE_VERSION,
        ),
    },
    ins={name: _all_batches(name) for name in FAN_IN},
    group_name="dataset",
)
def instruction_samples(
    context: dg.AssetExecutionContext,
    config: InstructionSamplesConfig,
    reports: dict[str, pl.LazyFrame],
    vqa_items: dict[str, pl.LazyFrame],
    dialogues: dict[str, pl.LazyFrame],
    attribute_tasks: dict[str, pl.LazyFrame],
    raw_images: pl.LazyFrame,
):
    """Assemble every batch the gate admits: one schema, de-duplicated, split by content.

    Reads every admitted batch of the generation tables one partition at a time (lazy scans, only the
    columns it needs). Exact duplicates (same image, task and conversation) and near duplicates (same
    image, same normalised text) are dropped; images are grouped by sha256, perceptual hash and patient
    key, and each group goes to train / val / bench (the benchmark hold-out) by a hash of its key. Every
    dropped or altered row is in `dropped_samples`; partitions left out by the gate are listed.
    """
    settings = config.settings()
    generated = {"reports": reports, "vqa_items": vqa_items, "dialogues": dialogues, "attribute_tasks": attribute_tasks}
    total = assemble.partitions_of(generated)
    # each batch's samples go to a spill folder as they are made: the step holds one batch, not 1.2M samples
    spill = Path(tempfile.mkdtemp(prefix="mmoral-instruction-samples-"))
    try:
        with reporting(Progress("instruction_samples", total, context.log.info, unit="partitions")):
            frame, stats = assemble.assemble_samples(
                generated,
                raw_images,
                val_fraction=settings.val_fraction,
                holdout_fraction=settings.holdout_fraction,
                explicit_holdout=settings.explicit_holdout(),
                require_validated=settings.require_validated,
                near_duplicate_max_distance=settings.near_duplicate_max_distance,
                spill_dir=spill,
            )
        yield from _instruction_samples_outputs(context, settings, frame, stats)
    finally:  # the IO manager has written the table when the generator resumes after its Output
        shutil.rmtree(spill, ignore_errors=True)


def _instruction_samples_outputs(context, settings, frame: pl.LazyFrame, stats: assemble.AssemblyStats):
    gate = fan_in_gate(context, FAN_IN)
    dropped = stats.drops.frame()
    dist = card.distributions(frame.select("dimensions", "task_type", "source", "split").collect())
    per_image = frame.select("image_id", "split").unique("image_id").collect()
    images_by_split = card._counts(per_image, "split") if per_image.height else {}
    yield dg.Output(
        frame,
        output_name="instruction_samples",
        metadata={
            **table_metadata(frame, max_cell=60),
            **gate.metadata(),
            "exact_duplicates_removed": dg.MetadataValue.int(stats.exact_duplicates),
            "near_duplicates_removed": dg.MetadataValue.int(stats.near_duplicates),
            "invalid_rows": dg.MetadataValue.int(stats.invalid),
            "rows_without_image": dg.MetadataValue.int(stats.missing_image),
            "failed_validation": dg.MetadataValue.int(stats.failed_validation),
            "altered_dialogues": dg.MetadataValue.int(stats.altered_dialogues),
            "assembly": dg.MetadataValue.json(stats.as_dict()),
            "split_groups": dg.MetadataValue.json(stats.split.as_dict()),
            "settings": dg.MetadataValue.json(settings.model_dump()),
            "per_split": dg.MetadataValue.md(counts_markdown(dist["split"], key="split")),
            "images_per_split": dg.MetadataValue.json(images_by_split),
            "per_task": dg.MetadataValue.md(counts_markdown(dist["task"], key="task")),
            "per_dimension": dg.MetadataValue.md(counts_markdown(dist["dimension"], key="dimension")),
        },
    )
    yield dg.Output(
        dropped,
        output_name="dropped_samples",
        metadata={
            **table_metadata(dropped, max_cell=80),
            "dropped_per_reason": dg.MetadataValue.json(stats.drops.counts("dropped")),
            "altered_per_reason": dg.MetadataValue.json(stats.drops.counts("altered")),
        },
    )


_IMAGE_COLUMNS = ["image_id", "split", "image_sha256", "image_phash", "patient_key", "source"]


def _select(frame: pl.LazyFrame | pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    """Those of `columns` the table has, collected: what a check reads of a 1.3M-row table."""
    lf = frame.lazy()
    have = set(lf.collect_schema().names())
    return lf.select([c for c in columns if c in have]).collect()


def _height(frame: pl.LazyFrame | pl.DataFrame) -> int:
    lf = frame.lazy()
    return int(lf.select(pl.len()).collect().item()) if lf.collect_schema().names() else 0


def _image_rows(samples: pl.DataFrame) -> list[dict[str, Any]]:
    """One row per (image, split) of instruction_samples, with the content the split compares."""
    if samples.height == 0:
        return []
    cols = {
        "image_id": "image_id",
        "split": "split",
        "image_sha256": "sha256",
        "image_phash": "phash",
        "patient_key": "patient_key",
        "source": "source",
    }
    present = [c for c in cols if c in samples.columns]
    return samples.select(present).unique(["image_id", "split"]).rename({c: cols[c] for c in present}).to_dicts()


@dg.asset_check(asset="instruction_samples", blocking=True)
def split_disjoint(context: dg.AssetCheckExecutionContext, instruction_samples: pl.LazyFrame) -> dg.AssetCheckResult:
    """No X-ray in two splits, by content: no image id, sha256, patient key or perceptual hash (within the
    measured near-duplicate distance) shared by images in different splits; no duplicate sample id.

    Compares with the measured threshold whatever the split was configured with. Blocking: the exports do
    not run when this fails, so no copy of a held-out X-ray reaches training.
    """
    instruction_samples = _select(instruction_samples, ["sample_id", *_IMAGE_COLUMNS])
    links = split.cross_split_links(_image_rows(instruction_samples), max_distance=NEAR_DUPLICATE_MAX_DISTANCE)
    dup_ids = (
        instruction_samples.height - instruction_samples["sample_id"].n_unique() if instruction_samples.height else 0
    )
    by_kind: dict[str, int] = {}
    for link in links:
        by_kind[link.kind] = by_kind.get(link.kind, 0) + 1
    passed = not links and dup_ids == 0
    return dg.AssetCheckResult(
        passed=passed,
        metadata={
            "image_pairs_across_splits": len(links),
            "pairs_by_kind": dg.MetadataValue.json(by_kind),
            "duplicate_sample_ids": dup_ids,
            "near_duplicate_max_distance": NEAR_DUPLICATE_MAX_DISTANCE,
            "examples": dg.MetadataValue.json([link.as_dict() for link in links[:10]]),
        },
        description=None
        if passed
        else f"{len(links)} pair(s) of one X-ray or one patient in different splits {by_kind}"
        + (f", {dup_ids} duplicate sample id(s)" if dup_ids else ""),
    )


@dg.asset_check(asset="instruction_samples", blocking=False)
def copies_across_sources(
    context: dg.AssetCheckExecutionContext, instruction_samples: pl.LazyFrame
) -> dg.AssetCheckResult:
    """The same X-ray arriving from two sources (sha256 or perceptual hash): kept in one split, but trained on
    twice. A warning for the sources' owner (drop one copy from a source to silence it)."""
    rows = _image_rows(_select(instruction_samples, _IMAGE_COLUMNS))
    links = content_links([r.get("sha256") for r in rows], [r.get("phash") for r in rows], [None] * len(rows))
    pairs = [
        (rows[link.a], rows[link.b], link) for link in links if rows[link.a].get("source") != rows[link.b].get("source")
    ]
    return dg.AssetCheckResult(
        passed=not pairs,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "copies": len(pairs),
            "examples": dg.MetadataValue.json(
                [{"images": [a["image_id"], b["image_id"]], "kind": link.kind} for a, b, link in pairs[:10]]
            ),
        },
        description=None
        if not pairs
        else f"{len(pairs)} X-ray(s) present in two sources (same split; consider removing one copy)",
    )


@dg.asset_check(
    asset="instruction_samples",
    blocking=True,
    additional_ins={
        "dropped_samples": dg.AssetIn("dropped_samples"),
        **{name: _all_batches(name) for name in assemble.GENERATION_TABLES},
    },
)
def rows_accounted(
    context: dg.AssetCheckExecutionContext,
    instruction_samples: pl.LazyFrame,
    dropped_samples: pl.DataFrame,
    reports: pl.LazyFrame,
    vqa_items: pl.LazyFrame,
    dialogues: pl.LazyFrame,
    attribute_tasks: pl.LazyFrame,
) -> dg.AssetCheckResult:
    """Every drop has a row: for each generation table, rows in = rows in instruction_samples + rows in
    dropped_samples (of the same admitted batches). Blocking: nothing vanishes on the way to the exports."""
    generated = {"reports": reports, "vqa_items": vqa_items, "dialogues": dialogues, "attribute_tasks": attribute_tasks}
    rows_in = {name: _height(lf) for name, lf in generated.items()}
    samples = _select(instruction_samples, ["generation_table"])
    rows_out = dict(card._counts(samples, "generation_table")) if samples.height else {}
    table = drops.balance(rows_in, rows_out, dropped_samples)
    bad = {t: v for t, v in table.items() if not v["ok"]}
    return dg.AssetCheckResult(
        passed=not bad,
        metadata={"balance": dg.MetadataValue.json(table), "unbalanced_tables": dg.MetadataValue.json(sorted(bad))},
        description=None if not bad else f"rows in != rows out + dropped for {sorted(bad)}: {bad}",
    )


# the experts' boxes too: documents cite them beside the human labels
_INTEGRITY_TABLES = (
    "raw_images", "image_attributes", "raw_annotations", "expert_annotations", *assemble.GENERATION_TABLES
)


@dg.asset_check(
    asset="instruction_samples",
    blocking=False,
    additional_ins={name: _all_batches(name) for name in _INTEGRITY_TABLES},
)
def referential_integrity(
    context: dg.AssetCheckExecutionContext,
    instruction_samples: pl.LazyFrame,
    raw_images: pl.LazyFrame,
    image_attributes: pl.LazyFrame,
    raw_annotations: pl.LazyFrame,
    expert_annotations: pl.LazyFrame,
    reports: pl.LazyFrame,
    vqa_items: pl.LazyFrame,
    dialogues: pl.LazyFrame,
    attribute_tasks: pl.LazyFrame,
) -> dg.AssetCheckResult:
    """No orphans: every sample's generation row, image, attribute row and annotations exist; images unchanged
    (sha256). Reads only the columns the links need (1.3M rows stay small)."""
    tables = {
        "raw_images": raw_images,
        "image_attributes": image_attributes,
        "raw_annotations": raw_annotations,
        "expert_annotations": expert_annotations,
        "reports": reports,
        "vqa_items": vqa_items,
        "dialogues": dialogues,
        "attribute_tasks": attribute_tasks,
    }

    def read_links(name: str) -> pl.DataFrame | None:
        table = tables.get(name)
        if table is None or not table.collect_schema().names():
            return None
        return _select(table, integrity.LINK_COLUMNS.get(name, table.collect_schema().names()))

    samples = _select(instruction_samples, integrity.SAMPLE_COLUMNS)
    with reporting(Progress("referential_integrity", samples["image_id"].n_unique(), context.log.info, unit="images")):
        report = integrity.check_integrity(samples, read_links)
    return dg.AssetCheckResult(
        passed=report.ok,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "samples": report.samples,
            "images_rehashed": report.images_checked,
            "problems": dg.MetadataValue.json(report.problems),
            "missing_tables": dg.MetadataValue.json(report.missing_tables),
            "report": dg.MetadataValue.md(integrity.report_markdown(report)),
        },
    )


@dg.asset_check(
    asset="benchmark_items",
    blocking=True,
    additional_ins={
        "instruction_samples": dg.AssetIn(
            "instruction_samples",
            metadata={"columns": ["image_id", "split", "image_sha256", "image_phash", "patient_key", "source"]},
        )
    },
)
def benchmark_images_held_out(
    context: dg.AssetCheckExecutionContext, benchmark_items: pl.DataFrame, instruction_samples: pl.DataFrame
) -> dg.AssetCheckResult:
    """Every benchmark item's X-ray is in the bench split, and no train/val sample is of the same X-ray or
    patient (sha256, perceptual hash, patient key). Blocking: no model is scored on a leaked benchmark."""
    bench_ids = (
        set(benchmark_items["image_id"].drop_nulls().to_list()) if "image_id" in benchmark_items.columns else set()
    )
    rows = _image_rows(instruction_samples)
    outside = sorted(bench_ids - {r["image_id"] for r in rows if r["split"] == "bench"})
    marked = [
        {**r, "split": "bench" if r["image_id"] in bench_ids else "train/val"}
        for r in rows
        if r["image_id"] in bench_ids or r["split"] != "bench"
    ]
    leaks = split.cross_split_links(marked)
    passed = not outside and not leaks
    return dg.AssetCheckResult(
        passed=passed,
        metadata={
            "benchmark_images": len(bench_ids),
            "not_in_bench_split": dg.MetadataValue.json(outside[:10]),
            "train_val_copies": len(leaks),
            "examples": dg.MetadataValue.json([link.as_dict() for link in leaks[:10]]),
        },
        description=None
        if passed
        else f"{len(outside)} benchmark image(s) outside the bench split, {len(leaks)} train/val copies",
    )


# ---------------------------------------------------------------- exports


def _rows_to_export(samples: pl.LazyFrame) -> int:
    return int(samples.filter(pl.col("split").is_in(["train", "val"])).select(pl.len()).collect().item())


def _files_md(info: dict[str, Any]) -> dg.MetadataValue:
    return dg.MetadataValue.md("\n".join(f"- `{f}`" for f in info["files"]))


@dg.asset(group_name="export", kinds={"json"}, code_version=EXPORT_CODE_VERSION)
def llamafactory_export(context: dg.AssetExecutionContext, instruction_samples: pl.LazyFrame) -> dg.MaterializeResult:
    """LLaMA-Factory sharegpt JSON (train, val), dataset_info.json and the images (relative paths), under
    exports/llamafactory/: a folder to copy to the training machine and pass as `dataset_dir`."""
    out = exports_dir() / "llamafactory"
    with reporting(
        Progress("llamafactory_export", _rows_to_export(instruction_samples), context.log.info, unit="samples")
    ):
        info = exports.write_llamafactory(instruction_samples, out)
    example = instruction_samples.filter(pl.col("split") == "train").head(1).collect()
    return dg.MaterializeResult(
        metadata={
            "dagster/uri": dg.MetadataValue.path(str(out)),
            "files": _files_md(info),
            **{f"rows_{k}": dg.MetadataValue.int(v) for k, v in info["counts"].items()},
            "images": dg.MetadataValue.json(info["images"]),
            "example": dg.MetadataValue.json(exports.to_sharegpt(example.row(0, named=True)) if example.height else {}),
        }
    )


class TrlExportConfig(dg.Config):
    hf_dataset: bool = True  # also save the rows as a `datasets` DatasetDict (exports/trl/hf_dataset)


@dg.asset(group_name="export", kinds={"json", "huggingface"}, code_version=EXPORT_CODE_VERSION)
def trl_export(
    context: dg.AssetExecutionContext, config: TrlExportConfig, instruction_samples: pl.LazyFrame
) -> dg.MaterializeResult:
    """TRL conversational rows (messages + relative images) as train/val JSONL and a Hugging Face dataset on disk,
    with the images, under exports/trl/ (self-contained)."""
    out = exports_dir() / "trl"
    with reporting(Progress("trl_export", _rows_to_export(instruction_samples), context.log.info, unit="samples")):
        info = exports.write_trl(instruction_samples, out, hf_dataset=config.hf_dataset)
    example = instruction_samples.filter(pl.col("split") == "train").head(1).collect()
    return dg.MaterializeResult(
        metadata={
            "dagster/uri": dg.MetadataValue.path(str(out)),
            "files": _files_md(info),
            **{f"rows_{k}": dg.MetadataValue.int(v) for k, v in info["counts"].items()},
            "images": dg.MetadataValue.json(info["images"]),
            "example": dg.MetadataValue.json(exports.to_trl(example.row(0, named=True)) if example.height else {}),
        }
    )


class BenchExportConfig(dg.Config):
    image_max_side: int | None = None  # downscale embedded JPEGs (None: full resolution, like the released files)


@dg.asset(group_name="export", kinds={"tsv"}, code_version=EXPORT_CODE_VERSION)
def bench_tsv_export(
    context: dg.AssetExecutionContext, config: BenchExportConfig, instruction_samples: pl.LazyFrame
) -> dg.MaterializeResult:
    """Every generated question on the benchmark hold-out images as MMOral-OPG-Bench TSVs
    (closed_ended.tsv, open_ended.tsv, base64 JPEG images), under exports/holdout/.

    The curated benchmark (5 closed + 6 open per image, as MMOral-Bench) is `benchmark_items`,
    which writes exports/bench/; this export is the full hold-out pool for other tools.
    """
    out = exports_dir() / "holdout"
    n_bench = int(instruction_samples.filter(pl.col("split") == "bench").select(pl.len()).collect().item())
    with reporting(Progress("bench_tsv_export", n_bench, context.log.info, unit="samples")):
        info = exports.write_bench_tsvs(instruction_samples, out, image_max_side=config.image_max_side)
    return dg.MaterializeResult(
        metadata={
            "dagster/uri": dg.MetadataValue.path(str(out)),
            "files": _files_md(info),
            "closed_items": dg.MetadataValue.int(info["counts"]["closed"]),
            "open_items": dg.MetadataValue.int(info["counts"]["open"]),
            "images": dg.MetadataValue.int(info["images"]),
            "skipped_tasks": dg.MetadataValue.json(info["skipped"]),
        }
    )


def _latest_metadata(context: dg.AssetExecutionContext, key: str) -> dict[str, Any]:
    try:
        event = context.instance.get_latest_materialization_event(dg.AssetKey(key))
    except Exception:
        return {}
    if event is None or event.asset_materialization is None:
        return {}
    return {k: getattr(v, "value", v) for k, v in event.asset_materialization.metadata.items()}


@dg.asset(
    group_name="export",
    kinds={"markdown"},
    code_version=EXPORT_CODE_VERSION,
    deps=[llamafactory_export, trl_export, bench_tsv_export],
)
def dataset_card(context: dg.AssetExecutionContext, instruction_samples: pl.LazyFrame) -> dg.MaterializeResult:
    """DATASET_CARD.md beside the exports: counts by task, dimension, source and split, plots, prompt/code
    versions, config."""
    instruction_samples = instruction_samples.select(card.CARD_COLUMNS).collect()
    upstream = _latest_metadata(context, "instruction_samples")
    out = exports_dir()
    code_versions = {
        "instruction_samples": DATASET_CODE_VERSION,
        "exports": EXPORT_CODE_VERSION,
        "git_commit": card.git_commit() or "unknown",
        "dagster_run_id": context.run_id,
    }
    files = {  # relative to the exports folder: the card travels with it
        name: {"files": sorted(p.relative_to(out).as_posix() for p in (out / name).glob("*"))}
        for name in ("llamafactory", "trl", "holdout", "bench")
        if (out / name).exists()
    }
    png = card.distribution_png(instruction_samples)
    settings = upstream.get("settings") or {}
    md = card.card_markdown(
        instruction_samples,
        config={"dataset": settings},
        code_versions=code_versions,
        assembly_stats=upstream.get("assembly"),
        exports=files,
        figure="dataset_card.png",
    )
    written = card.write_card(out, md, png)
    dist = card.distributions(instruction_samples)
    return dg.MaterializeResult(
        metadata={
            "dagster/uri": dg.MetadataValue.path(str(written[-1])),
            "card": dg.MetadataValue.md(md.replace("![distributions](dataset_card.png)", "")),
            "distributions": png_markdown(png, "distributions"),
            "counts": dg.MetadataValue.json(dist),
        }
    )


# ---------------------------------------------------------------- sample lineage job


class SampleLineageConfig(dg.Config):
    sample_id: str  # a sample_id from instruction_samples / the exports (a unique prefix of 6+ characters works)


@dg.op
def trace_sample(context: dg.OpExecutionContext, config: SampleLineageConfig) -> None:
    """Walk one sample back to its request, caption, attribute rows, annotations and raw image.

    The chain is logged as Markdown metadata on an observation of instruction_samples, so it shows
    in this run's event log and on the asset's page.
    """
    try:
        from mmoral_pipeline.generation.cache import default_cache_path

        read = table_reader(registered_partitions(context.instance), lazy=True)  # only batches still registered
        chain = lineage.resolve_lineage(config.sample_id, read, cache_path=default_cache_path())
    except lineage.UnknownSampleError as exc:
        raise dg.Failure(description=str(exc)) from exc
    md = lineage.render_markdown(chain)
    context.log_event(
        dg.AssetObservation(
            asset_key="instruction_samples",
            metadata={
                "sample_id": chain.sample["sample_id"],
                "lineage": dg.MetadataValue.md(md),
                "image_path": dg.MetadataValue.path(str((chain.image or {}).get("path"))),
                "annotations": dg.MetadataValue.int(len(chain.annotations)),
                "problems": dg.MetadataValue.json(chain.problems),
                "chain": dg.MetadataValue.json(json.loads(chain.model_dump_json())),
            },
        )
    )
    context.log.info(lineage.render_text(chain))


@dg.job(
    name="sample_lineage",
    description="Show one instruction sample's whole lineage (run config: ops.trace_sample.config.sample_id).",
)
def sample_lineage():
    trace_sample()


dataset_assets = [instruction_samples, llamafactory_export, trl_export, bench_tsv_export, dataset_card]
dataset_checks = [split_disjoint, copies_across_sources, rows_accounted, referential_integrity]
benchmark_checks = [
    benchmark_images_held_out
]  # checks on benchmark_items (defs/evaluation.py); in the Definitions beside it
dataset_jobs = [sample_lineage]
