"""Train an expert on annotated images: a torchvision detector from scratch, scored with COCO metrics.

`train_expert(settings, images, annotations)` takes `raw_images` / `raw_annotations` frames, splits
them by image as the dataset does, trains, scores the validation images (pycocotools), writes the
checkpoint folder (`model.pt`, `expert.json`, `metrics.json`, `model.onnx`) under
`<output_root>/<run>/`, points `<output_root>/latest` at it and returns an `ExpertTrainReport`.
No Dagster here: `experts/run.py` is the Pipes entry point the `expert_model` asset launches.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from pydantic import BaseModel

from mmoral_pipeline.experts.classes import categories_of, classes_from_labels
from mmoral_pipeline.experts.data import Sample, fully_labelled, labels_of, load_samples, split_frame, training_arrays
from mmoral_pipeline.experts.evaluate import coco_metrics, per_category
from mmoral_pipeline.experts.imageio import model_image_paths
from mmoral_pipeline.experts.settings import ExpertTrainSettings
from mmoral_pipeline.experts.spec import (
    WEIGHTS_FILE,
    DetectorSpec,
    ExpertManifest,
    write_manifest,
)
from mmoral_pipeline.sources.base import sha256_file

METRICS_FILE = "metrics.json"
LATEST = "latest"


class ExpertTrainReport(BaseModel):
    """What a training run reports back: where the checkpoint is, figures, metrics, coverage."""

    checkpoint_dir: str
    latest_dir: str
    name: str
    version: str
    arch: str
    device: str
    params: int
    classes: list[str]
    covers: list[str]
    not_covered: dict[str, str]  # category -> why the expert does not assess it
    sources: list[str]
    images: dict[str, int]  # per split
    partly_labelled_images: int  # left out: their coverage lacks a category the expert learns
    train_boxes: int
    steps: int
    epochs: float
    train_time_s: float
    train_cpu_s: float  # CPU time of the training loop (all threads): comparable on a busy machine
    wall_time_s: float
    train_images_per_s: float
    val_images_per_s: float
    loss_steps: list[int]
    losses: list[float]
    metrics: dict[str, Any]
    per_category: dict[str, dict[str, Any]]
    map50_floor: float
    onnx: str | None = None

    def loss_is_finite(self) -> bool:
        return bool(self.losses) and all(math.isfinite(x) for x in self.losses)

    def meets_floor(self) -> bool:
        return self.loss_is_finite() and float(self.metrics.get("map50", 0.0)) >= self.map50_floor


def run_folder_name() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


def point_latest(root: Path, run_dir: Path) -> Path:
    """Make `<root>/latest` a relative symlink to the run folder, replaced atomically."""
    latest = root / LATEST
    tmp = root / f".{LATEST}.{uuid.uuid4().hex[:6]}"
    os.symlink(run_dir.name, tmp)
    if latest.is_dir() and not latest.is_symlink():
        shutil.rmtree(latest)
    os.replace(tmp, latest)
    return latest


def coverage_from_metrics(
    categories: Sequence[str], by_category: dict[str, dict[str, Any]], min_ap50: float
) -> tuple[list[str], dict[str, str]]:
    """(covered categories, {category: reason not covered}): a category is covered when its validation AP50
    reaches `min_ap50`; without a validation box it cannot show that and is not covered."""
    covers, not_covered = [], {}
    for category in categories:
        row = by_category.get(category)
        ap50 = None if row is None else row.get("ap50")
        if ap50 is None:
            not_covered[category] = "no validation box to score it on"
        elif ap50 < min_ap50:
            not_covered[category] = f"validation AP50 {ap50:.3f} < {min_ap50}"
        else:
            covers.append(category)
    return covers, not_covered


def _lr_factor(step: int, total: int, warmup: int) -> float:
    if warmup and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def predict_samples(model: Any, samples: Sequence[Sample], spec: DetectorSpec, device: Any, batch_size: int = 8):
    """Detections in original image pixels for each sample (no augmentation), and the seconds it took."""
    import torch

    from mmoral_pipeline.experts.base import detections_from_outputs

    model.eval()
    out: dict[str, list] = {}
    t0 = time.perf_counter()
    with torch.inference_mode():
        for start in range(0, len(samples), batch_size):
            chunk = samples[start : start + batch_size]
            inputs = [
                torch.from_numpy(training_arrays(s, {}, coord_channels=spec.coord_channels)[0]).to(device)
                for s in chunk
            ]
            for s, res in zip(chunk, model(inputs), strict=True):
                sx, sy = s.scale

                def to_image(b: Sequence[float], sx: float = sx, sy: float = sy) -> list[float]:
                    return [b[0] / sx, b[1] / sy, b[2] / sx, b[3] / sy]

                out[s.image_id] = detections_from_outputs(
                    spec.classes,
                    res["boxes"].cpu().tolist(),
                    res["labels"].cpu().tolist(),
                    res["scores"].cpu().tolist(),
                    to_image,
                )
    return out, time.perf_counter() - t0


def train_expert(
    settings: ExpertTrainSettings,
    images: pl.DataFrame,
    annotations: pl.DataFrame,
    log: Callable[[str], None] = print,
) -> ExpertTrainReport:
    """Train, score and save one expert; `images` / `annotations` are raw_images / raw_annotations rows."""
    import torch

    from mmoral_pipeline.experts.model import build_detector, count_parameters
    from mmoral_pipeline.experts.torch_backend import resolve_device

    t_wall = time.perf_counter()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    device = resolve_device(settings.device)

    images = images.unique("image_id", keep="first").sort("image_id")
    split = split_frame(
        images, settings.val_fraction, settings.holdout_fraction
    )  # before any filter: the dataset's split
    candidates = classes_from_labels(
        labels_of(annotations), min_instances=settings.min_instances, categories=settings.categories
    )
    complete = fully_labelled(images, [c.value for c in categories_of(candidates)])
    partly_labelled = images.height - complete.height
    by_split = {
        name: complete.filter(pl.col("image_id").is_in([i for i, s in split.items() if s == name]))
        for name in ("train", "val", "bench")
    }
    train_ids = set(by_split["train"]["image_id"].to_list())
    train_anns = annotations.filter(pl.col("image_id").is_in(list(train_ids)))
    classes = classes_from_labels(
        labels_of(train_anns), min_instances=settings.min_instances, categories=settings.categories
    )
    if partly_labelled:
        log(f"{partly_labelled} images left out: their sources do not label every category learnt here")
    if not classes:
        raise ValueError(
            f"nothing to learn: no class has {settings.min_instances}+ boxes in the {len(train_ids)} training images"
        )
    spec = DetectorSpec(
        arch=settings.arch, classes=classes, image_size=settings.image_size, width=settings.width,
        fpn_channels=settings.fpn_channels, coord_channels=settings.coord_channels,
    )
    class_index = {name: i + 1 for i, name in enumerate(classes)}
    log(f"{len(classes)} classes over {len(categories_of(classes))} categories; images per split "
        f"{ {k: v.height for k, v in by_split.items()} }; device {device}")

    train_samples = load_samples(by_split["train"], train_anns, classes, spec.image_size)
    val_anns = annotations.filter(pl.col("image_id").is_in(by_split["val"]["image_id"].to_list()))
    val_samples = load_samples(by_split["val"], val_anns, classes, spec.image_size)
    train_boxes = int(sum(len(s.classes) for s in train_samples))

    model = build_detector(spec).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=settings.learning_rate, weight_decay=settings.weight_decay)
    steps_per_epoch = max(1, math.ceil(len(train_samples) / settings.batch_size))
    total_steps = settings.max_steps if settings.max_steps > 0 else max(1, round(settings.epochs * steps_per_epoch))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: _lr_factor(s, total_steps, settings.warmup_steps)
    )

    losses: list[float] = []
    loss_steps: list[int] = []
    step, seen = 0, 0
    t_train, cpu_train = time.perf_counter(), time.process_time()
    model.train()
    while step < total_steps:
        order = rng.permutation(len(train_samples))
        for start in range(0, len(order), settings.batch_size):
            if step >= total_steps:
                break
            if settings.max_train_seconds and time.perf_counter() - t_train > settings.max_train_seconds:
                log(f"stopping at step {step}: max_train_seconds={settings.max_train_seconds} reached")
                total_steps = step
                break
            inputs, targets = [], []
            for i in order[start : start + settings.batch_size]:
                arr, boxes, labels = training_arrays(
                    train_samples[int(i)],
                    class_index,
                    coord_channels=spec.coord_channels,
                    rng=rng,
                    hflip=settings.hflip,
                )
                inputs.append(torch.from_numpy(arr).to(device))
                targets.append(
                    {"boxes": torch.from_numpy(boxes).to(device), "labels": torch.from_numpy(labels).to(device)}
                )
            loss_parts = model(inputs, targets)
            loss = sum(loss_parts.values())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 10.0)
            optimizer.step()
            scheduler.step()
            step += 1
            seen += len(inputs)
            losses.append(float(loss.item()))
            loss_steps.append(step)
            if step == 1 or step % 25 == 0 or step == total_steps:
                log(f"step {step}/{total_steps} loss {losses[-1]:.4f} ({time.perf_counter() - t_train:.0f} s)")
    train_time, train_cpu = time.perf_counter() - t_train, time.process_time() - cpu_train

    predictions, val_seconds = predict_samples(model, val_samples, spec, device)
    truth = {s.image_id: [(c, [b[0] / s.scale[0], b[1] / s.scale[1], b[2] / s.scale[0], b[3] / s.scale[1]])
                          for c, b in zip(s.classes, s.boxes.tolist(), strict=True)] for s in val_samples}
    metrics = coco_metrics(classes, [(s.image_id, s.width, s.height) for s in val_samples], truth, predictions)
    by_category = per_category(metrics)
    categories = [c.value for c in categories_of(classes)]
    covers, not_covered = coverage_from_metrics(categories, by_category, settings.cover_min_ap50)
    log(f"validation mAP@0.5 {metrics['map50']:.3f}, mAP@[.5:.95] {metrics['map']:.3f}; covers {covers}")

    root = Path(settings.output_root)
    run_dir = root / (settings.run_name or run_folder_name())
    run_dir.mkdir(parents=True, exist_ok=True)
    weights = run_dir / WEIGHTS_FILE
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, weights)
    version = sha256_file(weights)[:12]
    sources = sorted(set(images.filter(pl.col("image_id").is_in(list(train_ids)))["source"].to_list()))
    manifest = ExpertManifest(
        name=settings.name,
        version=version,
        spec=spec,
        covers=covers,
        trained_on={
            "sources": sources,
            "images": {k: v.height for k, v in by_split.items()},
            "train_boxes": train_boxes,
            "settings": settings.model_dump(mode="json"),
        },
        metrics={
            "map": metrics["map"],
            "map50": metrics["map50"],
            "per_category": by_category,
            "images": metrics["images"],
        },
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    write_manifest(run_dir, manifest)
    onnx_name = None
    if settings.export_onnx:
        from mmoral_pipeline.experts.onnx_backend import export_onnx

        sample = model_image_paths(by_split["val"] if by_split["val"].height else by_split["train"])[0]
        onnx_name = export_onnx(run_dir, sample).name
    report = ExpertTrainReport(
        checkpoint_dir=str(run_dir),
        latest_dir=str(point_latest(root, run_dir)),
        name=settings.name,
        version=version,
        arch=spec.arch,
        device=str(device),
        params=count_parameters(model),
        classes=classes,
        covers=covers,
        not_covered=not_covered,
        sources=sources,
        images={k: v.height for k, v in by_split.items()},
        partly_labelled_images=partly_labelled,
        train_boxes=train_boxes,
        steps=step,
        epochs=round(seen / max(1, len(train_samples)), 3),
        train_time_s=round(train_time, 2),
        train_cpu_s=round(train_cpu, 2),
        wall_time_s=round(time.perf_counter() - t_wall, 2),
        train_images_per_s=round(seen / train_time, 2) if train_time > 0 else 0.0,
        val_images_per_s=round(len(val_samples) / val_seconds, 2) if val_seconds > 0 else 0.0,
        loss_steps=loss_steps,
        losses=[round(v, 5) for v in losses],
        metrics=metrics,
        per_category=by_category,
        map50_floor=settings.map50_floor,
        onnx=onnx_name,
    )
    (run_dir / METRICS_FILE).write_text(json.dumps(report.model_dump(mode="json"), indent=2) + "\n")
    return report
