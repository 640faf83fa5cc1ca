"""Expert backend: a torchvision detector from a checkpoint folder (`expert.json` + `model.pt`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from mmoral_pipeline.experts.base import Detection, detections_from_outputs
from mmoral_pipeline.experts.imageio import prepare
from mmoral_pipeline.experts.model import build_detector
from mmoral_pipeline.experts.spec import WEIGHTS_FILE, ExpertManifest, read_manifest


def resolve_device(device: str = "auto") -> torch.device:
    """'auto': the first CUDA device when there is one, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_model(checkpoint_dir: str | Path, manifest: ExpertManifest, device: torch.device) -> torch.nn.Module:
    weights = Path(checkpoint_dir) / WEIGHTS_FILE
    if not weights.exists():
        raise FileNotFoundError(f"{checkpoint_dir}: no {WEIGHTS_FILE}")
    model = build_detector(manifest.spec)
    state = torch.load(weights, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.to(device).eval()


class TorchvisionExpert:
    """Batched inference with the torchvision model (CPU or GPU)."""

    backend = "torchvision"

    def __init__(self, checkpoint_dir: str | Path, device: str = "auto") -> None:
        self.checkpoint_dir = str(checkpoint_dir)
        self.manifest = read_manifest(checkpoint_dir)
        self._device = resolve_device(device)
        self.device = str(self._device)
        self.model = load_model(checkpoint_dir, self.manifest, self._device)

    @torch.inference_mode()
    def predict(self, paths: Sequence[str]) -> list[list[Detection]]:
        prepared = [prepare(p, self.manifest.spec) for p in paths]
        inputs = [torch.from_numpy(p.array).to(self._device) for p in prepared]
        outputs = self.model(inputs) if inputs else []
        return [
            detections_from_outputs(
                self.manifest.spec.classes,
                out["boxes"].cpu().tolist(),
                out["labels"].cpu().tolist(),
                out["scores"].cpu().tolist(),
                prep.to_image_box,
            )
            for prep, out in zip(prepared, outputs, strict=True)
        ]
