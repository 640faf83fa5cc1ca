"""Group `generation`: attributes + captions -> reports, vqa_items, dialogues, attribute_tasks,
rejected_generations (one partitioned multi-asset; each output's code_version is the hash of the
prompt templates that shape it), plus the `LLMResource`.
"""

import statistics
from collections import Counter

import dagster as dg
import polars as pl

from mmoral_pipeline.defs.freshness import INPUTS_KEY, fingerprint
from mmoral_pipeline.defs.metadata import bar_chart_png, counts_markdown, png_markdown, table_metadata
from mmoral_pipeline.defs.partitions import batch_partitions
from mmoral_pipeline.domain.attributes import ImageAttributes
from mmoral_pipeline.generation.openai_backend import redact_url
from mmoral_pipeline.generation.pipeline import (
    TEMPLATES,
    GenerationOutput,
    GenerationSettings,
    ImageInput,
    fallback_caption,
    generate,
    output_code_version,
    rejection_stats,
)
from mmoral_pipeline.generation.prompts import combined_version
from mmoral_pipeline.generation.rows import to_frame
from mmoral_pipeline.progress import Progress, reporting

OUTPUTS = ("reports", "vqa_items", "dialogues", "attribute_tasks", "rejected_generations")


class LLMResource(dg.ConfigurableResource):
    """The chat backend for generation: `offline` (deterministic writer, no endpoint) or `openai`
    (any OpenAI-compatible endpoint). Set `api_key` with `dg.EnvVar("MMORAL_LLM_API_KEY")`; the key
    is never logged, nor written to metadata or Parquet. Responses are cached in
    `$MMORAL_HOME/llm_cache.sqlite` (or `cache_path`)."""

    backend: str = "offline"
    base_url: str | None = None
    api_key: str | None = None
    model: str = ""
    temperature: float = 0.7
    max_tokens: int = 2048
    seed: int = 0
    max_concurrency: int = 16
    timeout_s: float = 120.0
    max_retries: int = 6
    json_retries: int = 2
    json_mode: bool = True
    price_prompt_per_1k: float | None = None
    price_completion_per_1k: float | None = None
    use_cache: bool = True
    cache_path: str | None = None

    def sampling_params(self) -> dict:
        return {"temperature": self.temperature, "max_tokens": self.max_tokens, "seed": self.seed}

    def get_backend(self):
        """A `ChatBackend` (with the response cache in front when `use_cache`)."""
        from mmoral_pipeline.generation.backends import CachedBackend
        from mmoral_pipeline.generation.cache import ResponseCache

        if self.backend == "offline":
            from mmoral_pipeline.generation.offline import OfflineBackend

            inner = OfflineBackend(seed=self.seed)
        elif self.backend == "openai":
            from mmoral_pipeline.generation.openai_backend import OpenAIBackend

            if not self.model:
                raise ValueError("LLMResource(backend='openai') needs `model`")
            inner = OpenAIBackend(
                model=self.model, base_url=self.base_url, api_key=self.api_key, max_concurrency=self.max_concurrency,
                timeout_s=self.timeout_s, max_retries=self.max_retries, json_retries=self.json_retries,
                json_mode=self.json_mode, seed=self.seed,
            )
        else:
            raise ValueError(f"unknown LLM backend {self.backend!r}: use 'offline' or 'openai'")
        return CachedBackend(inner, ResponseCache(self.cache_path) if self.use_cache else None)

    def cost(self, prompt_tokens: float, completion_tokens: float) -> float | None:
        if self.price_prompt_per_1k is None or self.price_completion_per_1k is None:
            return None
        return prompt_tokens / 1000 * self.price_prompt_per_1k + completion_tokens / 1000 * self.price_completion_per_1k


class GenerationConfig(dg.Config):
    """Per-run knobs (launchpad): items per image and the rejection-rate threshold of the check."""

    n_vqa_closed: int = 8
    n_vqa_open: int = 6
    max_loc_closed: int = 14
    max_loc_open: int = 14
    max_count: int = 10
    dialogue_turns: int = 10
    seed: int = 0
    max_rejection_rate: float = 0.2


def generation_inputs(llm: LLMResource, config: GenerationConfig) -> str:
    """What generation saw from outside the graph (recorded as `mmoral/inputs`): backend, model, endpoint,
    sampling and item counts. Changing any of them makes `mmoral materialize` regenerate; the key is not part
    of it (nor credentials in the URL: it is redacted first)."""
    return fingerprint(
        {
            "backend": llm.backend,
            "model": llm.model,
            "base_url": redact_url(llm.base_url),
            "params": llm.sampling_params(),
            "json_mode": llm.json_mode,
            "config": config.model_dump(),
        }
    )


