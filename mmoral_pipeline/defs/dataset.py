"""Groups `dataset` and `export`: instruction_samples, its checks, the exports, the card, sample lineage.

The rules live in mmoral_pipeline/dataset/ (assemble, split, exports, lineage, integrity, card);
this module only wires them: inputs from the generation tables (all batch partitions), config
from the launchpad, metadata on every materialisation, a blocking split check before exports.
"""

import json
from typing import Any

import dagster as dg
import polars as pl

from mmoral_pipeline.config import mmoral_home
from mmoral_pipeline.dataset import assemble, card, exports, integrity, lineage, split
from mmoral_pipeline.dataset.settings import DatasetSettings, exports_dir
from mmoral_pipeline.defs.io_manager import read_table, scan_table
from mmoral_pipeline.defs.metadata import counts_markdown, png_markdown, table_metadata
from mmoral_pipeline.progress import Progress, reporting

DATASET_CODE_VERSION = f"{assemble.messages_version()}+{split.SPLIT_VERSION}"
EXPORT_CODE_VERSION = exports.EXPORT_VERSION


def _table_reader(name: str) -> pl.DataFrame | None:
    """Tables as the IO manager wrote them; None when a table was never materialised."""
    try:
        return read_table(name, base_dir=mmoral_home())
    except FileNotFoundError:
        return None


def _table_scanner(name: str) -> pl.LazyFrame | None:
    """Lazy scans of the tables (lineage reads one sample's rows, not whole tables); None when never materialised."""
    try:
        return scan_table(name, base_dir=mmoral_home())
    except FileNotFoundError:
        return None


class InstructionSamplesConfig(dg.Config):
    """Split and filtering knobs (same fields as mmoral_pipeline.dataset.settings.DatasetSettings)."""

    val_fraction: float = split.DEFAULT_VAL_FRACTION
    holdout_fraction: float = split.DEFAULT_HOLDOUT_FRACTION
    holdout_image_ids: list[str] = []
    holdout_file: str = ""
    require_validated: bool = True

    def settings(self) -> DatasetSettings:
        return DatasetSettings(**self.model_dump())


_GEN_INS = {
    name: dg.AssetIn(name, metadata={"allow_missing_partitions": True}) for name in assemble.GENERATION_TABLES
}


