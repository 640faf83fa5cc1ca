"""Dagster shell of the evaluation stage: `benchmark_items` and `benchmark_results` (+ a WARN check).

All logic lives in `mmoral_pipeline.evaluation`; model runners import torch/transformers only when
a local checkpoint is actually run, so importing this module stays cheap.
"""


import json
from pathlib import Path

import dagster as dg
import polars as pl
from pydantic import Field

from mmoral_pipeline.config import mmoral_home
from mmoral_pipeline.defs.metadata import markdown_preview, png_markdown, table_metadata
from mmoral_pipeline.evaluation.build import (
    BUILD_VERSION,
    GeneratedClosed,
    build_benchmark,
    holdout_attributes,
    rejection_counts,
)
from mmoral_pipeline.evaluation.items import ClosedItem, OpenItem
from mmoral_pipeline.evaluation.judge import OFFLINE_JUDGE_VERSION, load_judge_template

GROUP = "evaluation"
ITEM_COLUMNS = {
    "kind": pl.String, "index": pl.String, "question": pl.String, "option1": pl.String, "option2": pl.String,
    "option3": pl.String, "option4": pl.String, "answer": pl.String, "category": pl.String, "image_id": pl.String,
    "file_name": pl.String, "type": pl.String, "open_kind": pl.String, "source": pl.String, "image_path": pl.String,
}


def _read_optional(asset: str) -> pl.DataFrame | None:
    """An upstream table written by the project IO manager, or None when it has not been materialised."""
    from mmoral_pipeline.defs.io_manager import read_table

    try:
        return read_table(asset, base_dir=mmoral_home())
    except FileNotFoundError:
        return None


def _scan_optional(asset: str, image_ids: set[str] | None = None):
    """A lazy scan of an upstream table (None when not materialised); with `image_ids`, those images' rows, collected."""
    from mmoral_pipeline.defs.io_manager import scan_table

    try:
        lf = scan_table(asset, base_dir=mmoral_home())
    except FileNotFoundError:
        return None
    return lf if image_ids is None else lf.filter(pl.col("image_id").is_in(sorted(image_ids))).collect()


def _report_texts(reports: pl.DataFrame | None) -> dict[str, str]:
    """image_id -> final report text, from whichever text column the reports table carries."""
    if reports is None or reports.height == 0 or "image_id" not in reports.columns:
        return {}
    col = next((c for c in ("final_report", "revised_report", "report", "text") if c in reports.columns), None)
    if col is None:
        return {}
    return {r["image_id"]: r[col] for r in reports.select("image_id", col).iter_rows(named=True) if r[col]}


def _generated_closed(vqa_items: pl.DataFrame | None, image_ids: set[str]) -> dict[str, list[GeneratedClosed]]:
    """The held-out images' accepted generated closed VQA (report-based), by image id: the benchmark draws from them."""
    if vqa_items is None or vqa_items.height == 0:
        return {}
    rows = vqa_items.filter((pl.col("task_type") == "vqa_closed") & pl.col("image_id").is_in(sorted(image_ids)))
    if "rejected_by" in rows.columns:
        rows = rows.filter(pl.col("rejected_by").is_null())
    out: dict[str, list[GeneratedClosed]] = {}
    for r in rows.iter_rows(named=True):
        out.setdefault(r["image_id"], []).append(GeneratedClosed(
            item_id=r["item_id"], question=r["question"], options=list(r["options"] or []), answer_text=r["answer"],
            dimensions=list(r["dimensions"] or [])))
    return out


def _encode_images(paths: dict[str, str], max_side: int | None) -> dict[str, str]:
    from mmoral_pipeline.evaluation.tsv import encode_image_jpeg

    return {i: encode_image_jpeg(p, max_side=max_side) for i, p in paths.items() if p and Path(p).exists()}


