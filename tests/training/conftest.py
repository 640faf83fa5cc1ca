"""Shared fixtures: a small made-up TRL export and a tiny checkpoint built from its texts (session-scoped)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmoral_pipeline.training.data import read_jsonl
from mmoral_pipeline.training.tiny import build_tiny_checkpoint, corpus_texts
from mmoral_pipeline.training.toy_data import make_toy_export


@pytest.fixture(scope="session")
def toy_export(tmp_path_factory) -> dict[str, str]:
    return make_toy_export(tmp_path_factory.mktemp("toy_export"), n_images=6, size=(224, 112))


@pytest.fixture(scope="session")
def tiny_checkpoint(toy_export, tmp_path_factory) -> Path:
    rows = read_jsonl(toy_export["train"])
    return build_tiny_checkpoint(
        corpus_texts(rows), tmp_path_factory.mktemp("tiny") / "ckpt", vocab_size=400, hidden_size=64, layers=2
    )