@dg.asset(
    group_name="dataset",
    kinds={"parquet", "polars"},
    code_version=DATASET_CODE_VERSION,
    ins={**_GEN_INS, "raw_images": dg.AssetIn("raw_images", metadata={"allow_missing_partitions": True})},
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
    """Every generated instance in one schema: content-hash ids, messages, provenance; de-duplicated; split by image.

    Reads all batch partitions of the generation tables, one partition at a time (lazy scans, only the
    columns it needs). Exact duplicates (same image, task and conversation) and near duplicates (same
    image, same normalised text) are dropped; images are split train / val / bench (the benchmark
    hold-out) by a hash of their id, grouped by source.
    """
    settings = config.settings()
    generated = {"reports": reports, "vqa_items": vqa_items, "dialogues": dialogues, "attribute_tasks": attribute_tasks}
    with reporting(Progress("instruction_samples", assemble.partitions_of(generated), context.log.info, unit="partitions")):
        frame, stats = assemble.assemble_samples(
            generated,
            raw_images,
            val_fraction=settings.val_fraction,
            holdout_fraction=settings.holdout_fraction,
            explicit_holdout=settings.explicit_holdout(),
            require_validated=settings.require_validated,
        )
    dist = card.distributions(frame)
    images_by_split = card._counts(frame.unique("image_id"), "split") if frame.height else {}
    return dg.MaterializeResult(
        value=frame,
        metadata={
            **table_metadata(frame, max_cell=60),
            "exact_duplicates_removed": dg.MetadataValue.int(stats.exact_duplicates),
            "near_duplicates_removed": dg.MetadataValue.int(stats.near_duplicates),
            "invalid_rows": dg.MetadataValue.int(stats.invalid),
            "rows_without_image": dg.MetadataValue.int(stats.missing_image),
            "failed_validation": dg.MetadataValue.int(stats.failed_validation),
            "assembly": dg.MetadataValue.json(stats.as_dict()),
            "dropped_examples": dg.MetadataValue.json(stats.dropped_examples),
            "settings": dg.MetadataValue.json(settings.model_dump()),
            "per_split": dg.MetadataValue.md(counts_markdown(dist["split"], key="split")),
            "images_per_split": dg.MetadataValue.json(images_by_split),
            "per_task": dg.MetadataValue.md(counts_markdown(dist["task"], key="task")),
            "per_dimension": dg.MetadataValue.md(counts_markdown(dist["dimension"], key="dimension")),
        },
    )


@dg.asset_check(asset=instruction_samples, blocking=True)
def split_disjoint(context: dg.AssetCheckExecutionContext, instruction_samples: pl.LazyFrame) -> dg.AssetCheckResult:
    """Zero overlap: no image in two splits, no duplicate sample id, no benchmark item image in train/val.

    Blocking: the exports do not run when this fails, so a held-out X-ray never reaches training.
    """
    instruction_samples = instruction_samples.select("sample_id", "image_id", "split").collect()
    overlap = assemble.split_overlap(instruction_samples)
    dup_ids = instruction_samples.height - instruction_samples["sample_id"].n_unique() if instruction_samples.height else 0
    bench_leak: list[str] = []
    bench_items = _table_reader("benchmark_items")
    if bench_items is not None and "image_id" in bench_items.columns and instruction_samples.height:
        trainval = set(instruction_samples.filter(pl.col("split") != "bench")["image_id"].to_list())
        bench_leak = sorted(trainval & set(bench_items["image_id"].drop_nulls().to_list()))
    n_overlap = sum(len(v) for v in overlap.values())
    passed = n_overlap == 0 and dup_ids == 0 and not bench_leak
    return dg.AssetCheckResult(
        passed=passed,
        metadata={
            "images_in_several_splits": n_overlap,
            "duplicate_sample_ids": dup_ids,
            "benchmark_item_images_in_train_val": len(bench_leak),
            "examples": dg.MetadataValue.json({**{k: v[:5] for k, v in overlap.items()}, "benchmark_leak": bench_leak[:5]}),
        },
        description=None if passed else "train/val and the benchmark hold-out share images",
    )


@dg.asset_check(asset=instruction_samples, blocking=False)
def referential_integrity(context: dg.AssetCheckExecutionContext, instruction_samples: pl.LazyFrame) -> dg.AssetCheckResult:
    """No orphans: every sample's generation row, image, attribute row and annotations exist; images unchanged (sha256)."""

    def read_links(name: str) -> pl.DataFrame | None:  # only the columns the links need: 1.3M rows stay small
        table = _table_scanner(name)
        if table is None:
            return None
        have = table.collect_schema().names()
        return table.select([c for c in integrity.LINK_COLUMNS.get(name, have) if c in have]).collect()

    samples = instruction_samples.select(integrity.SAMPLE_COLUMNS).collect()
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
    with reporting(Progress("llamafactory_export", _rows_to_export(instruction_samples), context.log.info, unit="samples")):
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
def trl_export(context: dg.AssetExecutionContext, config: TrlExportConfig, instruction_samples: pl.LazyFrame) -> dg.MaterializeResult:
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
def bench_tsv_export(context: dg.AssetExecutionContext, config: BenchExportConfig, instruction_samples: pl.LazyFrame) -> dg.MaterializeResult:
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
    except Exception:  # noqa: BLE001 - the card is still useful without the upstream metadata
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
    """DATASET_CARD.md beside the exports: counts by task, dimension, source and split, plots, prompt/code versions, config."""
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
        for name in ("llamafactory", "trl", "holdout", "bench") if (out / name).exists()
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

        chain = lineage.resolve_lineage(config.sample_id, _table_scanner, cache_path=default_cache_path())
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


@dg.job(name="sample_lineage", description="Show one instruction sample's whole lineage (run config: ops.trace_sample.config.sample_id).")
def sample_lineage():
    trace_sample()


dataset_assets = [instruction_samples, llamafactory_export, trl_export, bench_tsv_export, dataset_card]
dataset_checks = [split_disjoint, referential_integrity]
dataset_jobs = [sample_lineage]
