"""One SFT run with TRL's SFTTrainer: model factory, data, training, checkpoint, figures. No Dagster here.

`train(settings)` returns a `TrainReport`; the entry point (`run.py`) turns it into Pipes messages.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from mmoral_pipeline.progress import Progress
from mmoral_pipeline.training.settings import SftSettings


class TrainReport(BaseModel):
    """What a run reports back: figures, the loss curve and where the checkpoint is."""

    checkpoint_dir: str
    weights_files: list[str]
    weights_sha256: str
    base_model: str
    finetune: str
    device: str
    world_size: int
    params_total: int
    params_trainable: int
    train_samples: int
    steps: int
    epochs: float
    wall_time_s: float
    train_time_s: float
    samples_per_s: float
    tokens_per_s: float
    tokens_seen: int
    assistant_tokens_seen: int
    loss_steps: list[int]
    losses: list[float]
    loss_start: float
    loss_end: float
    loss_plot_png: str | None = None
    learning_rate: float
    max_pixels: int | None
    bf16: bool
    task_types: list[str] | None = None  # None: every task type
    closed_target: str = "letter"

    def loss_is_finite(self) -> bool:
        return bool(self.losses) and all(math.isfinite(x) for x in self.losses)

    def loss_fell(self) -> bool:
        return self.loss_is_finite() and len(self.losses) >= 2 and self.loss_end < self.loss_start


def is_main_process() -> bool:
    """Rank 0 under torchrun / accelerate launch, or a plain single process."""
    return int(os.environ.get("RANK", "0")) == 0


def is_weights_file(p: Path) -> bool:
    """Model or adapter weights (not training_args.bin and the like)."""
    if not p.is_file():
        return False
    if p.suffix == ".safetensors":
        return True
    return p.suffix == ".bin" and p.name.startswith(("pytorch_model", "adapter_model"))


def weights_digest(checkpoint_dir: str | Path) -> tuple[list[str], str]:
    """Weight files of a checkpoint (full model or LoRA adapter) and one sha256 over them in name order."""
    d = Path(checkpoint_dir)
    files = sorted(p for p in d.iterdir() if is_weights_file(p))
    if not files:
        raise FileNotFoundError(f"no weight files in {d}")
    h = hashlib.sha256()
    for p in files:
        if len(files) > 1:
            h.update(p.name.encode())
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return [p.name for p in files], h.hexdigest()


def count_parameters(model) -> tuple[int, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable


def resolve_device(settings: SftSettings) -> tuple[bool, bool, str]:
    """(use_cpu, bf16, device description)."""
    import torch

    use_cpu = settings.use_cpu if settings.use_cpu is not None else not torch.cuda.is_available()
    if use_cpu:
        bf16 = bool(settings.bf16)
        return True, bf16, f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"
    bf16 = settings.bf16 if settings.bf16 is not None else torch.cuda.is_bf16_supported()
    return False, bf16, f"cuda: {torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}"


def prepare_base_model(settings: SftSettings, rows: list[dict[str, Any]], log: Callable[[str], None]) -> str:
    """Folder or hub id of the model to start from; builds the tiny checkpoint when base_model is 'tiny'."""
    if not settings.is_tiny:
        return settings.base_model
    from mmoral_pipeline.training.tiny import build_tiny_checkpoint, corpus_texts

    min_px, max_px = settings.resolved_pixels()
    base_dir = Path(settings.output_dir).with_name(Path(settings.output_dir).name + "_base")
    # Same corpus + same sizes -> same token on every rank; other ranks wait for rank 0 to write it.
    token = hashlib.sha256(
        json.dumps(
            [
                settings.tiny_vocab_size,
                settings.tiny_hidden_size,
                settings.tiny_layers,
                min_px,
                max_px,
                settings.seed,
                [r.get("sample_id") for r in rows],
                settings.train_jsonl,
            ]
        ).encode()
    ).hexdigest()
    ready = base_dir / "BUILT_FOR"
    if is_main_process():
        if base_dir.exists():
            shutil.rmtree(base_dir)
        build_tiny_checkpoint(
            corpus_texts(rows),
            base_dir,
            vocab_size=settings.tiny_vocab_size,
            hidden_size=settings.tiny_hidden_size,
            layers=settings.tiny_layers,
            min_pixels=min_px,
            max_pixels=max_px,
            seed=settings.seed,
        )
        ready.write_text(token)
        log(f"built tiny base checkpoint at {base_dir}")
    else:
        deadline = time.time() + 600
        while not (ready.exists() and ready.read_text() == token):
            if time.time() > deadline:
                raise TimeoutError(f"rank 0 did not build {base_dir}")
            time.sleep(0.5)
    return str(base_dir)


def load_model_and_processor(source: str, settings: SftSettings, bf16: bool, use_cpu: bool):
    import torch
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    min_px, max_px = settings.resolved_pixels()
    proc_kwargs = {}
    if min_px is not None or max_px is not None:  # Qwen2-VL's image processor takes the pixel budget as `size`
        proc_kwargs["size"] = {"shortest_edge": min_px or 56 * 56, "longest_edge": max_px or 28 * 28 * 16384}
    processor = AutoProcessor.from_pretrained(source, local_files_only=True, **proc_kwargs)
    dtype = torch.bfloat16 if bf16 else torch.float32
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(
        source, dtype=dtype, local_files_only=True, attn_implementation="sdpa"
    )
    if settings.freeze_vision:
        for p in model.model.visual.parameters():
            p.requires_grad_(False)
    if settings.finetune == "lora":
        from peft import LoraConfig, get_peft_model

        if settings.gradient_checkpointing:  # frozen embeddings: checkpointed blocks need inputs that want grads
            model.enable_input_require_grads()
        lora = LoraConfig(
            r=settings.lora_r,
            lora_alpha=settings.lora_alpha,
            lora_dropout=settings.lora_dropout,
            # language model projections only (the vision tower's blocks use qkv/proj names, not these)
            target_modules=r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)",
            task_type="CAUSAL_LM",
        )
        model = get_peft_model(model, lora)
    return model, processor


def loss_plot_png(steps: list[int], losses: list[float], path: Path) -> Path | None:
    """A small PNG (about 10-20 kB) of the training loss; None when there is nothing to draw."""
    if not losses:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.0, 2.4), dpi=80)
    ax.plot(steps, losses, lw=1.2)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
    return path


def approx_length(row: dict[str, Any]) -> int:
    """A cheap length proxy for length-grouped batching: characters of text plus a share per image."""
    chars = 0
    for m in row["messages"]:
        content = m["content"]
        chars += len(content) if isinstance(content, str) else sum(len(p.get("text") or "") for p in content)
    return chars + 200 * len(row.get("images") or [])


def length_grouping_args(config_cls, enabled: bool) -> dict[str, Any]:
    """transformers >= 5.x names it train_sampling_strategy; older versions group_by_length."""
    import dataclasses

    names = {f.name for f in dataclasses.fields(config_cls)}
    if not enabled:
        return {}
    if "train_sampling_strategy" in names:
        return {"train_sampling_strategy": "group_by_length", "length_column_name": "length"}
    return {"group_by_length": True, "length_column_name": "length"}


def checkpointing_args(config_cls, enabled: bool) -> dict[str, Any]:
    """transformers >= 5.2x calls it activation_checkpointing (gradient_checkpointing warns); older versions not."""
    import dataclasses

    prefix = (
        "activation" if "activation_checkpointing" in {f.name for f in dataclasses.fields(config_cls)} else "gradient"
    )
    return {
        f"{prefix}_checkpointing": enabled,
        f"{prefix}_checkpointing_kwargs": {"use_reentrant": False} if enabled else None,
    }


def select_rows(settings: SftSettings) -> list[dict[str, Any]]:
    """Training rows: the JSONL filtered to the resolved task types (all when None), then capped at `max_samples`."""
    from mmoral_pipeline.training.data import read_jsonl

    task_types = settings.resolved_task_types()
    if not task_types:
        return read_jsonl(settings.train_jsonl, max_samples=settings.max_samples)
    wanted = set(task_types)
    rows = [r for r in read_jsonl(settings.train_jsonl) if r.get("task_type") in wanted]
    return rows[: settings.max_samples] if settings.max_samples is not None else rows


def closed_target_row(row: dict[str, Any], target: str) -> dict[str, Any]:
    """A closed-ended row with its one-letter answer rewritten to `target`: 'letter' leaves it, 'letter_and_text'
    gives 'B. Lower jaw', 'option_text' gives 'Lower jaw'. Other rows, and rows whose letter names no option, pass."""
    from mmoral_pipeline.evaluation.runners import closed_prompt_options

    if target == "letter" or not str(row.get("task_type", "")).endswith("_closed") or len(row["messages"]) != 2:
        return row
    user, answer = row["messages"]
    texts = [user["content"]] if isinstance(user["content"], str) else [p.get("text") or "" for p in user["content"]]
    options = closed_prompt_options("\n".join(texts))
    content = answer["content"]
    letter = (content if isinstance(content, str) else "".join(p.get("text") or "" for p in content)).strip()
    if letter not in options:
        return row
    text = f"{letter}. {options[letter]}" if target == "letter_and_text" else options[letter]
    new_answer = {"role": "assistant", "content": [{"type": "text", "text": text}]}
    return {**row, "messages": [user, new_answer]}


def train(settings: SftSettings, log: Callable[[str], None] = print) -> TrainReport:
    """Run one SFT run end to end; writes the checkpoint (+ processor, loss plot, train_report.json)."""
    t_start = time.perf_counter()
    import torch
    from datasets import Dataset
    from transformers import PrinterCallback, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from mmoral_pipeline.training.data import AssistantOnlyCollator

    torch.manual_seed(settings.seed)
    rows = select_rows(settings)
    closed_target = settings.resolved_closed_target()
    rows = [closed_target_row(r, closed_target) for r in rows]
    if not rows:
        raise ValueError(
            f"{settings.train_jsonl} holds no samples"
            + (f" of task types {settings.resolved_task_types()}" if settings.resolved_task_types() else "")
        )
    log(f"{len(rows)} training samples from {settings.train_jsonl}")
    use_cpu, bf16, device = resolve_device(settings)
    source = prepare_base_model(settings, rows, log)
    model, processor = load_model_and_processor(source, settings, bf16=bf16, use_cpu=use_cpu)
    total, trainable = count_parameters(model)
    log(f"model from {source}: {total:,} parameters, {trainable:,} trainable; device {device}; bf16={bf16}")

    # Only what the collator needs; images stay paths until a batch is built.
    dataset = Dataset.from_list(
        [{"messages": r["messages"], "images": r["images"], "length": approx_length(r)} for r in rows]
    )
    collator = AssistantOnlyCollator(processor=processor, max_length=settings.max_length)
    out_dir = Path(settings.output_dir)
    lr = settings.resolved_learning_rate()
    args = SFTConfig(
        output_dir=str(out_dir),
        per_device_train_batch_size=settings.resolved_batch_size(),
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        learning_rate=lr,
        lr_scheduler_type=settings.lr_scheduler_type,
        warmup_steps=settings.warmup_ratio,
        weight_decay=settings.weight_decay,
        num_train_epochs=settings.num_train_epochs,
        max_steps=settings.max_steps,
        max_length=settings.max_length,
        bf16=bf16,
        use_cpu=use_cpu,
        **checkpointing_args(SFTConfig, settings.gradient_checkpointing),
        seed=settings.seed,
        logging_steps=settings.logging_steps,
        logging_first_step=True,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        remove_unused_columns=False,
        dataset_kwargs={"skip_prepare_dataset": True},
        dataloader_num_workers=settings.dataloader_num_workers,
        dataloader_pin_memory=not use_cpu,
        include_num_input_tokens_seen="non_padding",  # counted over all ranks, also with dataloader workers
        **length_grouping_args(SFTConfig, settings.group_by_length),
    )

    steps: list[int] = []
    losses: list[float] = []
    samples_per_step = (
        args.per_device_train_batch_size * args.gradient_accumulation_steps * int(os.environ.get("WORLD_SIZE", "1"))
    )
    tracker: list[Progress] = []

    def progress_details() -> str:
        loss = f"loss {losses[-1]:.4f}, " if losses else ""
        return f"{loss}{tracker[0].rate() * samples_per_step:.1f} samples/s" if tracker else loss

    class LossRecorder(TrainerCallback):
        """Records the loss curve; reports step, loss, samples/s and ETA every `MMORAL_PROGRESS_EVERY_S` seconds."""

        def on_train_begin(self, args, state, control, **kwargs):
            tracker.append(Progress("SFT", int(state.max_steps), log, unit="steps", details=progress_details).start())

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                steps.append(int(state.global_step))
                losses.append(float(logs["loss"]))

        def on_step_end(self, args, state, control, **kwargs):
            tracker[0].advance(1)

        def on_train_end(self, args, state, control, **kwargs):
            tracker[0].finish()

    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=processor,
        data_collator=collator,
        callbacks=[LossRecorder()],
    )
    trainer.remove_callback(PrinterCallback)  # LossRecorder logs the loss; the raw dicts are noise
    t_train = time.perf_counter()
    result = trainer.train()
    train_time = time.perf_counter() - t_train

    if out_dir.exists() and is_main_process():
        for p in out_dir.iterdir():  # the folder is this run's checkpoint: drop an earlier run's weights
            if is_weights_file(p):
                p.unlink()
    trainer.save_model(str(out_dir))
    if is_main_process():
        processor.save_pretrained(str(out_dir))
        # where this run started from: LoRA inference loads the adapter over it; evaluation scores it as "base"
        (out_dir / "base_model.txt").write_text(source + "\n")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    files, digest = weights_digest(out_dir) if is_main_process() else ([], "")
    plot = loss_plot_png(steps, losses, out_dir / "loss_curve.png") if is_main_process() else None
    tokens = int(trainer.state.num_input_tokens_seen or collator.tokens_seen * world)
    samples_per_s = float(result.metrics.get("train_samples_per_second") or 0.0)
    report = TrainReport(
        checkpoint_dir=str(out_dir.resolve()),
        weights_files=files,
        weights_sha256=digest,
        base_model=settings.base_model,
        finetune=settings.finetune,
        device=device,
        world_size=world,
        params_total=total,
        params_trainable=trainable,
        train_samples=len(rows),
        steps=int(result.global_step),
        epochs=float(trainer.state.epoch or 0.0),
        wall_time_s=time.perf_counter() - t_start,
        train_time_s=train_time,
        samples_per_s=samples_per_s,
        tokens_per_s=tokens / train_time if train_time > 0 else 0.0,
        tokens_seen=tokens,
        assistant_tokens_seen=collator.assistant_tokens_seen * world,  # rank 0's count x ranks (estimate)
        loss_steps=steps,
        losses=losses,
        loss_start=losses[0] if losses else float("nan"),
        loss_end=losses[-1] if losses else float("nan"),
        loss_plot_png=str(plot) if plot else None,
        learning_rate=lr,
        max_pixels=settings.resolved_pixels()[1],
        bf16=bf16,
        task_types=settings.resolved_task_types(),
        closed_target=closed_target,
    )
    if is_main_process():
        (out_dir / "train_report.json").write_text(report.model_dump_json(indent=2))
    return report
