"""Expert backend: an exported model under ONNX Runtime (no torch needed at inference).

torchvision's detection graphs export with one image per call (variable height and width), so a
batch runs image by image through one session; ONNX Runtime parallelises inside each call.
`export_onnx` (needs torch) writes `model.onnx` beside a checkpoint's weights.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mmoral_pipeline.experts.base import Detection, detections_from_outputs
from mmoral_pipeline.experts.imageio import prepare
from mmoral_pipeline.experts.spec import ONNX_FILE, read_manifest, write_manifest

INPUT_NAME = "image"
OUTPUT_NAMES = ("boxes", "labels", "scores")
OPSET = 17


def providers(device: str) -> list[str]:
    """ONNX Runtime execution providers for 'auto' / 'cpu' / 'cuda' (CUDA only where the runtime has it)."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device in ("auto", "cuda") or device.startswith("cuda"):
        if "CUDAExecutionProvider" in available:
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]
        if device != "auto":
            raise RuntimeError(f"device {device!r}: this onnxruntime has no CUDA provider ({available})")
    return ["CPUExecutionProvider"]


class OnnxExpert:
    """Inference with `model.onnx` of a checkpoint folder."""

    backend = "onnxruntime"

    def __init__(self, checkpoint_dir: str | Path, device: str = "auto", threads: int | None = None) -> None:
        import onnxruntime as ort

        self.checkpoint_dir = str(checkpoint_dir)
        self.manifest = read_manifest(checkpoint_dir)
        path = Path(checkpoint_dir) / (self.manifest.onnx or ONNX_FILE)
        if not path.exists():
            raise FileNotFoundError(
                f"{checkpoint_dir}: no {path.name}; export it with experts.onnx_backend.export_onnx"
            )
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), options, providers=providers(device))
        self.device = "cuda" if self.session.get_providers()[0] == "CUDAExecutionProvider" else "cpu"

    def predict(self, paths: Sequence[str]) -> list[list[Detection]]:
        results = []
        for path in paths:
            prep = prepare(path, self.manifest.spec)
            boxes, labels, scores = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: np.ascontiguousarray(prep.array)})
            results.append(
                detections_from_outputs(
                    self.manifest.spec.classes, boxes.tolist(), labels.tolist(), scores.tolist(), prep.to_image_box
                )
            )
        return results


def export_onnx(checkpoint_dir: str | Path, sample_path: str | None = None) -> Path:
    """Export the checkpoint's torchvision model to `model.onnx` (one image in; boxes, labels, scores out)
    and record it in the manifest. `sample_path`: an image to trace with (default: a mid-grey image)."""
    import torch

    from mmoral_pipeline.experts.torch_backend import load_model

    manifest = read_manifest(checkpoint_dir)
    model = load_model(checkpoint_dir, manifest, torch.device("cpu"))
    if sample_path:
        example = torch.from_numpy(prepare(sample_path, manifest.spec).array)
    else:
        size = manifest.spec.image_size
        example = torch.full((3, size // 2, size), 0.5)
    out = Path(checkpoint_dir) / ONNX_FILE

    class _OneImage(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, image: torch.Tensor):
            result = self.inner([image])[0]
            return result["boxes"], result["labels"], result["scores"]

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracing torchvision's detection code warns about constants it folds
        torch.onnx.export(
            _OneImage(model).eval(),
            (example,),
            str(out),
            dynamo=False,  # torchvision's detection models export through the TorchScript-based exporter
            opset_version=OPSET,
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            dynamic_axes={INPUT_NAME: {1: "height", 2: "width"}, **{n: {0: "detections"} for n in OUTPUT_NAMES}},
        )
    manifest.onnx = out.name
    write_manifest(checkpoint_dir, manifest)
    return out
