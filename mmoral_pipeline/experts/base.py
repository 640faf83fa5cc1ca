"""The one small interface every expert backend implements, and what it returns.

An expert predicts boxes for a batch of images: each with its unified category, the FDI tooth
where the class is a tooth, and a score. Backends: `torch_backend.TorchvisionExpert` (a
torchvision detector from a checkpoint file) and `onnx_backend.OnnxExpert` (an exported model
under ONNX Runtime). `load.load_expert` picks one from a checkpoint folder.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from mmoral_pipeline.experts.classes import parse_class
from mmoral_pipeline.experts.spec import ExpertManifest


@dataclass(frozen=True, slots=True)
class Detection:
    """One predicted box in the original image's pixels."""

    label: str  # detector class: tooth_36, caries
    category: str  # unified category
    tooth: int | None  # FDI for a tooth, else None
    box: tuple[float, float, float, float]
    score: float


@dataclass
class Throughput:
    """Timing of a prediction run: images, seconds, device, batch size."""

    images: int = 0
    seconds: float = 0.0
    device: str = "cpu"
    batch_size: int = 1
    backend: str = ""

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, float | int | str]:
        return {
            "images": self.images,
            "seconds": round(self.seconds, 3),
            "images_per_s": round(self.images_per_s, 2),
            "device": self.device,
            "batch_size": self.batch_size,
            "backend": self.backend,
        }


class Expert(Protocol):
    """A visual expert: a checkpoint's manifest and a batched `predict`."""

    manifest: ExpertManifest
    device: str
    backend: str

    def predict(self, paths: Sequence[str]) -> list[list[Detection]]:
        """Boxes for each image (same order), above the network's score floor."""
        ...


def detections_from_outputs(
    classes: Sequence[str], boxes: Sequence[Sequence[float]], labels: Sequence[int], scores: Sequence[float],
    to_image_box: Callable[[Sequence[float]], list[float]],
) -> list[Detection]:
    """Network outputs (labels 1..N, 0 = background) -> detections in image pixels; both backends call it."""
    out = []
    for box, label, score in zip(boxes, labels, scores, strict=True):
        if not 1 <= int(label) <= len(classes):
            continue
        cls = parse_class(classes[int(label) - 1])
        x1, y1, x2, y2 = to_image_box(list(box))
        if x2 <= x1 or y2 <= y1:
            continue
        out.append(Detection(cls.name, cls.category.value, cls.tooth, (x1, y1, x2, y2), float(score)))
    return out


@dataclass
class PredictionRun:
    """Detections for many images, predicted in batches, with the run's throughput."""

    detections: list[list[Detection]] = field(default_factory=list)
    throughput: Throughput = field(default_factory=Throughput)


def predict_in_batches(expert: Expert, paths: Sequence[str], batch_size: int = 8) -> PredictionRun:
    run = PredictionRun(throughput=Throughput(device=expert.device, batch_size=batch_size, backend=expert.backend))
    t0 = time.perf_counter()
    for start in range(0, len(paths), batch_size):
        run.detections.extend(expert.predict(paths[start : start + batch_size]))
    run.throughput.images = len(paths)
    run.throughput.seconds = time.perf_counter() - t0
    return run
