"""Dagster shell of the training stage: the `sft_model` asset runs the trainer out of process through Pipes.

No torch / transformers / trl import here: the trainer (`python -m mmoral_pipeline.training.run`) does that in
its own process (or processes, under `accelerate launch` / `torchrun`), and reports back through Dagster Pipes.
"""


import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import Literal

import dagster as dg
from pydantic import Field

from mmoral_pipeline.defs.metadata import png_markdown
from mmoral_pipeline.training.run import CHECK_NAME, EXTRA_KEY
from mmoral_pipeline.training.settings import SftSettings, default_output_dir, default_train_jsonl

TRAINER_MODULE = "mmoral_pipeline.training.run"
PIPES_CLIENT_KEY = "sft_pipes_client"


class SftRunConfig(dg.Config):
    """Launchpad knobs of one SFT run (mirrors `mmoral_pipeline.training.settings.SftSettings`)."""

    train_jsonl: str | None = Field(default=None, description="TRL JSONL; None: $MMORAL_HOME/exports/trl/train.jsonl")
    output_dir: str | None = Field(default=None, description="checkpoint folder; None: $MMORAL_HOME/sft_model/latest")
    base_model: str = Field(default="tiny", description="'tiny', or a local checkpoint folder / hub id on disk")
    finetune: Literal["full", "lora"] = "full"
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    learning_rate: float | None = Field(default=None, description="None: 1e-3 tiny, 2e-4 LoRA, 1e-5 full")
    lr_scheduler_type: str = "cosine"
    warmup_ratio: float = 0.1
    weight_decay: float = 0.0
    num_train_epochs: float = 1.0
    max_steps: int = Field(default=-1, description="> 0 overrides num_train_epochs")
    per_device_train_batch_size: int | None = Field(default=None, description="None: 1 for the tiny model, 8 else")
    gradient_accumulation_steps: int = 1
    max_length: int = 1024
    max_pixels: int | None = Field(default=None, description="None: 50,176 for the tiny model, model default else")
    min_pixels: int | None = None
    bf16: bool | None = Field(default=None, description="None: on where CUDA supports it")
    gradient_checkpointing: bool = False
    freeze_vision: bool = False
    seed: int = 0
    max_samples: int | None = Field(default=None, description="cap on training samples")
    task_types: list[str] | None = Field(default=None, description="train only on these task types; None: the closed-"
                                         "ended ones for the tiny model, all for any other model")
    closed_target: str | None = Field(
        default=None, description="letter | letter_and_text | option_text: closed-ended answers taught as 'B', "
        "'B. Lower jaw' or 'Lower jaw'; None: "
        "'option_text' for the tiny model, 'letter' for any other model")
    use_cpu: bool | None = Field(default=None, description="None: CPU when no CUDA device is visible")
    logging_steps: int = 5
    dataloader_num_workers: int = 0
    group_by_length: bool = Field(default=True, description="batch samples of similar length (less padding)")
    tiny_vocab_size: int = Field(default=2048, description="tiny model only: BPE vocabulary trained on the corpus")
    tiny_hidden_size: int = Field(default=128, description="tiny model only: text hidden size")
    tiny_layers: int = Field(default=4, description="tiny model only: text decoder layers")
    launcher: str = Field(
        default="",
        description="command prefix for several processes, e.g. 'accelerate launch --num_processes 8' or "
        "'torchrun --nproc_per_node 8'; empty: this Python interpreter",
    )

    def to_settings(self) -> SftSettings:
        fields = self.model_dump(exclude={"launcher"})
        fields["train_jsonl"] = self.train_jsonl or default_train_jsonl()
        fields["output_dir"] = self.output_dir or default_output_dir()
        return SftSettings.model_validate(fields)

    def command(self) -> list[str]:
        if not self.launcher.strip():
            return [sys.executable, "-m", TRAINER_MODULE]
        prefix = shlex.split(self.launcher)
        beside_python = Path(sys.executable).parent / prefix[0]  # torchrun / accelerate of this venv, off PATH
        if shutil.which(prefix[0]) is None and beside_python.exists():
            prefix[0] = str(beside_python)
        return [*prefix, "-m", TRAINER_MODULE]


@dg.asset(
    key="sft_model",
    group_name="training",
    kinds={"pytorch", "huggingface"},
    deps=[dg.AssetKey("trl_export")],
    code_version="sft-v1",
    check_specs=[
        dg.AssetCheckSpec(
            CHECK_NAME,
            asset="sft_model",
            description="Every logged training loss is finite and the last is below the first.",
        )
    ],
)
def sft_model(
    context: dg.AssetExecutionContext, config: SftRunConfig, sft_pipes_client: dg.PipesSubprocessClient
) -> dg.MaterializeResult:
    """Supervised fine-tuning (TRL SFTTrainer) of a Qwen2.5-VL model on the TRL export, one epoch by default.

    Default: a ~1-2M-parameter Qwen2.5-VL built from a config with a tokenizer trained on the corpus (CPU,
    minutes). Set `base_model` to a local Qwen2.5-VL-7B-Instruct folder and `finetune` to 'lora' or 'full' for
    the real thing on GPUs. Runs out of process through Dagster Pipes; metadata: loss curve and plot,
    samples/s, tokens/s, wall time, device, parameter counts, checkpoint path and weights sha256.
    """
    settings = config.to_settings()
    env = {"PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
    if os.environ.get("MMORAL_HOME"):
        env["MMORAL_HOME"] = os.environ["MMORAL_HOME"]
    context.log.info(f"launching {config.command()} -> {settings.output_dir}")
    result = sft_pipes_client.run(
        command=config.command(),
        context=context,
        extras={EXTRA_KEY: settings.model_dump()},
        env=env,
    ).get_materialize_result()
    return _with_inline_loss_plot(result)


def _with_inline_loss_plot(result: dg.MaterializeResult) -> dg.MaterializeResult:
    """Inline the trainer's loss plot (the file it reported) as a picture in the asset's metadata."""
    entry = (result.metadata or {}).get("loss_plot_path")
    path = getattr(entry, "value", entry)
    if not path or not os.path.exists(str(path)):
        return result
    with open(str(path), "rb") as fh:
        plot = png_markdown(fh.read(), "training loss")
    return dg.MaterializeResult(
        asset_key=result.asset_key,
        metadata={**result.metadata, "loss_plot": plot},
        check_results=result.check_results,
        data_version=result.data_version,
    )


training_resources = {PIPES_CLIENT_KEY: dg.PipesSubprocessClient()}
training_defs = dg.Definitions(assets=[sft_model], resources=training_resources)
