"""Training data of an expert: images and their boxes from `raw_images` / `raw_annotations` frames.

Images are decoded once at the network size and kept as 8-bit grey; the x / y channels and the
augmentation are added per step. Splits follow the dataset's rule (`dataset/split.py`): the expert
trains on 'train' images, is scored on 'val' and never sees the benchmark hold-out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from mmoral_pipeline.dataset.split import split_images
from mmoral_pipeline.domain import fdi as fdi_rules
from mmoral_pipeline.experts.classes import class_name
from mmoral_pipeline.experts.imageio import input_array, load_grey, model_image_paths


@dataclass
class Sample:
    image_id: str
    grey: np.ndarray  # (h, w) uint8 at the network size
    boxes: np.ndarray  # (n, 4) float32, network pixels
    classes: list[str]  # class per box
    width: int  # original size
    height: int

    @property
    def scale(self) -> tuple[float, float]:
        h, w = self.grey.shape
        return w / self.width, h / self.height


def split_frame(images: pl.DataFrame, val_fraction: float, holdout_fraction: float) -> dict[str, str]:
    """image_id -> 'train' | 'val' | 'bench', by the dataset's rule (content groups: a copy of a held-out
    X-ray, or another X-ray of its patient, is held out too)."""
    columns = [c for c in ("image_id", "source", "sha256", "phash", "patient_key") if c in images.columns]
    rows = images.select(columns).to_dicts()
    return split_images(rows, val_fraction=val_fraction, holdout_fraction=holdout_fraction).split


def fully_labelled(images: pl.DataFrame, categories: Sequence[str]) -> pl.DataFrame:
    """The images whose label coverage (`covers`; null or absent: everything) includes every one of
    `categories`: on any other image an unlabelled tooth or caries would be taught as background."""
    if "covers" not in images.columns or not categories:
        return images
    need = set(categories)
    keep = [c is None or need <= set(c) for c in images["covers"].to_list()]
    return images.filter(pl.Series(keep, dtype=pl.Boolean))


def labels_of(annotations: pl.DataFrame) -> list[tuple[str, int | None]]:
    return list(zip(annotations["category"].to_list(), annotations["fdi"].to_list(), strict=True))


def load_samples(
    images: pl.DataFrame, annotations: pl.DataFrame, classes: Sequence[str], image_size: int
) -> list[Sample]:
    """One `Sample` per image row, with the boxes of the given classes (others are not learnt)."""
    wanted = set(classes)
    by_image: dict[str, list[tuple[str, list[float]]]] = {}
    for image_id, category, fdi, box in zip(
        annotations["image_id"].to_list(), annotations["category"].to_list(), annotations["fdi"].to_list(),
        annotations["box"].to_list(), strict=True,
    ):
        name = class_name(category, fdi)
        if name in wanted:
            by_image.setdefault(image_id, []).append((name, box))
    samples = []
    for image_id, path in zip(images["image_id"].to_list(), model_image_paths(images), strict=True):
        grey, width, height = load_grey(path, image_size)
        h, w = grey.shape
        sx, sy = w / width, h / height
        found = by_image.get(image_id, [])
        boxes = np.array([[b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy] for _, b in found], dtype=np.float32).reshape(
            -1, 4
        )
        boxes[:, 2] = np.maximum(boxes[:, 2], boxes[:, 0] + 1.0)  # the detector needs positive sizes: >= 1 px
        boxes[:, 3] = np.maximum(boxes[:, 3], boxes[:, 1] + 1.0)
        samples.append(
            Sample(image_id, (grey * 255.0 + 0.5).astype(np.uint8), boxes, [n for n, _ in found], width, height)
        )
    return samples


def mirrored_class(name: str) -> str:
    """The class a left-right flip turns a class into: teeth change side, other categories stay."""
    from mmoral_pipeline.experts.classes import TOOTH_PREFIX

    if not name.startswith(TOOTH_PREFIX):
        return name
    return f"{TOOTH_PREFIX}{fdi_rules.mirrored(int(name[len(TOOTH_PREFIX):]))}"


def training_arrays(
    sample: Sample, class_index: dict[str, int], *, coord_channels: bool, rng: np.random.Generator | None = None,
    hflip: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(input (3, h, w) float32, boxes (n, 4), labels (n,)) with optional augmentation.

    Augmentation (when `rng` is given): brightness / contrast / gamma jitter, and with `hflip` a
    left-right mirror half of the time, with teeth renumbered to the other side.
    """
    grey = sample.grey.astype(np.float32) / 255.0
    boxes = sample.boxes.copy()
    names = list(sample.classes)
    if rng is not None:
        gamma = float(np.exp(rng.uniform(-0.25, 0.25)))
        grey = np.clip((grey ** gamma) * rng.uniform(0.85, 1.15) + rng.uniform(-0.06, 0.06), 0.0, 1.0)
        if hflip and rng.random() < 0.5:
            w = grey.shape[1]
            grey = grey[:, ::-1].copy()
            boxes = boxes[:, [2, 1, 0, 3]] if len(boxes) else boxes
            if len(boxes):
                boxes[:, 0] = w - boxes[:, 0]
                boxes[:, 2] = w - boxes[:, 2]
            names = [mirrored_class(n) for n in names]
    keep = [i for i, n in enumerate(names) if n in class_index]
    labels = np.array([class_index[names[i]] for i in keep], dtype=np.int64)
    return input_array(grey.astype(np.float32), coord_channels), boxes[keep].reshape(-1, 4), labels
