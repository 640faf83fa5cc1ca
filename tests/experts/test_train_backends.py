"""A real (tiny) training run: checkpoint layout, COCO metrics, coverage, and both backends agreeing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mmoral_pipeline.experts.base import predict_in_batches
from mmoral_pipeline.experts.load import load_expert
from mmoral_pipeline.experts.spec import read_manifest
from mmoral_pipeline.experts.train import METRICS_FILE, coverage_from_metrics


def test_training_writes_a_complete_checkpoint_and_points_latest_at_it(tiny_expert):
    report, ckpt = tiny_expert
    assert {p.name for p in ckpt.iterdir()} >= {"model.pt", "model.onnx", "expert.json", "metrics.json", }
    latest = ckpt.parent / "latest"
    assert latest.is_symlink() and latest.resolve() == ckpt.resolve()
    manifest = read_manifest(latest)
    assert manifest.version == report.version and len(manifest.version) == 12
    assert manifest.spec.classes == report.classes and all(
        c.startswith("tooth_") or c in ("mandibular_canal", "maxillary_sinus") for c in report.classes
    )
    assert manifest.trained_on["images"] == report.images and report.images["val"] > 0
    metrics = json.loads((ckpt / METRICS_FILE).read_text())
    assert metrics["metrics"]["evaluator"] == "pycocotools" and metrics["version"] == report.version
    assert report.loss_is_finite() and report.losses[-1] < report.losses[0]
    # The big anatomy is learnt within 60 steps; the tooth classes need more (their AP may be near 0).
    assert report.per_category["mandibular_canal"]["ap50"] > 0.2
    assert set(report.covers) == {"tooth", "mandibular_canal", "maxillary_sinus"}  # cover_min_ap50=0 in the fixture


def test_coverage_needs_a_validation_score_above_the_bar():
    covers, why = coverage_from_metrics(
        ["tooth", "caries", "implant"],
        {"tooth": {"ap50": 0.8}, "caries": {"ap50": 0.2}, "implant": {"ap50": None}},
        0.5,
    )
    assert covers == ["tooth"]
    assert why == {"caries": "validation AP50 0.200 < 0.5", "implant": "no validation box to score it on"}


def test_torchvision_and_onnxruntime_backends_agree(tiny_expert, synth_frames):
    _, ckpt = tiny_expert
    images, _ = synth_frames
    paths = images["path"].to_list()[:6]
    torch_run = predict_in_batches(load_expert(ckpt, backend="torchvision", device="cpu"), paths, batch_size=3)
    onnx_run = predict_in_batches(load_expert(ckpt, backend="onnxruntime", device="cpu"), paths, batch_size=3)
    assert torch_run.throughput.images == 6 and torch_run.throughput.images_per_s > 0
    assert onnx_run.throughput.backend == "onnxruntime" and torch_run.throughput.backend == "torchvision"
    compared = 0
    for a, b in zip(torch_run.detections, onnx_run.detections, strict=True):
        strong_a = [d for d in a if d.score > 0.3]
        strong_b = [d for d in b if d.score > 0.3]
        assert [d.label for d in strong_a] == [d.label for d in strong_b]
        for x, y in zip(strong_a, strong_b, strict=True):
            assert max(abs(p - q) for p, q in zip(x.box, y.box, strict=True)) < 0.5  # pixels
            assert abs(x.score - y.score) < 1e-3
            compared += 1
    assert compared > 0, "the tiny expert found nothing to compare"


def test_auto_backend_uses_onnx_when_only_the_export_is_there(tiny_expert, tmp_path):
    _, ckpt = tiny_expert
    only_onnx = tmp_path / "onnx_only"
    only_onnx.mkdir()
    for name in ("expert.json", "model.onnx"):
        os.link(ckpt / name, only_onnx / name)
    assert load_expert(only_onnx).backend == "onnxruntime"
    assert load_expert(ckpt).backend == "torchvision"
    with pytest.raises(FileNotFoundError, match="not an expert checkpoint"):
        load_expert(Path(tmp_path))


def test_annotate_keeps_confident_boxes_of_what_nobody_else_covers_per_image(tiny_expert, synth_frames):
    import polars as pl

    from mmoral_pipeline.experts.annotate import annotate_images

    _, ckpt = tiny_expert
    images, _ = synth_frames
    two = images.head(2).with_columns(pl.Series("covers", [["tooth"], []], dtype=pl.List(pl.String)))
    expert = load_expert(ckpt, backend="onnxruntime")
    run = annotate_images(two, [expert], [str(ckpt)], partition="p", keep_score=0.3)
    first, second = two["image_id"].to_list()
    assessed = dict(zip(run.coverage["image_id"].to_list(), run.coverage["assessed"].to_list(), strict=True))
    assert assessed == {
        first: ["mandibular_canal", "maxillary_sinus"],
        second: ["tooth", "mandibular_canal", "maxillary_sinus"],
    }
    assert run.coverage.filter(pl.col("image_id") == first)["deferred"].to_list() == [["tooth"]]
    boxes = run.annotations
    assert (
        boxes["score"].min() > 0.3 and boxes.filter(pl.col("image_id") == first)["category"].is_in(["tooth"]).sum() == 0
    )
    assert boxes.filter(pl.col("image_id") == second).height > 0
    [stats] = run.experts
    assert stats.boxes_kept == boxes.height and stats.not_assessed > 0 and stats.throughput.images == 2