def images_from_tables(image_attributes: pl.DataFrame, location_captions: pl.DataFrame | None) -> list[ImageInput]:
    """Join attribute documents with their captions (the caption is what an LLM sees)."""
    captions: dict[str, tuple[str, str | None]] = {}
    if location_captions is not None and location_captions.height and "caption" in location_captions.columns:
        hashes = (
            location_captions["attribute_row_hash"].to_list()
            if "attribute_row_hash" in location_captions.columns
            else [None] * location_captions.height
        )
        captions = {
            i: (c, h)
            for i, c, h in zip(
                location_captions["image_id"].to_list(), location_captions["caption"].to_list(), hashes, strict=True
            )
        }
    out = []
    for row in image_attributes.iter_rows(named=True):
        doc = row["document"]
        attrs = (
            ImageAttributes.model_validate_json(doc) if isinstance(doc, str) else ImageAttributes.model_validate(doc)
        )
        row_hash = row.get("attribute_row_hash") or attrs.content_hash()
        caption, caption_hash = captions.get(row["image_id"], ("", None))
        if not caption or (caption_hash is not None and caption_hash != row_hash):  # missing or stale: render it now
            caption = fallback_caption(attrs)
        out.append(
            ImageInput(
                image_id=row["image_id"],
                partition=row.get("partition") or "",
                attribute_row_hash=row_hash,
                attributes=attrs,
                caption=caption,
            )
        )
    return out


def _dims_counts(df: pl.DataFrame) -> dict[str, int]:
    return dict(Counter(d for ds in df["dimensions"].to_list() for d in (ds or [])))


def _table_outputs(result: GenerationOutput, backend, llm: LLMResource, config: GenerationConfig):
    stats = rejection_stats(result)
    backend_stats = {k: float(v) for k, v in {**getattr(backend.inner, "stats", {}), **backend.stats}.items()}
    pt, ct = result.usage.get("prompt_tokens", 0), result.usage.get("completion_tokens", 0)
    cost = llm.cost(pt, ct)
    lat = sorted(result.latency_s)
    common = {
        "backend": backend.name,
        "model": backend.model,
        INPUTS_KEY: generation_inputs(llm, config),
        "backend_note": "offline = deterministic writer from the attributes (no LLM was called)"
        if backend.name == "offline"
        else f"OpenAI-compatible endpoint {redact_url(llm.base_url) or 'api.openai.com'}",
        "requests_sent": dg.MetadataValue.int(int(backend.stats.get("sent", 0))),
        "cache_hits": dg.MetadataValue.int(int(backend.stats.get("cache_hits", 0))),
        "prompt_tokens": dg.MetadataValue.int(int(pt)),
        "completion_tokens": dg.MetadataValue.int(int(ct)),
        "backend_stats": dg.MetadataValue.json(backend_stats),
        # the audit send-back: rejected LLM units sent back once with the validators' findings
        "repairs": dg.MetadataValue.json({k: int(v) for k, v in sorted(result.repairs.items())}),
        **({"cost_usd": dg.MetadataValue.float(round(cost, 6))} if cost is not None else {}),
        **(
            {
                "latency_p50_s": dg.MetadataValue.float(round(statistics.median(lat), 3)),
                "latency_p95_s": dg.MetadataValue.float(round(lat[int(0.95 * (len(lat) - 1))], 3)),
            }
            if lat
            else {}
        ),
    }
    for name in OUTPUTS:
        rows = result.rejected if name == "rejected_generations" else getattr(result, name)
        df = to_frame(rows)
        md = {**table_metadata(df, max_cell=100), **common}
        if df.height:
            md["per_task_type"] = dg.MetadataValue.md(
                counts_markdown(Counter(df["task_type"].to_list()), key="task_type")
            )
            if name == "rejected_generations":
                md["per_validator"] = dg.MetadataValue.md(
                    counts_markdown(Counter(df["rejected_by"].to_list()), key="validator")
                )
            else:
                dims = _dims_counts(df)
                md["per_dimension"] = dg.MetadataValue.md(counts_markdown(dims, key="dimension"))
                md["per_dimension_chart"] = png_markdown(
                    bar_chart_png(dims, f"{name}: items per dimension"), "dimensions"
                )
        yield dg.Output(df, output_name=name, metadata=md)
    top_validators = sorted(stats["by_validator"].items(), key=lambda kv: -kv[1])[:3]
    rate = stats["rate"]
    passed = rate <= config.max_rejection_rate
    yield dg.AssetCheckResult(
        check_name="rejection_rate",
        asset_key="rejected_generations",
        passed=passed,
        metadata={
            "candidates": dg.MetadataValue.int(stats["candidates"]),
            "rejected": dg.MetadataValue.int(stats["rejected"]),
            "rate": dg.MetadataValue.float(round(rate, 4)),
            "max_rate": dg.MetadataValue.float(config.max_rejection_rate),
            "by_validator": dg.MetadataValue.md(counts_markdown(stats["by_validator"], key="validator")),
            "by_validator_json": dg.MetadataValue.json(stats["by_validator"]),
            "rate_by_validator": dg.MetadataValue.json(
                {k: round(v / max(stats["candidates"], 1), 4) for k, v in stats["by_validator"].items()}
            ),
            "repairs": dg.MetadataValue.json({k: int(v) for k, v in sorted(stats["repairs"].items())}),
        },
        description=None
        if passed
        else (
            f"rejection rate {rate:.1%} ({stats['rejected']} of {stats['candidates']}) > "
            f"{config.max_rejection_rate:.0%}; "
            f"most by {', '.join(f'{k} ({v})' for k, v in top_validators)}. "
            "Read their reasons in rejected_generations (reject_reason); fix the prompt or the model, or raise "
            "GenerationConfig.max_rejection_rate if they are acceptable."
        ),
    )


