"""Dagster shell of the evaluation stage: `benchmark_items` (+ `benchmark_holdout_pool`) and `benchmark_results`,
with their WARN checks.

All logic lives in `mmoral_pipeline.evaluation`; model runners import torch/transformers only when
a local checkpoint is actually run, so importing this module stays cheap.
"""

import json
from pathlib import Path

import dagster as dg
import polars as pl
from pydantic import Field

from mmoral_pipeline import progress
from mmoral_pipeline.config import mmoral_home
from mmoral_pipeline.defs.metadata import markdown_preview, png_markdown, table_metadata
from mmoral_pipeline.defs.resources import ModelEndpoints
from mmoral_pipeline.evaluation import verdicts
from mmoral_pipeline.evaluation.bench import CONTROLS, base_checkpoint_of
from mmoral_pipeline.evaluation.build import BUILD_VERSION, build_benchmark_items, holdout_ids, rejection_counts
from mmoral_pipeline.evaluation.frames import (
    encode_images,
    generated_closed,
    holdout_pool_frame,
    items_frame,
    items_from_frame,
    pick_images,
    report_texts,
)
from mmoral_pipeline.evaluation.judge import OFFLINE_JUDGE_VERSION, load_judge_template
from mmoral_pipeline.evaluation.prior import prior_from_samples
from mmoral_pipeline.evaluation.selection import PRIOR_TARGET, PRIOR_TOLERANCE
from mmoral_pipeline.progress import Progress, reporting

GROUP = "evaluation"
_ALL_BATCHES = {"allow_missing_partitions": True}  # every batch partition of a partitioned upstream table
# What the benchmark reads of instruction_samples (the split, the content it compares, the prior's training
# answers): at 1.3M samples, not the conversations.
_SAMPLE_COLUMNS = {
    "columns": [
        "image_id",
        "split",
        "image_sha256",
        "image_phash",
        "patient_key",
        "source",
        "task_type",
        "question_stem",
        "question",
        "options",
        "answer_letter",
        "n_turns",
        "answer",
    ]
}


class BenchmarkItemsConfig(dg.Config):
    """Which images form the benchmark, how its closed set is chosen and how the TSVs are written."""

    holdout_fraction: float | None = Field(
        default=None,
        description="None: the dataset's default; used only when instruction_samples carries no split column",
    )
    max_images: int = Field(
        default=100,
        description="MMOral-Bench uses 100 held-out images; the rest of the held-out "
        "pool is recorded in benchmark_holdout_pool as reserve",
    )
    balance_closed: bool = Field(
        default=True,
        description="balance the closed set so that the question-wording prior "
        "of the training split scores chance (25 %) on it; off: the paper's 3 generated + 2 "
        "rule questions per image, chosen only for answers that differ between images",
    )
    image_max_side: int | None = Field(default=None, description="downscale TSV images (boxes stay in original pixels)")
    export_dir: str | None = Field(default=None, description="None: $MMORAL_HOME/exports/bench")


ITEMS_DESCRIPTION = (
    "MMOral-Bench-style items from held-out images only: 5 closed-ended (letters balanced A-D; 3 generated VQA + "
    "2 location / counting as the target, chosen for answers that differ between images and balanced so that the "
    "question-wording prior of the training split scores chance) and 6 open-ended (4 report-based, 1 location-based, "
    "1 'write the report', answered by the image's generated report) per image, dimension-labelled, validated by the "
    "benchmark rules and the generation validators; exported as MMOral-OPG-Bench TSVs (base64 JPEG images). Up to "
    "max_images images (100, as the paper); the rest of the held-out pool is kept in reserve (benchmark_holdout_pool)."
)


def _known(table: pl.LazyFrame, columns: list[str]) -> pl.LazyFrame:
    """Those of `columns` the table has; a missing one as an empty string column (tests' hand-made tables)."""
    have = set(table.collect_schema().names())
    return table.select([pl.col(c) if c in have else pl.lit("").alias(c) for c in columns])


def _rows_of(table: pl.LazyFrame, image_ids: list[str], columns: list[str] | None = None) -> pl.DataFrame:
    """The rows of these images (all columns, or those given): what a scan of a 20,000-image table reads."""
    if "image_id" not in table.collect_schema().names():
        return pl.DataFrame()
    rows = table.filter(pl.col("image_id").is_in(image_ids))
    return (rows.select(columns) if columns else rows).collect()