def items_frame(closed: list[ClosedItem], open_: list[OpenItem], paths: dict[str, str]) -> pl.DataFrame:
    rows = [{"kind": "closed", "index": it.index, "question": it.question, **{f"option{k + 1}": o for k, o in enumerate(it.options)},
             "answer": it.answer, "category": it.category, "image_id": it.image_id, "file_name": it.file_name, "type": it.type,
             "open_kind": None, "source": it.source, "image_path": paths.get(it.image_id)} for it in closed]
    rows += [{"kind": "open", "index": it.index, "question": it.question, "option1": None, "option2": None, "option3": None,
              "option4": None, "answer": it.answer, "category": it.category, "image_id": it.image_id, "file_name": it.file_name,
              "type": "open", "open_kind": it.kind, "source": it.source, "image_path": paths.get(it.image_id)} for it in open_]
    return pl.DataFrame(rows, schema=ITEM_COLUMNS)


def items_from_frame(df: pl.DataFrame, with_images: bool = True, max_side: int | None = None) -> tuple[list[ClosedItem], list[OpenItem]]:
    paths = {r["image_id"]: r["image_path"] for r in df.select("image_id", "image_path").unique().iter_rows(named=True)}
    images = _encode_images(paths, max_side) if with_images else {}
    closed, open_ = [], []
    for r in df.iter_rows(named=True):
        if r["kind"] == "closed":
            closed.append(ClosedItem(index=r["index"], question=r["question"], options=[r[f"option{k}"] for k in range(1, 5)],
                                     answer=r["answer"], category=r["category"], image_id=r["image_id"], file_name=r["file_name"] or "",
                                     image=images.get(r["image_id"], ""), source=r["source"] or ""))
        else:
            open_.append(OpenItem(index=r["index"], question=r["question"], answer=r["answer"], category=r["category"],
                                  image_id=r["image_id"], file_name=r["file_name"] or "", image=images.get(r["image_id"], ""),
                                  kind=r["open_kind"] or "", source=r["source"] or ""))
    return closed, open_


class BenchmarkItemsConfig(dg.Config):
    """Which images form the benchmark and how the TSVs are written."""

    holdout_fraction: float | None = Field(default=None, description="None: the dataset's default; used only when "
                                           "instruction_samples carries no split column")
    max_images: int = Field(default=100, description="MMOral-Bench uses 100 held-out images")
    image_max_side: int | None = Field(default=None, description="downscale TSV images (boxes stay in original pixels)")
    export_dir: str | None = Field(default=None, description="None: $MMORAL_HOME/exports/bench")


