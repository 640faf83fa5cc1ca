"""Benchmark orchestration outside Dagster: model specs -> runners -> raw outputs -> scores.

Running (expensive, model-dependent) and scoring (cheap, deterministic with the offline judge)
are separate steps, so saved outputs can be re-scored and compared.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from mmoral_pipeline.evaluation.items import ClosedItem, OpenItem
from mmoral_pipeline.evaluation.judge import LLMJudge, OfflineJudge
from mmoral_pipeline.evaluation.prior import QuestionPrior
from mmoral_pipeline.evaluation.runners import (
    ChatRunner,
    ConstantRunner,
    HFRunner,
    MostFrequentRunner,
    QuestionPriorRunner,
    RandomRunner,
    Runner,
)
from mmoral_pipeline.evaluation.scoring import (
    BenchScores,
    ClosedPrediction,
    OpenPrediction,
    score_closed,
    score_open,
    summarise,
)

BASELINES = ("random", "most_frequent", "question_prior")
CONSTANT_PREFIX = "constant:"
CONTROLS = ("text_only", "other_image")  # every model that sees images also runs without one and with another's


class ModelSpec(BaseModel):
    """One model to benchmark: a baseline, a local checkpoint or an OpenAI-compatible endpoint."""

    name: str
    kind: Literal["random", "most_frequent", "question_prior", "constant", "hf", "openai"]
    text: str = ""  # constant: the answer to every question
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


class NotACheckpointError(ValueError):
    """A --model folder that holds no checkpoint (one line for the user, no traceback)."""


def _is_checkpoint(folder: Path) -> bool:
    return (folder / "config.json").exists() or (folder / "adapter_config.json").exists()


def resolve_checkpoint(path: str | Path) -> str:
    """A checkpoint folder from what a user points at: the folder itself (config.json or a LoRA adapter), else its
    `latest/` (the `sft_model` folder the pipeline writes), else its highest-numbered `checkpoint-N/` (a trainer's
    output_dir). Anything else raises NotACheckpointError."""
    folder = Path(path)
    if not folder.is_dir():
        raise NotACheckpointError(f"model {str(path)!r}: no such folder (nor a baseline or an http(s) endpoint)")
    if _is_checkpoint(folder):
        return str(folder)
    if _is_checkpoint(folder / "latest"):
        return str(folder / "latest")
    steps = sorted((int(m.group(1)), p) for p in folder.glob("checkpoint-*") if p.is_dir() and _is_checkpoint(p)
                   and (m := re.fullmatch(r"checkpoint-(\d+)", p.name)))
    if steps:
        return str(steps[-1][1])
    raise NotACheckpointError(f"model {str(path)!r} is not a checkpoint folder: no config.json or adapter_config.json "
                              "in it, in latest/ or in a checkpoint-N/ folder")


def base_checkpoint_of(sft: str) -> str | None:
    """Where a trained checkpoint started from: its base_model.txt pointer, else the sibling '<name>_base' (tiny)."""
    pointer = Path(sft) / "base_model.txt"
    if pointer.exists():
        return pointer.read_text().strip()
    tiny_base = Path(sft).with_name(Path(sft).name + "_base")
    return str(tiny_base) if tiny_base.exists() else None


def parse_model_arg(arg: str, api_key_env: str = "OPENAI_API_KEY") -> ModelSpec:
    """'random' | 'most_frequent' | 'question_prior' | 'constant:<text>' | 'http(s)://host/v1#model' | a checkpoint
    folder (or the `sft_model` folder / a trainer output_dir holding one: `resolve_checkpoint`)."""
    if arg in BASELINES:
        return ModelSpec(name=arg, kind=arg)  # type: ignore[arg-type]
    if arg.startswith(CONSTANT_PREFIX):
        return ModelSpec(name=arg, kind="constant", text=arg[len(CONSTANT_PREFIX):])
    if arg.startswith(("http://", "https://")):
        base_url, _, model = arg.partition("#")
        if not model:
            raise ValueError(f"endpoint {arg!r}: give the model as URL#model, e.g. http://127.0.0.1:8000/v1#qwen2.5-vl")
        return ModelSpec(name=model, kind="openai", base_url=base_url, model=model, api_key_env=api_key_env)
    path = resolve_checkpoint(arg)
    name = Path(arg).name if Path(path).name == "latest" else Path(path).name
    return ModelSpec(name=name, kind="hf", path=path)


def with_controls(spec: ModelSpec, controls: Sequence[str] = CONTROLS) -> list[ModelSpec]:
    """The model, then its controls: '<name>-text-only' (no image) and '<name>-other-image' (each question shown
    another patient's X-ray). Baselines see no image and get none."""
    unknown = set(controls) - set(CONTROLS)
    if unknown:
        raise ValueError(f"unknown control(s) {sorted(unknown)}; choose from {list(CONTROLS)}")
    out = [spec]
    if spec.kind in ("hf", "openai") and spec.use_images and not spec.other_images:
        if "text_only" in controls:
            out.append(spec.model_copy(update={"name": f"{spec.name}-text-only", "use_images": False}))
        if "other_image" in controls:
            out.append(spec.model_copy(update={"name": f"{spec.name}-other-image", "other_images": True}))
    return out


def make_runner(spec: ModelSpec, cache_dir: str | None = None, prior: QuestionPrior | None = None) -> Runner:
    if spec.kind == "random":
        return RandomRunner(seed=spec.seed, name=spec.name)
    if spec.kind == "most_frequent":
        return MostFrequentRunner(name=spec.name)
    if spec.kind == "question_prior":
        if prior is None:
            raise ValueError(
                "the question_prior baseline needs training data (instruction_samples or a training export)"
            )
        return QuestionPriorRunner(prior, name=spec.name)
    if spec.kind == "constant":
        return ConstantRunner(spec.text, name=spec.name)
    if spec.kind == "hf":
        return HFRunner(
            spec.path,
            name=spec.name,
            use_images=spec.use_images,
            batch_size=spec.batch_size,
            max_pixels=spec.max_pixels,
            max_new_tokens_open=spec.max_new_tokens_open,
            other_images=spec.other_images,
        )
    from mmoral_pipeline.evaluation.backends import openai_backend

    backend = openai_backend(spec.base_url, spec.model, spec.api_key_env, cache_dir=cache_dir)
    return ChatRunner(backend, name=spec.name, use_images=spec.use_images, other_images=spec.other_images)


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
