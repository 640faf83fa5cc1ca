"""The split rule: by content group, deterministic, hold-out disjoint from train/val."""

from __future__ import annotations

import random

import pytest

from mmoral_pipeline.dataset.split import (
    assign_split,
    cross_split_links,
    is_holdout,
    split_images,
    unit_hash,
)
from mmoral_pipeline.domain.near_duplicates import hamming, near_duplicate_pairs


def test_unit_hash_is_stable_and_in_range() -> None:
    values = [unit_hash(f"img{i}", "salt") for i in range(200)]
    assert all(0.0 <= v < 1.0 for v in values)
    assert values == [unit_hash(f"img{i}", "salt") for i in range(200)]
    assert unit_hash("img1", "a") != unit_hash("img1", "b")


def test_holdout_fraction_is_roughly_respected() -> None:
    ids = [f"src__{i:05d}" for i in range(4000)]
    share = sum(is_holdout(i, 0.2) for i in ids) / len(ids)
    assert 0.17 < share < 0.23
    assert not any(is_holdout(i, 0.0) for i in ids)
    assert all(is_holdout(i, 1.0) for i in ids)


def test_explicit_holdout_replaces_hash_rule() -> None:
    explicit = {"a", "b"}
    assert is_holdout("a", 0.0, explicit)
    assert not is_holdout("c", 1.0, explicit)
    assert assign_split("b", explicit_holdout=explicit) == "bench"
    assert assign_split("c", explicit_holdout=explicit) in ("train", "val")


def test_bad_fraction_rejected() -> None:
    with pytest.raises(ValueError):
        is_holdout("x", 1.5)


def test_split_is_deterministic_and_order_independent() -> None:
    pairs = [(f"img{i}", f"src{i % 3}") for i in range(300)]
    first = split_images(pairs).split
    shuffled = pairs[:]
    random.Random(7).shuffle(shuffled)
    assert split_images(shuffled).split == first
    # the hold-out is exactly the per-image rule, so evaluation can recompute it alone
    assert {i for i, s in first.items() if s == "bench"} == {i for i, _ in pairs if is_holdout(i)}
    assert set(first.values()) == {"train", "val", "bench"}


def test_small_source_still_gets_a_val_image() -> None:
    pairs = [(f"tiny{i}", "tiny") for i in range(4)]
    out = split_images(pairs, val_fraction=0.01, holdout_fraction=0.0).split
    assert list(out.values()).count("val") == 1
    assert split_images(pairs, val_fraction=0.0, holdout_fraction=0.0).split == {i: "train" for i, _ in pairs}


def test_split_is_the_same_in_another_process() -> None:
    """Two runs = two interpreters with different hash seeds; the split must not move."""
    import json
    import os
    import subprocess
    import sys

    pairs = [(f"img{i}", f"src{i % 4}") for i in range(200)]
    code = (
        "import json, sys; from mmoral_pipeline.dataset.split import split_images; "
        "print(json.dumps(split_images([tuple(p) for p in json.load(sys.stdin)], val_fraction=0.15, "
        "holdout_fraction=0.2).split))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code], input=json.dumps(pairs), capture_output=True, text=True, check=True, env=env
    )
    assert json.loads(out.stdout) == split_images(pairs, val_fraction=0.15, holdout_fraction=0.2).split


def _hash(seed: int, flips: int = 0) -> str:
    """A random 256-bit hex hash, with its first `flips` bits flipped (a copy `flips` bits away)."""
    value = random.Random(seed).getrandbits(256) ^ ((1 << flips) - 1)
    return f"{value:064x}"


