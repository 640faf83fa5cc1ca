"""LLaMA-Factory 0.9.5's own data pipeline converts our export after it was tarred and unpacked elsewhere, with the
machine that made it out of reach: every record kept, one vision block per sample, the image token count the
Qwen2-VL processor gives. Runs perf/llamafactory_loader.py (a separate virtual environment, cached under
~/.cache/mmoral; the first run installs it: several minutes)."""

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from mmoral_pipeline.dataset.assemble import assemble_samples
from mmoral_pipeline.dataset.exports import write_llamafactory

from .world import generated

REPO_ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_llamafactory_converts_a_moved_export(world, tmp_path: Path) -> None:
    frame, _ = assemble_samples(generated(world), world.tables["raw_images"], val_fraction=0.2, holdout_fraction=0.25)
    write_llamafactory(frame, tmp_path / "made" / "llamafactory")
    with tarfile.open(tmp_path / "export.tar", "w") as tar:
        tar.add(tmp_path / "made" / "llamafactory", arcname="llamafactory")
    with tarfile.open(tmp_path / "export.tar") as tar:
        tar.extractall(tmp_path / "cluster", filter="data")
    originals = Path(frame["image_path"][0]).parent
    away = originals.with_name(originals.name + "_away")
    originals.rename(away)  # absolute paths would now fail inside LLaMA-Factory (FileNotFoundError)
    try:
        proc = subprocess.run(
            [sys.executable, str(REPO_ROOT / "perf" / "llamafactory_loader.py"),
             "--export", str(tmp_path / "cluster" / "llamafactory"), "--json", str(tmp_path / "figures.json")],
            capture_output=True, text=True, timeout=1800, check=False,
        )
    finally:
        away.rename(originals)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    figures = json.loads((tmp_path / "figures.json").read_text())
    assert figures["llamafactory"] == "0.9.5" and figures["template"] == "qwen2_vl" and figures["problems"] == []
    for split, name in (("train", "mmoral_train"), ("val", "mmoral_val")):
        got = figures["datasets"][name]
        assert got["converted"] == got["records"] == frame.filter(frame["split"] == split).height > 0
        assert got["vision_blocks_per_sample"] == [1] and min(got["image_pad_tokens"]) > 0


def test_the_judge_fails_on_a_format_drift() -> None:
    """perf/llamafactory_loader.judge flags dropped samples, extra vision blocks and wrong image token counts."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("llamafactory_loader", REPO_ROOT / "perf" / "llamafactory_loader.py")
    loader = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loader)
    good = {"records": 3, "converted": 3, "images_per_record": [1], "vision_blocks_per_sample": [1],
            "image_pad_tokens": [18, 18, 24], "samples_with_labels": 3}
    assert loader.judge({"datasets": {"a": good}}, {"a": [18, 18, 24]}) == []
    for drift in (
        {"converted": 2},
        {"vision_blocks_per_sample": [2]},
        {"image_pad_tokens": [18, 18, 18]},
        {"samples_with_labels": 1},
    ):
        assert loader.judge({"datasets": {"a": {**good, **drift}}}, {"a": [18, 18, 24]}), drift
    assert loader.judge({"datasets": {}}, {"a": [1]}) == ["a: not converted"]
