"""The split rule: by image, deterministic, hold-out disjoint from train/val."""

from __future__ import annotations

import random

import pytest

from mmoral_pipeline.dataset.split import (
    assign_split,
    is_holdout,
    split_images,
    unit_hash,
)


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
    first = split_images(pairs)
    shuffled = pairs[:]
    random.Random(7).shuffle(shuffled)
    assert split_images(shuffled) == first
    # the hold-out is exactly the per-image rule, so evaluation can recompute it alone
    assert {i for i, s in first.items() if s == "bench"} == {i for i, _ in pairs if is_holdout(i)}
    assert set(first.values()) == {"train", "val", "bench"}


def test_small_source_still_gets_a_val_image() -> None:
    pairs = [(f"tiny{i}", "tiny") for i in range(4)]
    out = split_images(pairs, val_fraction=0.01, holdout_fraction=0.0)
    assert list(out.values()).count("val") == 1
    assert split_images(pairs, val_fraction=0.0, holdout_fraction=0.0) == {i: "train" for i, _ in pairs}


def test_split_is_the_same_in_another_process() -> None:
    """Two runs = two interpreters with different hash seeds; the split must not move."""
    import json
    import os
    import subprocess
    import sys

    pairs = [(f"img{i}", f"src{i % 4}") for i in range(200)]
    code = (
        "import json, sys; from mmoral_pipeline.dataset.split import split_images; "
        "print(json.dumps(split_images([tuple(p) for p in json.load(sys.stdin)], val_fraction=0.15, holdout_fraction=0.2)))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], input=json.dumps(pairs), capture_output=True, text=True, check=True, env=env)
    assert json.loads(out.stdout) == split_images(pairs, val_fraction=0.15, holdout_fraction=0.2)