@dg.asset(
    key="benchmark_items",
    group_name=GROUP,
    kinds={"polars", "parquet"},
    deps=[dg.AssetKey("image_attributes"), dg.AssetKey("reports"), dg.AssetKey("vqa_items"),
          dg.AssetKey("instruction_samples")],
    code_version=BUILD_VERSION,
)
def benchmark_items(context: dg.AssetExecutionContext, config: BenchmarkItemsConfig) -> dg.MaterializeResult:
    """MMOral-Bench-style items from held-out images only: 5 closed-ended (letters balanced A-D) and 6 open-ended
    (4 report-based, 1 location-based, 1 "write the report") per image, dimension-labelled, validated by the
    benchmark rules and the generation validators; exported as MMOral-OPG-Bench TSVs (base64 JPEG images)."""
    from mmoral_pipeline.domain.attributes import ImageAttributes
    from mmoral_pipeline.evaluation.tsv import write_closed_tsv, write_open_tsv

    attrs_df = _read_optional("image_attributes")
    if attrs_df is None or attrs_df.height == 0:
        raise dg.Failure("image_attributes has no rows: materialise the attributes stage first")
    samples = _scan_optional("instruction_samples")

    def parse(docs: pl.DataFrame) -> list[ImageAttributes]:
        return [ImageAttributes.from_mmoral_json(json.loads(d)) for d in docs["document"].to_list()]

    if samples is not None and {"split", "image_id"} <= set(samples.collect_schema().names()):
        bench_ids = samples.filter(pl.col("split") == "bench").select("image_id").unique().collect()["image_id"].to_list()
        held = parse(attrs_df.filter(pl.col("image_id").is_in(bench_ids)))  # only the held-out documents are parsed
        rule = "instruction_samples.split == 'bench'"
    else:
        held = holdout_attributes(parse(attrs_df), config.holdout_fraction)
        rule = "dataset.split.is_holdout"
    held = sorted(held, key=lambda a: a.image_id)[: config.max_images]
    held_ids = {a.image_id for a in held}
    paths = dict(zip(attrs_df["image_id"].to_list(), attrs_df["path"].to_list() if "path" in attrs_df.columns else [""] * attrs_df.height, strict=True))
    generated = _generated_closed(_scan_optional("vqa_items", held_ids), held_ids)
    closed, open_, rejected = build_benchmark(held, _report_texts(_scan_optional("reports", held_ids)), generated=generated)
    images = _encode_images({a.image_id: paths.get(a.image_id, "") for a in held}, config.image_max_side)
    out_dir = Path(config.export_dir or Path(mmoral_home()) / "exports" / "bench")
    closed_tsv = write_closed_tsv([it.model_copy(update={"image": images.get(it.image_id, "")}) for it in closed], out_dir / "closed_ended.tsv")
    open_tsv = write_open_tsv([it.model_copy(update={"image": images.get(it.image_id, "")}) for it in open_], out_dir / "open_ended.tsv")
    df = items_frame(closed, open_, paths)
    letters = {k: sum(1 for it in closed if it.answer == k) for k in "ABCD"}
    labels: dict[str, int] = {}
    for kind, group in (("closed", closed), ("open", open_)):
        for it in group:
            for lab in it.labels:
                labels[f"{kind}:{lab}"] = labels.get(f"{kind}:{lab}", 0) + 1
    context.log.info(f"{len(held)} held-out images -> {len(closed)} closed, {len(open_)} open, {len(rejected)} rejected")
    return dg.MaterializeResult(
        value=df,
        metadata={
            **table_metadata(df),
            "held_out_images": dg.MetadataValue.int(len(held)),
            "holdout_rule": rule,
            "images_missing": dg.MetadataValue.int(sum(1 for a in held if a.image_id not in images)),
            "closed_items": dg.MetadataValue.int(len(closed)),
            "open_items": dg.MetadataValue.int(len(open_)),
            "rejected_items": dg.MetadataValue.json(rejected[:50]),
            "rejected_by_validator": dg.MetadataValue.json(rejection_counts(rejected)),
            "answer_letters": dg.MetadataValue.json(letters),
            "closed_from": dg.MetadataValue.json(
                {"generated_vqa": sum(it.source.startswith("vqa:") for it in closed),
                 "rules": sum(it.source.startswith("rule:") for it in closed)}),
            "dimension_labels": dg.MetadataValue.json(dict(sorted(labels.items()))),
            "closed_tsv": dg.MetadataValue.path(str(closed_tsv)),
            "open_tsv": dg.MetadataValue.path(str(open_tsv)),
        },
    )


class EndpointModel(dg.Config):
    name: str
    base_url: str
    model: str
    api_key_env: str = "OPENAI_API_KEY"
    text_only: bool = False


class BenchmarkResultsConfig(dg.Config):
    """Models to run and how to judge them."""

    models: list[str] = Field(default=["random", "most_frequent", "sft", "sft_text_only", "sft_other_image", "base"],
                              description="any of random, most_frequent, sft, sft_text_only (no image), sft_other_image "
                              "(each question shown another held-out patient's X-ray: does it read the right one?), base")
    endpoints: list[EndpointModel] = Field(default=[], description="OpenAI-compatible vision endpoints")
    sft_path: str | None = Field(default=None, description="None: $MMORAL_HOME/sft_model/latest")
    base_path: str | None = Field(default=None, description="None: <sft>/base_model.txt, else <sft>_base (the tiny base)")
    tsv_paths: list[str] = Field(default=[], description="official MMOral-OPG-Bench TSVs to use instead of benchmark_items")
    judge_base_url: str | None = Field(default=None, description="None: the offline fact judge")
    judge_model: str | None = None
    judge_api_key_env: str = "OPENAI_API_KEY"
    judge_repeats: int = Field(default=1, description="> 1: re-score open answers with the LLM judge, report the spread")
    limit: int | None = Field(default=None, description="first N closed and N open items")
    seed: int = 0
    batch_size: int = 4
    max_pixels: int | None = 401_408
    max_new_tokens_open: int = 256


def base_checkpoint_of(sft: str) -> str | None:
    """Where a trained checkpoint started from: its base_model.txt pointer, else the sibling '<name>_base' (tiny)."""
    pointer = Path(sft) / "base_model.txt"
    if pointer.exists():
        return pointer.read_text().strip()
    tiny_base = Path(sft).with_name(Path(sft).name + "_base")
    return str(tiny_base) if tiny_base.exists() else None