@dg.multi_asset(
    outs={
        "benchmark_items": dg.AssetOut(
            group_name=GROUP,
            kinds={"polars", "parquet"},
            code_version=BUILD_VERSION,
            is_required=False,
            description=ITEMS_DESCRIPTION,
        ),
        "benchmark_holdout_pool": dg.AssetOut(
            group_name=GROUP,
            kinds={"polars", "parquet"},
            code_version=BUILD_VERSION,
            is_required=False,
            description="Every held-out image: in the benchmark, in reserve (over the "
            "image cap) or left without a valid item",
        ),
    },
    ins={
        "image_attributes": dg.AssetIn("image_attributes", metadata=_ALL_BATCHES),
        "reports": dg.AssetIn("reports", metadata=_ALL_BATCHES),
        "vqa_items": dg.AssetIn("vqa_items", metadata=_ALL_BATCHES),
        "instruction_samples": dg.AssetIn("instruction_samples", metadata=_SAMPLE_COLUMNS),
    },
    name="benchmark_items",
    can_subset=True,  # either table alone (e.g. --select benchmark_items) is built the same way
)
def benchmark_items(
    context: dg.AssetExecutionContext,
    config: BenchmarkItemsConfig,
    image_attributes: pl.LazyFrame,
    reports: pl.LazyFrame,
    vqa_items: pl.LazyFrame,
    instruction_samples: pl.DataFrame,
):
    """The benchmark from the held-out images (ITEMS_DESCRIPTION) and the record of the whole held-out pool.

    The batch tables are scanned: only the held-out images' documents, reports and VQA are read (at
    MMOral's size the whole tables would not fit the step's memory)."""
    from mmoral_pipeline.domain.attributes import ImageAttributes
    from mmoral_pipeline.evaluation.tsv import write_closed_tsv, write_open_tsv

    index = _known(image_attributes, ["image_id", "path", "source"]).collect()
    if index.height == 0:
        raise dg.Failure("image_attributes has no rows: materialise the attributes stage first")
    all_ids = index["image_id"].unique().to_list()
    if {"split", "image_id"} <= set(instruction_samples.columns) and instruction_samples.height:
        bench_ids = set(instruction_samples.filter(pl.col("split") == "bench")["image_id"].to_list())
        held_ids = sorted(i for i in all_ids if i in bench_ids)
        rule = "instruction_samples.split == 'bench'"
    else:
        held_ids = sorted(holdout_ids(all_ids, config.holdout_fraction))
        rule = "dataset.split.is_holdout"
    chosen, reserve = pick_images(held_ids, config.max_images)
    documents = _rows_of(image_attributes, chosen, ["image_id", "document"])
    attrs = {
        a.image_id: a for a in (ImageAttributes.from_mmoral_json(json.loads(d)) for d in documents["document"])
    }
    held = [attrs[i] for i in chosen]
    prior = prior_from_samples(instruction_samples)
    paths = dict(zip(index["image_id"].to_list(), index["path"].to_list(), strict=True))
    report_by_image = report_texts(_rows_of(reports, chosen), chosen)
    build = build_benchmark_items(
        held,
        report_by_image,
        generated=generated_closed(_rows_of(vqa_items, chosen), chosen),
        prior=prior if prior.n_closed else None,
        balance=config.balance_closed,
    )
    closed, open_ = build.closed, build.open
    images = encode_images({i: paths.get(i, "") for i in chosen}, config.image_max_side)
    out_dir = Path(config.export_dir or Path(mmoral_home()) / "exports" / "bench")
    closed_tsv = write_closed_tsv(
        [it.model_copy(update={"image": images.get(it.image_id, "")}) for it in closed], out_dir / "closed_ended.tsv"
    )
    open_tsv = write_open_tsv(
        [it.model_copy(update={"image": images.get(it.image_id, "")}) for it in open_], out_dir / "open_ended.tsv"
    )
    df = items_frame(closed, open_, paths)
    sources = dict(zip(index["image_id"].to_list(), index["source"].to_list(), strict=True))
    pool = holdout_pool_frame({i: sources.get(i, "") for i in held_ids}, chosen, closed, open_)
    letters = {k: sum(1 for it in closed if it.answer == k) for k in "ABCD"}
    labels: dict[str, int] = {}
    for kind, group in (("closed", closed), ("open", open_)):
        for it in group:
            for lab in it.labels:
                labels[f"{kind}:{lab}"] = labels.get(f"{kind}:{lab}", 0) + 1
    sel = build.selection
    write = [it for it in open_ if it.kind == "write_report"]
    context.log.info(
        f"{len(held_ids)} held-out images: {len(chosen)} in the benchmark, {len(reserve)} in reserve -> "
        f"{len(closed)} closed, {len(open_)} open, {len(build.rejected)} rejected; question-wording prior "
        f"{sel.prior_accuracy if sel.prior_accuracy is not None else float('nan'):.1f} % on the closed set"
    )
    items_metadata = {
        **table_metadata(df),
        "held_out_images": dg.MetadataValue.int(len(chosen)),
        "held_out_pool": dg.MetadataValue.int(len(held_ids)),
        "reserve_images": dg.MetadataValue.int(len(reserve)),
        "holdout_rule": rule,
        "images_missing": dg.MetadataValue.int(sum(1 for i in chosen if i not in images)),
        "closed_items": dg.MetadataValue.int(len(closed)),
        "open_items": dg.MetadataValue.int(len(open_)),
        "rejected_items": dg.MetadataValue.json(build.rejected[:50]),
        "rejected_by_validator": dg.MetadataValue.json(rejection_counts(build.rejected)),
        "answer_letters": dg.MetadataValue.json(letters),
        "closed_from": dg.MetadataValue.json(
            {
                "generated_vqa": sum(it.source.startswith("vqa:") for it in closed),
                "rules": sum(it.source.startswith(("rule:loc_", "rule:count_")) for it in closed),
                "benchmark_builders": sum(
                    it.source.startswith("rule:") and not it.source.startswith(("rule:loc_", "rule:count_"))
                    for it in closed
                ),
            }
        ),
        "closed_selection": dg.MetadataValue.json(sel.as_dict()),
        "question_prior": dg.MetadataValue.json({**prior.summary(), "closed_accuracy": sel.prior_accuracy}),
        "report_answers": dg.MetadataValue.json(
            {
                "generated_report": sum(it.source.startswith("report") for it in write),
                "composed_from_attributes": sum(it.source == "rule:write_report" for it in write),
            }
        ),
        "dimension_labels": dg.MetadataValue.json(dict(sorted(labels.items()))),
        "closed_tsv": dg.MetadataValue.path(str(closed_tsv)),
        "open_tsv": dg.MetadataValue.path(str(open_tsv)),
    }
    selected = {k.to_user_string() for k in context.selected_asset_keys}
    if "benchmark_items" in selected:
        yield dg.MaterializeResult(asset_key="benchmark_items", value=df, metadata=items_metadata)
    if "benchmark_holdout_pool" in selected:
        pool_metadata = {
            **table_metadata(pool),
            "by_status": dg.MetadataValue.json(dict(pool.group_by("status").len().iter_rows())),
        }
        yield dg.MaterializeResult(asset_key="benchmark_holdout_pool", value=pool, metadata=pool_metadata)


