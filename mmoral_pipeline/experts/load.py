"""Open an expert checkpoint folder with the backend it needs (or the one asked for)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from mmoral_pipeline.experts.base import Expert
from mmoral_pipeline.experts.spec import ONNX_FILE, WEIGHTS_FILE, read_manifest

Backend = Literal["auto", "torchvision", "onnxruntime"]


def load_expert(checkpoint_dir: str | Path, backend: Backend = "auto", device: str = "auto") -> Expert:
    """'auto': the torchvision weights when the folder has them, else its ONNX export."""
    folder = Path(checkpoint_dir)
    manifest = read_manifest(folder)  # fails clearly on a folder that is not a checkpoint
    if backend == "auto":
        has_onnx = (folder / (manifest.onnx or ONNX_FILE)).exists()
        backend = "torchvision" if (folder / WEIGHTS_FILE).exists() or not has_onnx else "onnxruntime"
    if backend == "torchvision":
        from mmoral_pipeline.experts.torch_backend import TorchvisionExpert

        return TorchvisionExpert(folder, device=device)
    from mmoral_pipeline.experts.onnx_backend import OnnxExpert

    return OnnxExpert(folder, device=device)
