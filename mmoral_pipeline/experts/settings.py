"""Settings of one expert training run: the boundary object between the Dagster shell and the trainer
process (the `expert_model` asset's config mirrors these fields). No torch import."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from mmoral_pipeline.config import mmoral_home
from mmoral_pipeline.experts.spec import Arch

# The paper keeps an expert's boxes above 0.3 and applies its per-class thresholds afterwards.
KEEP_SCORE = 0.3


def default_expert_root() -> str:
    return str(Path(mmoral_home()) / "expert_model")


class ExpertTrainSettings(BaseModel):
    """What one expert training run does. Defaults: the tiny Faster R-CNN, CPU-sized, a few minutes."""

    name: str = Field(
        "mmoral-expert", pattern=r"^[A-Za-z0-9_.-]+$", description="the expert's name in every box it draws"
    )
    output_root: str = Field(
        default_factory=default_expert_root, description="runs go to <root>/<run>/, the newest at <root>/latest"
    )
    run_name: str | None = Field(default=None, description="folder of this run; None: UTC time + a short id")
    arch: Arch = "fasterrcnn_tiny"
    image_size: int = Field(512, ge=64, le=4096, description="long side of the network input, pixels")
    width: int = Field(16, ge=8, le=256, description="tiny backbones: channels of the first stage")
    fpn_channels: int = Field(48, ge=16, le=256)
    coord_channels: bool = True
    categories: list[str] | None = Field(default=None, description="train only these unified categories; None: all")
    min_instances: int = Field(8, ge=1, description="a class needs this many training boxes to be learnt")
    epochs: float = Field(8.0, gt=0)
    max_steps: int = Field(-1, description="> 0 overrides epochs")
    max_train_seconds: float | None = Field(
        default=None, gt=0, description="stop training after this long (the result then depends on the machine)"
    )
    batch_size: int = Field(4, ge=1)
    learning_rate: float = Field(3e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    warmup_steps: int = Field(20, ge=0)
    hflip: bool = Field(True, description="mirror images left-right, renumbering teeth to the other side (11 <-> 21)")
    seed: int = 0
    device: str = Field("auto", description="'auto' (CUDA when there is one), 'cpu', 'cuda', 'cuda:1'")
    threads: int | None = Field(
        default=1, ge=1, description="torch CPU threads (None: torch's default, every core). 1: this network's small "
        "convolutions gain little from a second thread, and on a busy machine OpenMP threads waste most of their time "
        "waiting on each other (4x the CPU time, measured); raise it on a dedicated machine")
    val_fraction: float = Field(0.1, ge=0.0, le=1.0, description="the dataset's split rule (dataset/split.py)")
    holdout_fraction: float = Field(0.1, ge=0.0, le=1.0)
    cover_min_ap50: float = Field(
        0.5, ge=0.0, le=1.0,
        description="a category joins the expert's coverage only with validation AP50 >= this (teeth: their mean); "
        "categories it predicts worse stay unassessed, so reports say nothing about them",
    )
    map50_floor: float = Field(0.3, ge=0.0, le=1.0, description="the expert_map_floor check fails below this mAP@0.5")
    export_onnx: bool = Field(True, description="also write model.onnx for the ONNX Runtime backend")
