"""The network input of an expert, from an image file, in numpy (the ONNX backend needs no torch).

One home for the preprocessing every backend and the trainer use: grey, long side resized to the
spec's `image_size`, values 0..1, optionally with x / y position channels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
from PIL import Image

from mmoral_pipeline.experts.spec import DetectorSpec
from mmoral_pipeline.sources.base import normalise_image


@dataclass(frozen=True)
class Prepared:
    """One image ready for the network: `array` (3, h, w) float32 and the factors back to pixels."""

    array: np.ndarray
    width: int  # the original image's size
    height: int
    scale_x: float  # network pixels per image pixel
    scale_y: float

    def to_image_box(self, box: list[float] | tuple[float, ...]) -> list[float]:
        """A network-space [x1, y1, x2, y2] in the original image's pixels, clipped to it."""
        x1, y1, x2, y2 = box
        return [
            min(max(x1 / self.scale_x, 0.0), float(self.width)),
            min(max(y1 / self.scale_y, 0.0), float(self.height)),
            min(max(x2 / self.scale_x, 0.0), float(self.width)),
            min(max(y2 / self.scale_y, 0.0), float(self.height)),
        ]


def network_size(width: int, height: int, image_size: int) -> tuple[int, int]:
    scale = image_size / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def load_grey(path: str, image_size: int) -> tuple[np.ndarray, int, int]:
    """(grey (h, w) float32 0..1 at the network size, image width, image height).

    The image as the pipeline's model image is (`sources.base.normalise_image`: display orientation,
    8 bits); the pipeline passes `raw_images.model_image_path`, where that is already done. JPEGs are
    decoded at a reduced scale when that still covers the network size (PIL's draft mode).
    """
    with Image.open(path) as im:
        full: tuple[int, int] | None = None
        if im.format == "JPEG" and im.getexif().get(0x0112, 1) in (None, 1):
            full = im.size
            im.draft("L", network_size(*full, image_size))
        model, _ = normalise_image(im)
        width, height = full or model.size
        grey = model.convert("L").resize(network_size(width, height, image_size), Image.BILINEAR)
    return np.asarray(grey, dtype=np.float32) / 255.0, width, height


def model_image_paths(images: pl.DataFrame) -> list[str]:
    """The files an expert reads for `raw_images` rows: the model image (normalised 8-bit, display
    orientation; a DICOM's rendering), else the source file."""
    if "model_image_path" not in images.columns:
        return images["path"].to_list()
    return images.select(pl.coalesce(pl.col("model_image_path").replace("", None), "path"))[
        "model_image_path"
    ].to_list()


def input_array(grey: np.ndarray, coord_channels: bool) -> np.ndarray:
    """(h, w) grey -> (3, h, w): grey, x, y (0..1), or grey three times."""
    h, w = grey.shape
    if not coord_channels:
        return np.repeat(grey[None], 3, axis=0)
    xs = np.broadcast_to(np.linspace(0.0, 1.0, w, dtype=np.float32), (h, w))
    ys = np.broadcast_to(np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None], (h, w))
    return np.stack([grey, xs, ys])


def prepare(path: str, spec: DetectorSpec) -> Prepared:
    grey, width, height = load_grey(path, spec.image_size)
    h, w = grey.shape
    return Prepared(input_array(grey, spec.coord_channels), width, height, w / width, h / height)