TEXT_CHECK = dg.AssetCheckSpec(
    "closed_set_not_answerable_from_text",
    asset="benchmark_items",
    additional_deps=["instruction_samples"],
    description=f"Text alone cannot pass the closed set: the question-wording prior of the training split and the most "
    f"frequent letter both score within {100 * PRIOR_TOLERANCE:.0f} points of chance ({100 * PRIOR_TARGET:.0f} %) on "
    f"it. Skipped without a training split or with fewer than {verdicts.MIN_CLOSED_TO_JUDGE} closed items.",
)


@dg.multi_asset_check(
    specs=[TEXT_CHECK],
    can_subset=True,
    name="closed_set_not_answerable_from_text",
    ins={
        "benchmark_items": dg.AssetIn("benchmark_items"),
        "instruction_samples": dg.AssetIn("instruction_samples"),
    },
)
def closed_set_not_answerable_from_text(
    context: dg.AssetCheckExecutionContext, benchmark_items: pl.DataFrame, instruction_samples: pl.LazyFrame
):
    """Yields nothing (Dagster shows the check skipped) without closed items or training answers."""
    have = set(instruction_samples.collect_schema().names())
    instruction_samples = instruction_samples.select([c for c in _SAMPLE_COLUMNS["columns"] if c in have]).collect()
    closed, _ = items_from_frame(benchmark_items.filter(pl.col("kind") == "closed"), with_images=False)
    v = verdicts.text_alone_near_chance(closed, prior_from_samples(instruction_samples))
    if v is None:
        context.log.info(
            f"closed_set_not_answerable_from_text: skipped, {len(closed)} closed items (judged from "
            f"{verdicts.MIN_CLOSED_TO_JUDGE}) or no training answers to fit the question-wording prior on"
        )
        return
    yield dg.AssetCheckResult(
        check_name=TEXT_CHECK.name,
        asset_key="benchmark_items",
        passed=v.passed,
        severity=dg.AssetCheckSeverity.WARN,
        description=v.description,
        metadata={k: dg.MetadataValue.float(x) for k, x in v.figures.items()},
    )


