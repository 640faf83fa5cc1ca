"""Run settings of one SFT run: the one boundary object between the Dagster shell and the trainer process.

The Dagster `SftRunConfig` has the same fields; the asset passes them to the trainer as a Pipes extra
(`sft_settings`), and the trainer validates them here. No torch import: the shell imports this module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from mmoral_pipeline.config import mmoral_home

# Pixel budget of the tiny default model: a 2:1 panoramic image becomes about 308x154 pixels,
# 22x11 patches of 14 px, 66 image tokens after the 2x2 merge (cheap on CPU, still a picture).
TINY_MAX_PIXELS = 64 * 28 * 28
TINY_MIN_PIXELS = 8 * 28 * 28
# What the tiny model trains on by default: the short closed-ended samples (the benchmark's closed questions are
# of these families; see evaluation.build).
TINY_TASK_TYPES = ("vqa_closed", "loc_closed", "count_closed")


def default_train_jsonl() -> str:
    return str(Path(mmoral_home()) / "exports" / "trl" / "train.jsonl")


def default_output_dir() -> str:
    return str(Path(mmoral_home()) / "sft_model" / "latest")


class SftSettings(BaseModel):
    """What one SFT run does. Defaults: the tiny model, full fine-tuning, one epoch, CPU-friendly sizes."""

    train_jsonl: str = Field(default_factory=default_train_jsonl, description="TRL conversational JSONL")
    output_dir: str = Field(default_factory=default_output_dir, description="checkpoint folder (overwritten)")
    base_model: str = Field(
        default="tiny",
        description="'tiny' (a ~2M-parameter Qwen2.5-VL built from a config, tokenizer trained on the corpus), "
        "or a local checkpoint folder / hub id such as Qwen/Qwen2.5-VL-7B-Instruct (must already be on disk)",
    )
    finetune: Literal["full", "lora"] = "full"
    lora_r: int = Field(default=16, ge=1)
    lora_alpha: int = Field(default=32, ge=1)
    lora_dropout: float = Field(default=0.05, ge=0.0, lt=1.0)
    learning_rate: float | None = Field(
        default=None, gt=0, description="None: 1e-3 for the tiny model (2e-3 at batch 2 was unstable), 2e-4 for LoRA, "
        "1e-5 for full fine-tuning"
    )
    lr_scheduler_type: str = "cosine"
    warmup_ratio: float = Field(default=0.1, ge=0.0, le=1.0)
    weight_decay: float = Field(default=0.0, ge=0.0)
    num_train_epochs: float = Field(default=1.0, gt=0)
    max_steps: int = Field(default=-1, description="> 0 overrides num_train_epochs")
    per_device_train_batch_size: int | None = Field(
        default=None, ge=1, description="None: 1 for the tiny model (in one epoch it needs many small steps: batch 8 "
        "and 4 at lr 2e-3 did not learn, 2 at 2e-3 was unstable, 2 and 1 at 1e-3 did, 1 best; perf/cpu_sft.py), 8 "
        "for any other model")
    gradient_accumulation_steps: int = Field(default=1, ge=1)
    max_length: int = Field(default=1024, ge=16, description="tokens per sample incl. image tokens; longer truncated")
    max_pixels: int | None = Field(default=None, description="None: 50,176 for the tiny model, model default else")
    min_pixels: int | None = Field(default=None, description="None: 6,272 for the tiny model, model default else")
    bf16: bool | None = Field(default=None, description="None: on when a CUDA device supports it")
    gradient_checkpointing: bool = False
    freeze_vision: bool = False
    seed: int = 0
    max_samples: int | None = Field(
        default=None, ge=1, description="cap on training samples (first N, after task_types)"
    )
    task_types: list[str] | None = Field(
        default=None,
        description="train only on samples of these task types (e.g. vqa_closed, loc_closed, count_closed); None: the "
        "closed-ended types for the tiny model (its 10-minute CPU budget goes further on short samples than on reports "
        "and attribute JSON), all types for any other model",
    )
    closed_target: Literal["letter", "letter_and_text", "option_text"] | None = Field(
        default=None,
        description="what a closed-ended sample teaches to answer: 'letter' ('B', as in the export and the paper), "
        "'letter_and_text' ('B. Lower jaw') or 'option_text' ('Lower jaw': the benchmark's extraction matches it to "
        "its "
        "option). None: 'option_text' for the tiny model, which cannot learn in minutes which letter holds which "
        "option (measured: perf/cpu_sft.py) but does learn the content; 'letter' for any other model",
    )
    use_cpu: bool | None = Field(default=None, description="None: CPU when no CUDA device is visible")
    logging_steps: int = Field(default=5, ge=1)
    dataloader_num_workers: int = Field(default=0, ge=0)
    group_by_length: bool = Field(
        default=True, description="batch samples of similar length (less padding: reports and attribute JSON are long)"
    )
    tiny_vocab_size: int = Field(default=2048, ge=300, description="BPE vocabulary of the tiny model's tokenizer")
    tiny_hidden_size: int = Field(default=128, ge=32)
    tiny_layers: int = Field(default=4, ge=1)

    @property
    def is_tiny(self) -> bool:
        return self.base_model == "tiny"

    def resolved_task_types(self) -> list[str] | None:
        """None means every task type."""
        if self.task_types is not None:
            return self.task_types
        return list(TINY_TASK_TYPES) if self.is_tiny else None

    def resolved_closed_target(self) -> str:
        if self.closed_target is not None:
            return self.closed_target
        return "option_text" if self.is_tiny else "letter"

    def resolved_batch_size(self) -> int:
        if self.per_device_train_batch_size is not None:
            return self.per_device_train_batch_size
        return 1 if self.is_tiny else 8

    def resolved_learning_rate(self) -> float:
        if self.learning_rate is not None:
            return self.learning_rate
        if self.is_tiny:
            return 1e-3
        return 2e-4 if self.finetune == "lora" else 1e-5

    def resolved_pixels(self) -> tuple[int | None, int | None]:
        """(min_pixels, max_pixels); None leaves the checkpoint's own setting."""
        if self.is_tiny:
            return (self.min_pixels or TINY_MIN_PIXELS, self.max_pixels or TINY_MAX_PIXELS)
        return (self.min_pixels, self.max_pixels)
