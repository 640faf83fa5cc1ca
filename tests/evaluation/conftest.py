from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def realdata_dir() -> Path:
    return Path(os.environ.get("MMORAL_REALDATA") or REPO.parent / "shared" / "realdata")


@pytest.fixture(scope="session")
def closed_sample_tsv() -> Path:
    p = realdata_dir() / "mmoral_opg_bench" / "closed_ended_sample.tsv"
    if not p.exists():
        pytest.skip(f"real MMOral-OPG-Bench sample not found at {p} (set MMORAL_REALDATA)")
    return p


@pytest.fixture(scope="session")
def official_questions_json() -> Path:
    p = realdata_dir() / "mmoral_opg_bench" / "closed_ended_questions_no_images.json"
    if not p.exists():
        pytest.skip(f"official question list not found at {p} (set MMORAL_REALDATA)")
    return p
