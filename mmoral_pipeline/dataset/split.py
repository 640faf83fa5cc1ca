"""Deterministic split of images into train / val / bench (the benchmark hold-out), by content.

Why by content: every sample of one X-ray must land in the same split, or the model would see the
benchmark picture during training, and one X-ray can arrive twice (the same file in two sources, a
re-encoded or resized copy, another X-ray of the same patient). So images are first grouped, with a
union-find (`domain.near_duplicates`), by exact sha256, by a near-duplicate perceptual hash and by a
patient key where a source declares one; a group is never split.

Why by hash: the decision for a group depends only on its key (its smallest patient key, else its
smallest image id) and the salt, so it is stable across runs, machines and the order rows arrive
in, and adding a batch moves an existing image only when a copy of it (or of its patient) arrives.

- `is_holdout(key)` / `assign_split(key)`: the per-key rule (a lone image's key is its id).
- `split_images(rows)` groups the images, applies the rule per group, and guarantees every source
  with at least `min_images_for_val` train candidates gives one group to val (the lowest-hash one),
  so small sources still have a validation signal.
- `cross_split_links(rows)`: pairs of images in different splits that are the same X-ray or one
  patient (must be empty; the `split_disjoint` check compares with the measured threshold).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from mmoral_pipeline.domain.near_duplicates import NEAR_DUPLICATE_MAX_DISTANCE, content_groups, content_links

Split = Literal["train", "val", "bench"]
SPLITS: tuple[str, ...] = ("train", "val", "bench")

DEFAULT_HOLDOUT_FRACTION = 0.1
DEFAULT_VAL_FRACTION = 0.1
HOLDOUT_SALT = "mmoral-bench-holdout-v1"
VAL_SALT = "mmoral-val-v1"
SPLIT_VERSION = "split-v2"  # bump when the rule changes; recorded in the dataset card (v2: groups by content)


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


@dataclass
class SplitResult:
    """The split of every image, the group it was decided with, and what linked the groups."""

    split: dict[str, Split] = field(default_factory=dict)  # image_id -> split
    group: dict[str, str] = field(default_factory=dict)  # image_id -> group key (the decision key)
    links: dict[str, int] = field(default_factory=dict)  # link kind -> pairs (sha256, phash, patient_key)
    groups: int = 0
    grouped_images: int = 0  # images in a group of two or more

    def as_dict(self) -> dict[str, Any]:
        return {"groups": self.groups, "grouped_images": self.grouped_images, "links": dict(self.links)}


def _rows(images: Iterable[Any]) -> list[dict[str, Any]]:
    """(image_id, source) pairs, an {image_id: source} map, or rows with image_id, source and the
    optional content columns sha256, phash, patient_key -> one dict per distinct image id."""
    if isinstance(images, Mapping):
        images = images.items()
    out: dict[str, dict[str, Any]] = {}
    for r in images:
        row = dict(r) if isinstance(r, Mapping) else {"image_id": r[0], "source": r[1]}
        out.setdefault(str(row["image_id"]), row)
    return [out[k] for k in sorted(out)]


def split_images(
    images: Iterable[Any],
    val_fraction: float = DEFAULT_VAL_FRACTION,
    holdout_fraction: float = DEFAULT_HOLDOUT_FRACTION,
    explicit_holdout: set[str] | frozenset[str] | None = None,
    min_images_for_val: int = 3,
    near_duplicate_max_distance: int = NEAR_DUPLICATE_MAX_DISTANCE,
) -> SplitResult:
    """Images -> SplitResult: grouped by content (see module doc), one decision per group.

    A group is bench when any of its images is in `explicit_holdout` (which, when given, replaces the
    hash rule), else when `is_holdout(group key)`; the rest are val or train by `assign_split`. Within a
    source, when a source with >= `min_images_for_val` non-held-out images got no val image (and
    val_fraction > 0), the lowest-val-hash group among its groups moves to val (whole groups only).
    """
    rows = _rows(images)
    n = len(rows)
    links = content_links(
        [r.get("sha256") for r in rows], [r.get("phash") for r in rows], [r.get("patient_key") for r in rows],
        max_distance=near_duplicate_max_distance,
    )
    roots = content_groups(n, links)
    members: dict[int, list[int]] = {}
    for i, root in enumerate(roots):
        members.setdefault(root, []).append(i)
    result = SplitResult(groups=len(members), grouped_images=sum(len(m) for m in members.values() if len(m) > 1))
    for link in links:
        result.links[link.kind] = result.links.get(link.kind, 0) + 1
    decision: dict[int, Split] = {}
    key_of: dict[int, str] = {}
    for root, idx in members.items():
        patients = sorted(str(rows[i]["patient_key"]) for i in idx if rows[i].get("patient_key"))
        key = f"patient:{patients[0]}" if patients else min(str(rows[i]["image_id"]) for i in idx)
        key_of[root] = key
        if explicit_holdout is not None and any(str(rows[i]["image_id"]) in explicit_holdout for i in idx):
            decision[root] = "bench"
        else:
            # an explicit hold-out replaces the hash rule: groups it does not name are never bench
            decision[root] = assign_split(
                key, val_fraction, holdout_fraction, None if explicit_holdout is None else frozenset()
            )
    by_source: dict[str, set[int]] = {}
    images_left: dict[str, int] = {}  # per source: images not held out
    for i, row in enumerate(rows):
        source = str(row.get("source"))
        by_source.setdefault(source, set()).add(roots[i])
        images_left[source] = images_left.get(source, 0) + (decision[roots[i]] != "bench")
    for source in sorted(by_source):
        candidates = sorted(g for g in by_source[source] if decision[g] != "bench")
        n_images = images_left[source]
        has_val = any(decision[g] == "val" for g in candidates)
        if val_fraction > 0 and not has_val and n_images >= min_images_for_val:
            decision[min(candidates, key=lambda g: (unit_hash(key_of[g], VAL_SALT), key_of[g]))] = "val"
    for i, row in enumerate(rows):
        result.split[str(row["image_id"])] = decision[roots[i]]
        result.group[str(row["image_id"])] = key_of[roots[i]]
    return result


@dataclass(frozen=True)
class CrossSplitLink:
    """Two images in different splits that are one X-ray or one patient (a leak)."""

    image_a: str
    split_a: str
    image_b: str
    split_b: str
    kind: str  # same_image_id | sha256 | phash | patient_key
    distance: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"images": [self.image_a, self.image_b], "splits": [self.split_a, self.split_b], "kind": self.kind,
                **({"phash_distance": self.distance} if self.kind == "phash" else {})}


def cross_split_links(
    rows: Sequence[Mapping[str, Any]], max_distance: int = NEAR_DUPLICATE_MAX_DISTANCE
) -> list[CrossSplitLink]:
    """Pairs of (image, split) rows in different splits that share an image id, a sha256, a patient key
    or a perceptual hash within `max_distance` bits. Direct pairs only: a group that straddles splits
    always has one such pair, so this is empty exactly when no group straddles."""
    distinct = sorted({(str(r["image_id"]), str(r["split"])): r for r in rows}.items())
    table = [r for _, r in distinct]
    out: list[CrossSplitLink] = []
    by_id: dict[str, str] = {}
    for (image_id, split), _ in distinct:
        if image_id in by_id and by_id[image_id] != split:
            out.append(CrossSplitLink(image_id, by_id[image_id], image_id, split, "same_image_id"))
        by_id.setdefault(image_id, split)
    links = content_links(
        [r.get("sha256") for r in table], [r.get("phash") for r in table], [r.get("patient_key") for r in table],
        max_distance=max_distance,
    )
    for link in links:
        a, b = table[link.a], table[link.b]
        if a["split"] != b["split"] and a["image_id"] != b["image_id"]:
            out.append(
                CrossSplitLink(
                    str(a["image_id"]), str(a["split"]), str(b["image_id"]), str(b["split"]), link.kind, link.distance
                )
            )
    return out
