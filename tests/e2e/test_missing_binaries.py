"""A missing Chromium or PostgreSQL fails the suite in CI and only skips (with the reason) elsewhere."""

import pytest

from .conftest import require


def test_missing_binary_fails_in_ci(monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="chromium is not installed: apt-get install -y chromium"):
        require("chromium", False, "apt-get install -y chromium")


def test_missing_binary_skips_outside_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="initdb is not installed"):
        require("initdb", False, "apt-get install -y postgresql")


def test_present_binary_passes(monkeypatch):
    monkeypatch.setenv("CI", "true")
    require("chromium", True, "unused")
