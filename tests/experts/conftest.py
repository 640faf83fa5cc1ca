"""Session fixtures: generated labelled X-rays and a tiny expert trained on them (CPU, seconds)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmoral_pipeline import tables
from mmoral_pipeline.config import SourcesFile, SourceSpec
from mmoral_pipeline.sources import read_source
from mmoral_pipeline.synth.generate import generate

# Big, regular structures a few dozen steps can learn; enough for the backends to have boxes to agree on.
TINY_CATEGORIES = ["tooth", "mandibular_canal", "maxillary_sinus"]


def tiny_settings(output_root: Path, **over):
    from mmoral_pipeline.experts.settings import ExpertTrainSettings

    fields = {
        "output_root": str(output_root),
        "image_size": 256,
        "width": 8,
        "fpn_channels": 32,
        "categories": TINY_CATEGORIES,
        "min_instances": 3,
        "max_steps": 60,
        "batch_size": 4,
        "learning_rate": 3e-3,
        "threads": 1,
        "cover_min_ap50": 0.0,
        "map50_floor": 0.0,
        "val_fraction": 0.2,
        "holdout_fraction": 0.1,
        "warmup_steps": 5,
    }
    fields.update(over)
    return ExpertTrainSettings(**fields)


@pytest.fixture(scope="session")
def synth_source(tmp_path_factory) -> tuple[SourcesFile, Path]:
    root = tmp_path_factory.mktemp("synth_labelled")
    generate(48, seed=3, out=root, fmt="coco", width=400, height=200)
    spec = SourceSpec(name="synth_lab", format="coco", root=str(root), images="images", annotations="annotations.json")
    return SourcesFile(sources=[spec], base_dir=str(root)), root


@pytest.fixture(scope="session")
def synth_frames(synth_source):
    sources, _ = synth_source
    batch = read_source(sources.sources[0], sources)
    images = tables.records_to_frame(batch.images, tables.RAW_IMAGES, partition="synth_lab")
    annotations = tables.records_to_frame(batch.annotations, tables.RAW_ANNOTATIONS, partition="synth_lab")
    return images, annotations


@pytest.fixture(scope="session")
def tiny_expert(synth_frames, tmp_path_factory):
    """(report, checkpoint folder) of a tiny expert trained for 60 steps."""
    from mmoral_pipeline.experts.train import train_expert

    images, annotations = synth_frames
    root = tmp_path_factory.mktemp("experts")
    report = train_expert(tiny_settings(root), images, annotations, log=lambda _m: None)
    return report, Path(report.checkpoint_dir)
