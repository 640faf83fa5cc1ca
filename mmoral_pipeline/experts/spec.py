"""What an expert is, without torch: the detector's architecture and input encoding, and its manifest.

`DetectorSpec` is enough to rebuild the network (the checkpoint stores it next to the weights);
`ExpertManifest` is the `expert.json` of a checkpoint folder: name, version, classes, what it
assesses, how it was trained and how well it did.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from mmoral_pipeline.experts.classes import categories_of

MANIFEST_FILE = "expert.json"
WEIGHTS_FILE = "model.pt"
ONNX_FILE = "model.onnx"

Arch = Literal["fasterrcnn_tiny", "fcos_tiny", "fasterrcnn_mobilenet_v3"]


class DetectorSpec(BaseModel):
    """A torchvision detector built without downloaded weights.

    - `fasterrcnn_tiny` / `fcos_tiny`: a small CNN (`width` base channels, 4 stages) + FPN
      (`fpn_channels`) under torchvision's Faster R-CNN or FCOS heads; trains in minutes on CPU.
    - `fasterrcnn_mobilenet_v3`: torchvision's `fasterrcnn_mobilenet_v3_large_fpn` (weights=None,
      weights_backbone=None), for longer runs on a GPU.

    Input: the X-ray in grey, resized so its long side is `image_size`; with `coord_channels` the
    two other input channels are the pixel's x and y position (0..1), so a tooth's FDI class can
    depend on where it lies (11 and 21 look alike; only their side tells them apart).
    """

    arch: Arch = "fasterrcnn_tiny"
    classes: list[str] = Field(min_length=1, description="detector classes in label order (label 0 is background)")
    image_size: int = Field(640, ge=64, le=4096, description="long side of the network input, pixels")
    width: int = Field(16, ge=8, le=256, description="tiny backbones: channels of the first stage")
    fpn_channels: int = Field(48, ge=16, le=256)
    coord_channels: bool = True
    detections_per_image: int = Field(150, ge=1, le=1000)
    score_floor: float = Field(0.05, ge=0.0, le=1.0, description="the network drops boxes below this score")

    @property
    def num_classes(self) -> int:
        return len(self.classes) + 1


class ExpertManifest(BaseModel):
    """`expert.json`: the checkpoint's description, read without loading weights."""

    name: str
    version: str = Field(description="sha256 of the weights file, 12 hex digits")
    spec: DetectorSpec
    covers: list[str] = Field(default_factory=list, description="unified categories this expert assesses")
    trained_on: dict[str, Any] = Field(default_factory=dict, description="sources, images per split, settings")
    metrics: dict[str, Any] = Field(default_factory=dict, description="COCO metrics on the validation images")
    created_at: str = ""
    onnx: str | None = Field(default=None, description="file name of an ONNX export beside the weights")

    @property
    def categories(self) -> list[str]:
        return [c.value for c in categories_of(self.spec.classes)]


def read_manifest(checkpoint_dir: str | Path) -> ExpertManifest:
    path = Path(checkpoint_dir) / MANIFEST_FILE
    if not path.exists():
        raise FileNotFoundError(f"{checkpoint_dir}: no {MANIFEST_FILE}; not an expert checkpoint folder")
    return ExpertManifest.model_validate(json.loads(path.read_text()))


def write_manifest(checkpoint_dir: str | Path, manifest: ExpertManifest) -> Path:
    path = Path(checkpoint_dir) / MANIFEST_FILE
    path.write_text(manifest.model_dump_json(indent=2) + "\n")
    return path
