"""Benchmark orchestration outside Dagster: model specs -> runners -> raw outputs -> scores.

Running (expensive, model-dependent) and scoring (cheap, deterministic with the offline judge)
are separate steps, so saved outputs can be re-scored and compared.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from mmoral_pipeline.evaluation.items import ClosedItem, OpenItem
from mmoral_pipeline.evaluation.judge import LLMJudge, OfflineJudge
from mmoral_pipeline.evaluation.runners import ChatRunner, HFRunner, MostFrequentRunner, RandomRunner, Runner
from mmoral_pipeline.evaluation.scoring import BenchScores, ClosedPrediction, OpenPrediction, score_closed, score_open, summarise


class ModelSpec(BaseModel):
    """One model to benchmark: a baseline, a local checkpoint or an OpenAI-compatible endpoint."""

    name: str
    kind: Literal["random", "most_frequent", "hf", "openai"]
    path: str = ""  # hf checkpoint folder
    base_url: str = ""  # openai
    model: str = ""  # openai model name
    api_key_env: str = "OPENAI_API_KEY"
    use_images: bool = True
    other_images: bool = False  # hf: each question shown another item's X-ray (does it read the right image?)
    seed: int = 0
    batch_size: int = 4
    max_pixels: int | None = 401_408
    max_new_tokens_open: int = 256


class ModelRun(BaseModel):
    model: str
    closed_outputs: list[str] = Field(default_factory=list)
    open_outputs: list[str] = Field(default_factory=list)
    supports_open: bool = True


class ModelResult(BaseModel):
    scores: BenchScores
    closed: list[ClosedPrediction]
    open: list[OpenPrediction]


def parse_model_arg(arg: str, text_only: bool = False, api_key_env: str = "OPENAI_API_KEY") -> ModelSpec:
    """'random' | 'most_frequent' | 'http(s)://host/v1#model' | a checkpoint folder."""
    suffix = "-text-only" if text_only else ""
    if arg in ("random", "most_frequent"):
        return ModelSpec(name=arg, kind=arg)  # type: ignore[arg-type]
    if arg.startswith(("http://", "https://")):
        base_url, _, model = arg.partition("#")
        if not model:
            raise ValueError(f"endpoint {arg!r}: give the model as URL#model, e.g. http://127.0.0.1:8000/v1#qwen2.5-vl")
        return ModelSpec(name=model + suffix, kind="openai", base_url=base_url, model=model, api_key_env=api_key_env,
                         use_images=not text_only)
    if not Path(arg).exists():
        raise FileNotFoundError(f"model {arg!r}: neither a baseline, an http(s) endpoint nor an existing checkpoint folder")
    return ModelSpec(name=Path(arg).name + suffix, kind="hf", path=arg, use_images=not text_only)


def make_runner(spec: ModelSpec, cache_dir: str | None = None) -> Runner:
    if spec.kind == "random":
        return RandomRunner(seed=spec.seed, name=spec.name)
    if spec.kind == "most_frequent":
        return MostFrequentRunner(name=spec.name)
    if spec.kind == "hf":
        return HFRunner(spec.path, name=spec.name, use_images=spec.use_images, batch_size=spec.batch_size, max_pixels=spec.max_pixels,
                        max_new_tokens_open=spec.max_new_tokens_open, other_images=spec.other_images)
    from mmoral_pipeline.evaluation.backends import openai_backend

    backend = openai_backend(spec.base_url, spec.model, spec.api_key_env, cache_dir=cache_dir)
    return ChatRunner(backend, name=spec.name, use_images=spec.use_images)


def run_model(runner: Runner, closed: Sequence[ClosedItem], open_: Sequence[OpenItem]) -> ModelRun:
    c_out = runner.answer_closed(list(closed)) if closed else []
    o_out = runner.answer_open(list(open_)) if open_ and runner.supports_open else []
    return ModelRun(model=runner.name, closed_outputs=c_out, open_outputs=o_out, supports_open=runner.supports_open)


def score_run(run: ModelRun, closed: Sequence[ClosedItem], open_: Sequence[OpenItem],
              judge: OfflineJudge | LLMJudge | None = None, repeats: int = 1) -> ModelResult:
    """Score one model's outputs; with repeats > 1 (LLM judge) the open Overall per re-scoring is kept."""
    judge = judge or OfflineJudge()
    c_preds = score_closed(run.model, closed, run.closed_outputs) if closed else []
    o_preds: list[OpenPrediction] = []
    spread: list[float] = []
    if open_ and run.supports_open:
        qs, gts = [it.question for it in open_], [it.answer for it in open_]
        first = judge.score(qs, gts, run.open_outputs, repeat=0)
        o_preds = score_open(run.model, open_, run.open_outputs, first)
        if repeats > 1:
            spread.append(100.0 * sum(s.score for s in first) / len(first))
            for k in range(1, repeats):
                again = judge.score(qs, gts, run.open_outputs, repeat=k)
                spread.append(100.0 * sum(s.score for s in again) / len(again))
    return ModelResult(scores=summarise(run.model, c_preds, o_preds, spread), closed=c_preds, open=o_preds)


def make_judge(base_url: str | None = None, model: str | None = None, api_key_env: str = "OPENAI_API_KEY",
               cache_path: str | None = None, temperature: float = 0.0) -> OfflineJudge | LLMJudge:
    """An LLM judge when an endpoint is configured, else the offline fact judge.

    `cache_path`: the SQLite response cache (default: the project's `$MMORAL_HOME/llm_cache.sqlite`)."""
    if not base_url or not model:
        return OfflineJudge()
    from mmoral_pipeline.evaluation.backends import openai_backend

    return LLMJudge(openai_backend(base_url, model, api_key_env, cache_path=cache_path), temperature=temperature)
