from __future__ import annotations

from pathlib import Path

import pytest

from .world import World, build_world


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    """A fresh upstream world per test module (tests that tamper with it use their own)."""
    return build_world(Path(tmp_path_factory.mktemp("world")))