DEFAULT_CONSTANT = "constant:I don't know."


class BenchmarkResultsConfig(dg.Config):
    """Models to run and how to judge them."""

    models: list[str] = Field(
        default=["random", "most_frequent", "question_prior", DEFAULT_CONSTANT, "sft", "base"],
        description="any of random, most_frequent (the benchmark's most frequent letter), "
        "question_prior (the most frequent training answer of each question wording), "
        "'constant:<text>' (that text for every question: a floor), sft, base",
    )
    controls: list[str] = Field(
        default=list(CONTROLS),
        description="runs added for every model that sees images (sft, "
        "base, endpoints): text_only (no image) and other_image (each question shown another "
        "held-out patient's X-ray: does it read the right one?)",
    )
    endpoints: list[str] = Field(
        default=[],
        description="names of OpenAI-compatible vision endpoints configured on the "
        "`endpoints` resource (MMORAL_BENCH_ENDPOINTS where the code runs)",
    )
    sft_path: str | None = Field(default=None, description="None: $MMORAL_HOME/sft_model/latest")
    base_path: str | None = Field(
        default=None, description="None: <sft>/base_model.txt, else <sft>_base (the tiny base)"
    )
    tsv_paths: list[str] = Field(
        default=[], description="official MMOral-OPG-Bench TSVs to use instead of benchmark_items"
    )
    judge_endpoint: str | None = Field(
        default=None, description="name of a configured endpoint; None: the offline fact judge"
    )
    judge_repeats: int = Field(
        default=1, description="> 1: re-score open answers with the LLM judge, report the spread"
    )
    limit: int | None = Field(default=None, description="first N closed and N open items")
    seed: int = 0
    batch_size: int = 4
    max_pixels: int | None = 401_408
    max_new_tokens_open: int = 256


def _sft_paths(config: BenchmarkResultsConfig) -> tuple[str, str | None]:
    sft = config.sft_path or str(Path(mmoral_home()) / "sft_model" / "latest")
    return sft, config.base_path or base_checkpoint_of(sft)


SCORE_COLUMNS = {
    "model": pl.String,
    "closed_overall": pl.Float64,
    "open_overall": pl.Float64,
    "avg": pl.Float64,
    "extraction_failure_rate": pl.Float64,
    "n_closed": pl.Int64,
    "n_open": pl.Int64,
    "judge": pl.String,
    "judge_prompt_version": pl.String,
    "scores_json": pl.String,
}


