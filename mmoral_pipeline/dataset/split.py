"""Deterministic split of images into train / val / bench (the benchmark hold-out).

Why by image: every sample of one X-ray must land in the same split, or the model would see the
benchmark picture during training. Why by hash: the decision for an image depends only on its id
(and the salt), so it is stable across runs, machines and the order rows arrive in, and adding a
new batch never moves an existing image between splits.

- `is_holdout(image_id)` is the single rule the evaluation side uses to pick benchmark images.
- `assign_split(image_id)` adds the train/val decision for the rest.
- `split_images(rows)` applies both to a whole table, grouped by source, and guarantees every
  source with at least `min_images_for_val` train candidates gives one image to val (the
  lowest-hash one), so small sources still have a validation signal.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Literal

Split = Literal["train", "val", "bench"]
SPLITS: tuple[str, ...] = ("train", "val", "bench")

DEFAULT_HOLDOUT_FRACTION = 0.1
DEFAULT_VAL_FRACTION = 0.1
HOLDOUT_SALT = "mmoral-bench-holdout-v1"
VAL_SALT = "mmoral-val-v1"
SPLIT_VERSION = "split-v1"  # bump when the rule changes; recorded in the dataset card


def unit_hash(key: str, salt: str) -> float:
    """Map (salt, key) to a uniform number in [0, 1) via sha256; platform- and run-independent."""
    digest = hashlib.sha256(f"{salt}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def is_holdout(
    image_id: str,
    fraction: float = DEFAULT_HOLDOUT_FRACTION,
    explicit: set[str] | frozenset[str] | None = None,
) -> bool:
    """True when the image belongs to the benchmark hold-out.

    `explicit`, when given, is the whole hold-out (the configured image list replaces the hash rule);
    otherwise an image is held out when its hash falls below `fraction`.
    """
    if explicit is not None:
        return image_id in explicit
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"holdout fraction must be in [0, 1], got {fraction}")
    return unit_hash(image_id, HOLDOUT_SALT) < fraction


def assign_split(
    image_id: str,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    holdout_fraction: float = DEFAULT_HOLDOUT_FRACTION,
    explicit_holdout: set[str] | frozenset[str] | None = None,
) -> Split:
    """Split of one image by its id alone: 'bench' (hold-out), else 'val' or 'train' by hash."""
    if is_holdout(image_id, holdout_fraction, explicit_holdout):
        return "bench"
    if not 0.0 <= val_fraction <= 1.0:
        raise ValueError(f"val fraction must be in [0, 1], got {val_fraction}")
    return "val" if unit_hash(image_id, VAL_SALT) < val_fraction else "train"


def split_images(
    images: Iterable[tuple[str, str]] | Mapping[str, str],
    val_fraction: float = DEFAULT_VAL_FRACTION,
    holdout_fraction: float = DEFAULT_HOLDOUT_FRACTION,
    explicit_holdout: set[str] | frozenset[str] | None = None,
    min_images_for_val: int = 3,
) -> dict[str, Split]:
    """(image_id, source) pairs -> {image_id: split}, grouped by source.

    The hold-out is exactly `is_holdout` (never adjusted, so evaluation can recompute it). Within a
    source, train/val follow `assign_split`; when a source with >= `min_images_for_val` non-held-out
    images got no val image (and val_fraction > 0), its lowest-val-hash image moves to val.
    """
    pairs = images.items() if isinstance(images, Mapping) else images
    by_source: dict[str, list[str]] = {}
    for image_id, source in pairs:
        by_source.setdefault(str(source), [])
        if image_id not in by_source[str(source)]:
            by_source[str(source)].append(image_id)
    out: dict[str, Split] = {}
    for source in sorted(by_source):
        candidates: list[str] = []
        for image_id in sorted(by_source[source]):
            split = assign_split(image_id, val_fraction, holdout_fraction, explicit_holdout)
            out[image_id] = split
            if split != "bench":
                candidates.append(image_id)
        has_val = any(out[i] == "val" for i in candidates)
        if val_fraction > 0 and not has_val and len(candidates) >= min_images_for_val:
            out[min(candidates, key=lambda i: unit_hash(i, VAL_SALT))] = "val"
    return out
