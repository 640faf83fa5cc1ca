"""What counts as "the same X-ray": exact copies, near-duplicate copies and one patient's images.

The split must never put two copies of one X-ray (or two X-rays of one patient) in different
splits. Exact copies share a sha256. Re-encoded or resized copies do not, so every image also
gets a perceptual hash (`imagehash.phash` with a 16x16 DCT, 256 bits) at ingest; two images whose
hashes differ in at most `NEAR_DUPLICATE_MAX_DISTANCE` bits are copies.

The threshold is measured (perf/near_duplicates.py, figures in the README): on 16 real OPGs and
40 generated ones, re-encoding (JPEG quality 20-95) and resizing (to 5-50%) move a hash by at most
8 bits, while the closest two distinct X-rays are 44 bits apart (distinct real ones: 70). 24 sits
three times above the worst copy and well below the closest distinct pair. Crops and rotations
are not copies by this measure (a 2% border crop moves the hash by up to 58 bits).

`content_groups` is the union-find over all three relations; `cross_group_links` lists the pairs
that link two different labels (splits), which the `split_disjoint` check turns into a failure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

HASH_SIZE = 16  # 16x16 DCT low frequencies -> 256-bit hash (64 hex characters)
NEAR_DUPLICATE_MAX_DISTANCE = 24  # bits; measured in perf/near_duplicates.py


def perceptual_hash(image: Any) -> str:
    """The hex phash of a decoded PIL image; 16-bit and float images are scaled to 8 bits first
    (Pillow's own conversion would clip them)."""
    import imagehash  # scipy behind it: imported where images are read, not with the definitions
    from PIL import Image

    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        arr = np.asarray(image, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scaled = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
        image = Image.fromarray(scaled.astype(np.uint8), mode="L")
    return str(imagehash.phash(image, hash_size=HASH_SIZE))


def _bits(hashes: Sequence[str]) -> np.ndarray:
    """(n, 4) uint64 words of 256-bit hex hashes."""
    words = [[int(h[i : i + 16], 16) for i in range(0, 64, 16)] for h in hashes]
    return np.array(words, dtype=np.uint64).reshape(len(hashes), 4)


def hamming(a: str, b: str) -> int:
    """Bits in which two hex hashes differ."""
    return (int(a, 16) ^ int(b, 16)).bit_count()


def near_duplicate_pairs(
    hashes: Sequence[str | None], max_distance: int = NEAR_DUPLICATE_MAX_DISTANCE
) -> list[tuple[int, int, int]]:
    """(i, j, distance) for every pair i < j whose hashes differ in at most `max_distance` bits.

    All pairs, compared in numpy blocks (popcount of XOR): about n^2/2 comparisons, a few seconds
    for 20,000 images (perf/near_duplicates.py prints the figures). Missing hashes match nothing.
    """
    index = [i for i, h in enumerate(hashes) if h and len(h) == 64]
    if len(index) < 2 or max_distance < 0:
        return []
    bits = _bits([hashes[i] for i in index])  # type: ignore[misc]
    out: list[tuple[int, int, int]] = []
    block = max(16, 2_000_000 // len(index))  # rows per block: the XOR array stays under ~64 MB
    for start in range(0, len(index), block):
        rows = bits[start : start + block]
        dist = np.bitwise_count(rows[:, None, :] ^ bits[None, start:, :]).sum(axis=2)
        ii, jj = np.nonzero(dist <= max_distance)
        for a, b in zip(ii.tolist(), jj.tolist(), strict=True):
            j = start + b
            i = start + a
            if j > i:
                out.append((index[i], index[j], int(dist[a, b])))
    return out


@dataclass(frozen=True)
class Link:
    """Why two images belong together: 'sha256', 'phash' (with its distance) or 'patient_key'."""

    a: int
    b: int
    kind: str
    distance: int = 0


def content_links(
    sha256: Sequence[str | None],
    phash: Sequence[str | None],
    patient_key: Sequence[str | None],
    max_distance: int = NEAR_DUPLICATE_MAX_DISTANCE,
) -> list[Link]:
    """Every pair of rows that are the same X-ray (sha256, near-duplicate phash) or one patient."""
    links: list[Link] = []
    for kind, values in (("sha256", sha256), ("patient_key", patient_key)):
        first: dict[str, int] = {}
        for i, v in enumerate(values):
            if v is None or v == "":
                continue
            if v in first:
                links.append(Link(first[v], i, kind))
            else:
                first[v] = i
    links += [Link(i, j, "phash", d) for i, j, d in near_duplicate_pairs(phash, max_distance)]
    return links


def content_groups(n: int, links: Sequence[Link]) -> list[int]:
    """Union-find: the group (its smallest row index) of each of `n` rows, given the links."""
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for link in links:
        ra, rb = find(link.a), find(link.b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return [find(i) for i in range(n)]