@dg.asset(
    key="benchmark_results",
    group_name=GROUP,
    kinds={"pytorch", "openai", "parquet"},
    ins={
        "benchmark_items": dg.AssetIn("benchmark_items"),
        "instruction_samples": dg.AssetIn("instruction_samples", metadata=_SAMPLE_COLUMNS),
    },
    deps=[dg.AssetKey("sft_model")],
    code_version=f"{OFFLINE_JUDGE_VERSION}|{load_judge_template()[1]}",
)
def benchmark_results(
    context: dg.AssetExecutionContext,
    config: BenchmarkResultsConfig,
    endpoints: ModelEndpoints,
    benchmark_items: pl.DataFrame,
    instruction_samples: pl.DataFrame,
) -> dg.MaterializeResult:
    """Scores every configured model on the benchmark, beside the baselines that bound what text alone does (random,
    most frequent letter, the question-wording prior of the training split, a constant non-answer) and, for every
    model that sees images, its text-only and other-patient-image runs: closed-ended accuracy by deterministic
    extraction (failures counted as wrong, failure rate reported), open-ended judge score (LLM judge when
    configured, else the offline fact judge), per dimension and overall, Avg = (closed + open) / 2; writes the
    paper-style table, a per-dimension bar chart and the raw predictions with their extraction method."""
    from mmoral_pipeline.evaluation.bench import (
        ModelSpec,
        make_judge,
        parse_model_arg,
        with_controls,
    )
    from mmoral_pipeline.evaluation.judge import LLMJudge
    from mmoral_pipeline.evaluation.report import dimension_bars_png, results_markdown, write_outputs
    from mmoral_pipeline.evaluation.tsv import read_bench_tsvs

    if config.tsv_paths:
        closed, open_ = read_bench_tsvs(config.tsv_paths)
        source = ", ".join(config.tsv_paths)
    else:
        closed, open_ = items_from_frame(benchmark_items)
        source = "benchmark_items"
    if config.limit:
        closed, open_ = closed[: config.limit], open_[: config.limit]
    sft, base = _sft_paths(config)
    specs = []
    skipped: dict[str, str] = {}
    common = {
        "seed": config.seed,
        "batch_size": config.batch_size,
        "max_pixels": config.max_pixels,
        "max_new_tokens_open": config.max_new_tokens_open,
    }
    try:
        for m in config.models:
            if m in ("sft", "base"):
                path = sft if m == "sft" else base
                if not path or not (
                    Path(path, "config.json").exists() or not Path(path).is_absolute()
                ):  # else a hub id
                    skipped[m] = f"no checkpoint at {sft}" if m == "sft" else f"no base checkpoint found (sft={sft})"
                    continue
                specs += with_controls(ModelSpec(name=m, kind="hf", path=path, **common), config.controls)
            else:
                specs += with_controls(parse_model_arg(m).model_copy(update=common), config.controls)
        endpoint_of: dict[str, str] = {}  # run name -> configured endpoint: keys stay on the resource
        for name in config.endpoints:
            e = endpoints.get(name)
            spec = ModelSpec(
                name=e.name, kind="openai", base_url=e.base_url, model=e.model, use_images=not e.text_only, **common
            )
            for s in with_controls(spec, config.controls):
                endpoint_of[s.name] = e.name
                specs.append(s)
    except (ValueError, KeyError) as e:
        raise dg.Failure(str(e)) from e
    prior = prior_from_samples(instruction_samples)
    if not prior.n_closed and any(s.kind == "question_prior" for s in specs):
        skipped["question_prior"] = "instruction_samples has no training split to fit it on"
        specs = [s for s in specs if s.kind != "question_prior"]
    if not specs:
        raise dg.Failure(f"no model to run; skipped: {skipped}")
    # cache: $MMORAL_HOME/llm_cache.sqlite
    judge = (
        LLMJudge(endpoints.backend(config.judge_endpoint), temperature=0.0) if config.judge_endpoint else make_judge()
    )
    results = []
    with reporting(Progress("benchmark_results", len(specs), context.log.info, unit="model runs")):
        for spec in specs:
            results.append(_run_and_score(context, config, spec, endpoints, endpoint_of, prior, judge, closed, open_))
            progress.tick()
    out_dir = Path(mmoral_home()) / "benchmark_results"
    paths = write_outputs(out_dir, results)
    rows = [r.scores for r in results]
    df = pl.DataFrame(
        [
            {
                "model": s.model,
                "closed_overall": s.closed.get("Overall"),
                "open_overall": s.open.get("Overall"),
                "avg": s.avg,
                "extraction_failure_rate": s.extraction_failure_rate,
                "n_closed": s.closed_counts.get("Overall", 0),
                "n_open": s.open_counts.get("Overall", 0),
                "judge": s.judge,
                "judge_prompt_version": s.judge_prompt_version,
                "scores_json": s.model_dump_json(),
            }
            for s in rows
        ],
        schema=SCORE_COLUMNS,
    )
    preds = pl.DataFrame(
        [
            p.model_dump(include={"model", "index", "gold", "letter", "method", "correct", "output"})
            for r in results
            for p in r.closed
        ]
    )
    return dg.MaterializeResult(
        value=df,
        metadata={
            **table_metadata(df.drop("scores_json")),
            "results_table": dg.MetadataValue.md(results_markdown(rows)),
            "dimension_chart": png_markdown(dimension_bars_png(rows), "scores per dimension"),
            "predictions_preview": dg.MetadataValue.md(markdown_preview(preds, rows=10) if preds.height else "_none_"),
            "benchmark_source": source,
            "judge": getattr(judge, "name", "offline"),
            "judge_prompt_version": judge.prompt_version,
            "question_prior": dg.MetadataValue.json(prior.summary()),
            "skipped_models": dg.MetadataValue.json(skipped),
            **{f"file_{k}": dg.MetadataValue.path(str(v)) for k, v in paths.items()},
        },
    )