def _sft_paths(config: BenchmarkResultsConfig) -> tuple[str, str | None]:
    sft = config.sft_path or str(Path(mmoral_home()) / "sft_model" / "latest")
    return sft, config.base_path or base_checkpoint_of(sft)


SCORE_COLUMNS = ["model", "closed_overall", "open_overall", "avg", "extraction_failure_rate", "n_closed", "n_open", "judge",
                 "judge_prompt_version", "scores_json"]


@dg.asset(
    key="benchmark_results",
    group_name=GROUP,
    kinds={"pytorch", "openai", "parquet"},
    deps=[dg.AssetKey("benchmark_items"), dg.AssetKey("sft_model")],
    code_version=f"{OFFLINE_JUDGE_VERSION}|{load_judge_template()[1]}",
)
def benchmark_results(context: dg.AssetExecutionContext, config: BenchmarkResultsConfig) -> dg.MaterializeResult:
    """Scores every configured model on the benchmark: closed-ended accuracy by deterministic extraction (failures
    counted as wrong, failure rate reported), open-ended judge score (LLM judge when configured, else offline fact
    judge), per dimension and overall, Avg = (closed + open) / 2; writes the paper-style table, a per-dimension
    bar chart and the raw predictions with their extraction method."""
    from mmoral_pipeline.evaluation.bench import ModelSpec, make_judge, make_runner, run_model, score_run
    from mmoral_pipeline.evaluation.report import dimension_bars_png, results_markdown, write_outputs
    from mmoral_pipeline.evaluation.tsv import read_bench_tsv

    if config.tsv_paths:
        closed, open_ = [], []
        for p in config.tsv_paths:
            for r in read_bench_tsv(p):
                (closed if isinstance(r, ClosedItem) else open_).append(r)
        source = ", ".join(config.tsv_paths)
    else:
        items = _read_optional("benchmark_items")
        if items is None:
            raise dg.Failure("benchmark_items is not materialised")
        closed, open_ = items_from_frame(items)
        source = "benchmark_items"
    if config.limit:
        closed, open_ = closed[: config.limit], open_[: config.limit]
    sft, base = _sft_paths(config)
    specs: list[ModelSpec] = []
    skipped: dict[str, str] = {}
    common = {"seed": config.seed, "batch_size": config.batch_size, "max_pixels": config.max_pixels,
              "max_new_tokens_open": config.max_new_tokens_open}
    for m in config.models:
        if m in ("random", "most_frequent"):
            specs.append(ModelSpec(name=m, kind=m, **common))  # type: ignore[arg-type]
        elif m in ("sft", "sft_text_only", "sft_other_image"):
            if Path(sft, "config.json").exists():
                specs.append(ModelSpec(name=m.replace("_", "-"), kind="hf", path=sft, use_images=m != "sft_text_only",
                                       other_images=m == "sft_other_image", **common))
            else:
                skipped[m] = f"no checkpoint at {sft}"
        elif m == "base":
            if base and (Path(base, "config.json").exists() or not Path(base).is_absolute()):
                specs.append(ModelSpec(name="base", kind="hf", path=base, **common))
            else:
                skipped[m] = f"no base checkpoint found (sft={sft})"
        else:
            raise dg.Failure(f"unknown model {m!r}; use endpoints for OpenAI-compatible models")
    for e in config.endpoints:
        specs.append(ModelSpec(name=e.name, kind="openai", base_url=e.base_url, model=e.model, api_key_env=e.api_key_env,
                               use_images=not e.text_only, **common))
    if not specs:
        raise dg.Failure(f"no model to run; skipped: {skipped}")
    judge = make_judge(config.judge_base_url, config.judge_model, config.judge_api_key_env)  # cache: $MMORAL_HOME/llm_cache.sqlite
    results = []
    for spec in specs:
        context.log.info(f"running {spec.name} ({spec.kind}) on {len(closed)} closed / {len(open_)} open items")
        run = run_model(make_runner(spec), closed, open_)
        results.append(score_run(run, closed, open_, judge, repeats=config.judge_repeats))
    out_dir = Path(mmoral_home()) / "benchmark_results"
    paths = write_outputs(out_dir, results)
    rows = [r.scores for r in results]
    df = pl.DataFrame([{"model": s.model, "closed_overall": s.closed.get("Overall"), "open_overall": s.open.get("Overall"),
                        "avg": s.avg, "extraction_failure_rate": s.extraction_failure_rate, "n_closed": s.closed_counts.get("Overall", 0),
                        "n_open": s.open_counts.get("Overall", 0), "judge": s.judge, "judge_prompt_version": s.judge_prompt_version,
                        "scores_json": s.model_dump_json()} for s in rows],
                      schema={"model": pl.String, "closed_overall": pl.Float64, "open_overall": pl.Float64, "avg": pl.Float64,
                              "extraction_failure_rate": pl.Float64, "n_closed": pl.Int64, "n_open": pl.Int64, "judge": pl.String,
                              "judge_prompt_version": pl.String, "scores_json": pl.String})
    preds = pl.DataFrame([p.model_dump(include={"model", "index", "gold", "letter", "method", "correct", "output"}) for r in results for p in r.closed])
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
            "skipped_models": dg.MetadataValue.json(skipped),
            **{f"file_{k}": dg.MetadataValue.path(str(v)) for k, v in paths.items()},
        },
    )


