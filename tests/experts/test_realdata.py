"""The expert on the real public samples (../shared/realdata): it runs on every image of every source there
through the sources' own readers, and human labels keep their categories. Skipped when the folder is absent."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from mmoral_pipeline import tables
from mmoral_pipeline.config import load_sources
from mmoral_pipeline.experts.annotate import annotate_images
from mmoral_pipeline.experts.load import load_expert
from mmoral_pipeline.sources import read_source

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "realdata_sources.yaml"


def test_the_expert_labels_every_real_image_and_defers_to_human_labels(realdata, tiny_expert, mmoral_home):
    _, ckpt = tiny_expert
    sources = load_sources(EXAMPLE)
    for backend in ("torchvision", "onnxruntime"):
        expert = load_expert(ckpt, backend=backend, device="cpu")
        seen = 0
        for spec in sources.sources:
            batch = read_source(spec, sources)
            images = tables.records_to_frame(batch.images, tables.RAW_IMAGES, partition=spec.name)
            assert images.height > 0, spec.name
            run = annotate_images(images, [expert], [str(ckpt)], partition=spec.name)
            assert run.coverage.height == images.height  # one row per image, whatever it found
            for image_id, covers in zip(images["image_id"], images["covers"], strict=True):
                row = run.coverage.filter(pl.col("image_id") == image_id).row(0, named=True)
                assert set(row["assessed"]).isdisjoint(covers)  # human labels win for what they cover
                assert set(row["assessed"]) | set(row["deferred"]) == set(expert.manifest.covers)
            sizes = dict(zip(images["image_id"], zip(images["width"], images["height"], strict=True), strict=True))
            for image_id, box, category in run.annotations.select("image_id", "box", "category").iter_rows():
                w, h = sizes[image_id]
                assert 0 <= box[0] < box[2] <= w and 0 <= box[1] < box[3] <= h
                assert category not in set(images.filter(pl.col("image_id") == image_id)["covers"][0])
            seen += images.height
        assert seen == 12  # AKUDENTAL 5, xray-yolo 3, UFBA 2, DC1000 2