def _column(df: pl.DataFrame, column: str) -> dict[str, float | None]:
    return dict(zip(df["model"].to_list(), df[column].to_list(), strict=True)) if column in df.columns else {}


def _scores(df: pl.DataFrame) -> dict[str, float | None]:
    """Avg where a model has one, else its closed accuracy."""
    avg, closed = _column(df, "avg"), _column(df, "closed_overall")
    return {m: avg.get(m) if avg.get(m) is not None else closed.get(m) for m in closed}


SFT_CHECKS = [
    dg.AssetCheckSpec(
        "sft_beats_baselines_on_closed",
        asset="benchmark_results",
        description=(
            f"The fine-tuned model reads the X-ray: its closed accuracy is at least {verdicts.SFT_MARGIN_POINTS:g} "
            "points "
            "above the question-wording prior, itself shown another patient's X-ray, the most frequent letter and its "
            "untrained base. Skipped when the fine-tuned model did not run."
        ),
    ),
    dg.AssetCheckSpec(
        "sft_not_worse_than_base",
        asset="benchmark_results",
        description=(
            "The fine-tuned model scores at least as well as its base (Avg, else closed accuracy). Skipped unless "
            "both ran."
        ),
    ),
]

def _run_and_score(context, config, spec, endpoints, endpoint_of, prior, judge, closed, open_):
    """One model (or baseline, or control) answers every item; its answers scored."""
    from mmoral_pipeline.evaluation.bench import make_runner, run_model, score_run
    from mmoral_pipeline.evaluation.runners import ChatRunner

    context.log.info(f"running {spec.name} ({spec.kind}) on {len(closed)} closed / {len(open_)} open items")
    try:
        runner = (
            ChatRunner(
                endpoints.backend(endpoint_of[spec.name]),
                name=spec.name,
                use_images=spec.use_images,
                other_images=spec.other_images,
            )
            if spec.name in endpoint_of
            else make_runner(spec, prior=prior)
        )
        run = run_model(runner, closed, open_)
    except ValueError as e:  # e.g. the other-image control on a single image
        raise dg.Failure(f"{spec.name}: {e}") from e
    return score_run(run, closed, open_, judge, repeats=config.judge_repeats)



@dg.multi_asset_check(specs=SFT_CHECKS, can_subset=True, name="sft_checks")
def sft_checks(context: dg.AssetCheckExecutionContext, benchmark_results: pl.DataFrame):
    """Both fine-tuned-model checks; a check whose model did not run yields no result, so Dagster shows it skipped."""
    selected = {k.name for k in context.selected_asset_check_keys}
    found = {
        "sft_beats_baselines_on_closed": verdicts.sft_beats_baselines(_column(benchmark_results, "closed_overall")),
        "sft_not_worse_than_base": verdicts.sft_not_worse_than_base(_scores(benchmark_results)),
    }
    for name, v in found.items():
        if name not in selected:
            continue
        if v is None:
            context.log.info(
                f"{name}: skipped, the models it compares did not run (results: {benchmark_results['model'].to_list()})"
            )
            continue
        yield dg.AssetCheckResult(
            check_name=name,
            asset_key="benchmark_results",
            passed=v.passed,
            severity=dg.AssetCheckSeverity.WARN,
            description=v.description,
            metadata={k.replace("-", "_"): dg.MetadataValue.float(x) for k, x in v.figures.items()},
        )


evaluation_assets = [benchmark_items, benchmark_results]
evaluation_checks = [closed_set_not_answerable_from_text, sft_checks]