def test_copies_and_patients_never_straddle_splits() -> None:
    rows = [{"image_id": f"a{i:03d}", "source": "a", "sha256": f"s{i}", "phash": _hash(i)} for i in range(300)]
    # in source b: an exact copy, a near copy (10 bits off) and a far image (60 bits off) of each of 60 a-images
    rows += [{"image_id": f"b{i:03d}", "source": "b", "sha256": f"s{i}", "phash": None} for i in range(20)]
    rows += [{"image_id": f"c{i:03d}", "source": "b", "sha256": f"c{i}", "phash": _hash(i, 10)} for i in range(20, 40)]
    rows += [{"image_id": f"d{i:03d}", "source": "b", "sha256": f"d{i}", "phash": _hash(i, 60)} for i in range(40, 60)]
    # three X-rays of each of 30 patients
    rows += [
        {
            "image_id": f"p{i:03d}",
            "source": "p",
            "sha256": f"p{i}",
            "phash": _hash(1000 + i),
            "patient_key": f"P{i // 3}",
        }
        for i in range(90)
    ]
    result = split_images(rows, val_fraction=0.2, holdout_fraction=0.3)
    split = result.split
    for i in range(20):
        assert split[f"b{i:03d}"] == split[f"a{i:03d}"]
        assert split[f"c{i + 20:03d}"] == split[f"a{i + 20:03d}"]
    assert any(split[f"d{i:03d}"] != split[f"a{i:03d}"] for i in range(40, 60)), "60 bits apart are different X-rays"
    for p in range(30):
        assert len({split[f"p{3 * p + k:03d}"] for k in range(3)}) == 1
    assert result.links == {"sha256": 20, "phash": 20, "patient_key": 60}
    assert result.grouped_images == 40 + 40 + 90
    assert set(split.values()) == {"train", "val", "bench"}
    table = [{**r, "split": split[r["image_id"]]} for r in rows]
    assert cross_split_links(table) == []
    # a patient group is decided by its patient key: stable when another X-ray of the patient arrives
    more = split_images(
        [*rows, {"image_id": "p000a", "source": "p", "sha256": "new", "patient_key": "P0"}], 0.2, 0.3
    ).split
    assert more["p000a"] == more["p000"] == split["p000"]


def test_explicit_holdout_takes_the_whole_group() -> None:
    rows = [{"image_id": "x1", "source": "s", "sha256": "same"}, {"image_id": "x2", "source": "t", "sha256": "same"},
            {"image_id": "y", "source": "s", "sha256": "other"}]
    split = split_images(rows, 0.0, 0.0, explicit_holdout={"x2"}).split
    assert split == {"x1": "bench", "x2": "bench", "y": "train"}


def test_cross_split_links_find_each_kind_of_leak() -> None:
    rows = [
        {"image_id": "a", "split": "train", "sha256": "s1", "phash": _hash(1)},
        {"image_id": "b", "split": "bench", "sha256": "s1", "phash": _hash(2)},  # exact copy of a
        {"image_id": "c", "split": "val", "sha256": "s3", "phash": _hash(1, 8)},  # near copy of a
        {"image_id": "d", "split": "train", "sha256": "s4", "phash": _hash(4), "patient_key": "P"},
        {"image_id": "e", "split": "bench", "sha256": "s5", "phash": _hash(5), "patient_key": "P"},
        {"image_id": "f", "split": "train", "sha256": "s6", "phash": _hash(6)},
        {"image_id": "f", "split": "val", "sha256": "s6", "phash": _hash(6)},  # one image, two splits
    ]
    kinds = sorted(link.kind for link in cross_split_links(rows))
    assert kinds == ["patient_key", "phash", "same_image_id", "sha256"]
    assert cross_split_links(rows, max_distance=7) != cross_split_links(rows)  # 8 bits: only within 8


def test_near_duplicate_pairs_match_a_plain_loop() -> None:
    hashes = [_hash(i % 7, (i * 5) % 40) for i in range(60)] + [None, "short"]
    got = {(i, j) for i, j, _ in near_duplicate_pairs(hashes, 24)}
    want = {(i, j) for i in range(60) for j in range(i + 1, 60) if hamming(hashes[i], hashes[j]) <= 24}
    assert got == want and want
