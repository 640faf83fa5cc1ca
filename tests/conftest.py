"""Fixtures shared by every test folder (keep them generic)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def realdata_path() -> Path:
    """The shared real-data samples: $MMORAL_REALDATA, else <repo>/../shared/realdata."""
    return Path(os.environ.get("MMORAL_REALDATA") or REPO_ROOT.parent / "shared" / "realdata")


@pytest.fixture(scope="session")
def realdata() -> Path:
    """Path of the real-data samples (read-only); skips when the folder is absent."""
    p = realdata_path()
    if not p.is_dir():
        pytest.skip(f"real-data samples not found at {p} (set MMORAL_REALDATA to the shared/realdata folder)")
    return p


@pytest.fixture()
def mmoral_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private MMORAL_HOME for the test (outputs, extracted images)."""
    home = tmp_path / "mmoral_home"
    monkeypatch.setenv("MMORAL_HOME", str(home))
    return home


@pytest.fixture()
def write_image() -> Callable[..., Path]:
    """Factory: write a small image file (default 64x48 grey PNG) and return its path."""
    from PIL import Image

    def _write(path: Path, size: tuple[int, int] = (64, 48), mode: str = "L", color: int | tuple = 128, fmt: str | None = None) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new(mode, size, color).save(path, format=fmt)
        return path

    return _write