@dg.multi_asset(
    outs={
        "reports": dg.AssetOut(
            description="Three-section radiology report per image (after audit and revision), "
            "validated against the attributes.",
            kinds={"parquet", "polars", "openai"},
            code_version=output_code_version("reports"),
        ),
        "vqa_items": dg.AssetOut(
            description="Report-based closed/open VQA (LLM) and location/counting VQA (rules), one row per question.",
            kinds={"parquet", "polars", "openai"},
            code_version=output_code_version("vqa_items"),
        ),
        "dialogues": dg.AssetOut(
            description="8-12 turn patient/radiologist dialogues (patient = user, radiologist = assistant).",
            kinds={"parquet", "polars", "openai"},
            code_version=output_code_version("dialogues"),
        ),
        "attribute_tasks": dg.AssetOut(
            description="Image -> structured JSON of teeth and findings, several scopes and phrasings.",
            kinds={"parquet", "polars"},
            code_version=output_code_version("attribute_tasks"),
        ),
        "rejected_generations": dg.AssetOut(
            description="Every generated candidate a validator refused, with the validator and the offending span; "
            "`extra` says whether it was sent back for repair.",
            kinds={"parquet", "polars"},
            code_version=combined_version(*(output_code_version(o) for o in TEMPLATES)),
        ),
    },
    ins={"image_attributes": dg.AssetIn("image_attributes"), "location_captions": dg.AssetIn("location_captions")},
    check_specs=[
        dg.AssetCheckSpec(
            "rejection_rate",
            asset="rejected_generations",
            blocking=True,
            partitions_def=batch_partitions,
            description="Share of generated candidates rejected, by validator; "
            "fails above GenerationConfig.max_rejection_rate.",
        )
    ],
    partitions_def=batch_partitions,
    group_name="generation",
    pool="llm",
)
def generate_instructions(
    context: dg.AssetExecutionContext,
    config: GenerationConfig,
    llm: LLMResource,
    image_attributes: pl.DataFrame,
    location_captions: pl.DataFrame,
):
    """Report -> audit -> validated report, then VQA and dialogue from it (LLM or offline), plus rule-based
    location/counting items and attribute tasks. The LLM sees only the location caption, never pixels.
    Responses are cached by request hash, so re-running with nothing changed sends no request."""
    images = images_from_tables(image_attributes, location_captions)
    backend = llm.get_backend()
    settings = GenerationSettings(
        n_vqa_closed=config.n_vqa_closed, n_vqa_open=config.n_vqa_open, max_loc_closed=config.max_loc_closed,
        max_loc_open=config.max_loc_open, max_count=config.max_count, dialogue_turns=config.dialogue_turns,
        seed=config.seed, params=llm.sampling_params(),
    )
    context.log.info(f"generating for {len(images)} images with backend={backend.name} model={backend.model}")
    # about 4 requests per image (report, audit, VQA, dialogue); fewer when a report is rejected
    with reporting(Progress(f"generation {context.partition_key}", 4 * len(images), context.log.info, unit="requests")):
        result = generate(images, backend, settings, run_id=context.run_id)
    context.log.info(
        f"sent {int(backend.stats.get('sent', 0))} requests, {int(backend.stats.get('cache_hits', 0))} cache hits"
    )
    yield from _table_outputs(result, backend, llm, config)


@dg.asset_check(asset="vqa_items", partitions_def=batch_partitions)
def vqa_items_unique(context: dg.AssetCheckExecutionContext, vqa_items: pl.DataFrame) -> dg.AssetCheckResult:
    """No two VQA rows share an item_id (the same question and answer for the same image)."""
    dupes = vqa_items.group_by("item_id").len().filter(pl.col("len") > 1) if vqa_items.height else pl.DataFrame()
    return dg.AssetCheckResult(
        passed=dupes.height == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"rows": vqa_items.height, "duplicate_ids": dupes.height},
    )


@dg.asset_check(asset="reports", partitions_def=batch_partitions)
def reports_provenance(context: dg.AssetCheckExecutionContext, reports: pl.DataFrame) -> dg.AssetCheckResult:
    """Every report row names its image, attribute row, prompt version, backend, model and request hash."""
    cols = ["image_id", "attribute_row_hash", "prompt_version", "backend", "model", "request_hash", "run_id"]
    missing = (
        {c: int(reports.filter(pl.col(c).is_null() | (pl.col(c) == "")).height) for c in cols} if reports.height else {}
    )
    bad = {c: n for c, n in missing.items() if n}
    return dg.AssetCheckResult(passed=not bad, metadata={"rows": reports.height, "missing": dg.MetadataValue.json(bad)})


generation_assets = [generate_instructions]
generation_checks = [vqa_items_unique, reports_provenance]