def _value(df: pl.DataFrame, model: str, column: str) -> float | None:
    row = df.filter(pl.col("model") == model)
    return row[column][0] if row.height and column in row.columns else None


def _score_of(df: pl.DataFrame, model: str) -> float | None:
    avg = _value(df, model, "avg")
    return avg if avg is not None else _value(df, model, "closed_overall")


@dg.asset_check(asset="benchmark_results", description="The fine-tuned model scores at least as well as its base (Avg, "
                "else closed accuracy).")
def sft_not_worse_than_base(benchmark_results: pl.DataFrame) -> dg.AssetCheckResult:
    sft, base = _score_of(benchmark_results, "sft"), _score_of(benchmark_results, "base")
    if sft is None or base is None:
        return dg.AssetCheckResult(passed=True, severity=dg.AssetCheckSeverity.WARN,
                                   description="sft and base were not both evaluated; nothing to compare",
                                   metadata={"sft": sft if sft is not None else "missing", "base": base if base is not None else "missing"})
    return dg.AssetCheckResult(passed=sft >= base, severity=dg.AssetCheckSeverity.WARN,
                               metadata={"sft": dg.MetadataValue.float(sft), "base": dg.MetadataValue.float(base),
                                         "delta": dg.MetadataValue.float(sft - base)})


@dg.asset_check(asset="benchmark_results", description="Learning is real: the fine-tuned model's closed-ended accuracy beats "
                "its untrained base and the always-the-most-frequent-letter baseline; reported beside the same model "
                "without images and with another patient's X-ray (does it read the image?).")
def sft_beats_baselines_on_closed(benchmark_results: pl.DataFrame) -> dg.AssetCheckResult:
    figures = {m: _value(benchmark_results, m, "closed_overall") for m in ("sft", "base", "most_frequent", "random", "sft-text-only",
                                                              "sft-other-image")}
    metadata = {f"closed_{m.replace('-', '_')}": dg.MetadataValue.float(v) for m, v in figures.items() if v is not None}
    sft, base, most = figures["sft"], figures["base"], figures["most_frequent"]
    if sft is None or base is None or most is None:
        return dg.AssetCheckResult(passed=True, severity=dg.AssetCheckSeverity.WARN, metadata=metadata,
                                   description="sft, base and most_frequent were not all evaluated; nothing to compare")
    other = figures["sft-other-image"]
    uses_image = None if other is None else sft > other
    if uses_image is not None:
        metadata["uses_image_content"] = dg.MetadataValue.bool(uses_image)
    return dg.AssetCheckResult(passed=sft > base and sft > most, severity=dg.AssetCheckSeverity.WARN, metadata=metadata,
                               description=f"closed accuracy: sft {sft:.1f} vs base {base:.1f}, most-frequent {most:.1f}"
                               + ("" if other is None else f"; shown another patient's X-ray {other:.1f}"))


evaluation_assets = [benchmark_items, benchmark_results]
evaluation_checks = [sft_not_worse_than_base, sft_beats_baselines_on_closed]

