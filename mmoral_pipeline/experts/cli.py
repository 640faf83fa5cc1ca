"""`mmoral expert evaluate | compare`: score an expert on labelled sources; compare pseudo-labelled reports with
true ones.

- `evaluate CHECKPOINT [--sources FILE] [--source NAME ...]`: run the expert over every image of the
  sources (through their readers, so embedded images work too) and score it against their labels:
  boxes kept per category, COCO AP50 per category it predicts and the source labels, and tooth recall
  (a true tooth found at IoU >= 0.5 with any number / with the right number).
- `compare --source NAME --truth-format coco --truth-root DIR`: the pipeline's documents of a
  pseudo-labelled source against the true labels of the same images (withheld from the pipeline),
  statement by statement (`experts/compare.py`); `--sheet OUT.png` draws true and predicted boxes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def add_expert_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="expert_command", required=True)
    p = sub.add_parser("evaluate", help="run an expert over labelled sources and score it against their labels")
    p.add_argument("checkpoint", help="expert checkpoint folder (expert.json + model.pt / model.onnx)")
    p.add_argument("--sources", default=None, help="sources YAML (default: $MMORAL_SOURCES or assets/sources.yaml)")
    p.add_argument("--source", action="append", default=[], help="only this source (repeatable)")
    p.add_argument("--backend", default="auto", choices=["auto", "torchvision", "onnxruntime"])
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--json", default=None, metavar="OUT.json", help="also write the figures as JSON")
    p = sub.add_parser("compare", help="pseudo-labelled reports against the same images' true labels")
    p.add_argument("--source", required=True, help="the pseudo-labelled source (as named in the sources file)")
    p.add_argument("--truth-root", required=True, help="folder of the true labels")
    p.add_argument("--truth-format", default="coco", help="format of the true labels (any reader's format)")
    p.add_argument("--truth-images", default="images")
    p.add_argument("--truth-annotations", default=None)
    p.add_argument("--home", default=None, help="MMORAL_HOME to read the pipeline's tables from")
    p.add_argument("--sheet", default=None, metavar="OUT.png", help="also draw true and predicted boxes")
    p.add_argument("--sheet-images", type=int, default=4)
    p.add_argument("--json", default=None, metavar="OUT.json")


def run_expert(args: argparse.Namespace) -> int:
    if args.expert_command == "evaluate":
        return _evaluate(args)
    return _compare(args)


def evaluate_source(expert: Any, images, annotations, batch_size: int = 8) -> dict[str, Any]:
    """Figures of one expert on one labelled source (raw_images / raw_annotations frames)."""
    from collections import Counter

    from mmoral_pipeline.domain.geometry import iou
    from mmoral_pipeline.experts.base import predict_in_batches
    from mmoral_pipeline.experts.classes import class_name
    from mmoral_pipeline.experts.evaluate import coco_metrics, per_category
    from mmoral_pipeline.experts.imageio import model_image_paths
    from mmoral_pipeline.experts.settings import KEEP_SCORE

    run = predict_in_batches(expert, model_image_paths(images), batch_size)
    ids = images["image_id"].to_list()
    predictions = dict(zip(ids, run.detections, strict=True))
    covers = set(expert.manifest.covers)
    confident = [d for found in run.detections for d in found if d.score > KEEP_SCORE]
    kept = Counter(d.category for d in confident if d.category in covers)
    not_covered = Counter(d.category for d in confident if d.category not in covers)
    classes = expert.manifest.spec.classes
    truth: dict[str, list] = {}
    labelled: set[str] = set()
    for image_id, category, fdi, box in annotations.select("image_id", "category", "fdi", "box").iter_rows():
        labelled.add(category)
        name = class_name(category, fdi)
        if name is not None:
            truth.setdefault(image_id, []).append((name, box))
    scored = [c for c in classes if class_name_category(c) in labelled]
    metrics = coco_metrics(scored, [(i, w, h) for i, w, h in images.select("image_id", "width", "height").iter_rows()],
                           truth, predictions) if scored else {"map50": None, "per_class": {}}
    teeth_true = teeth_any = teeth_right = 0
    for image_id in ids:
        true_teeth = [(n, b) for n, b in truth.get(image_id, []) if n.startswith("tooth_")]
        found = [d for d in predictions[image_id] if d.category == "tooth" and d.score > KEEP_SCORE]
        for name, box in true_teeth:
            teeth_true += 1
            hits = [d for d in found if iou(d.box, box) >= 0.5]
            teeth_any += bool(hits)
            teeth_right += any(d.label == name for d in hits)
    return {
        "images": len(ids),
        "images_per_s": round(run.throughput.images_per_s, 2),
        "backend": run.throughput.backend,
        "device": run.throughput.device,
        "boxes_kept": dict(sorted(kept.items())),  # what the pipeline keeps: score > 0.3, a category it covers
        "boxes_not_covered": dict(sorted(not_covered.items())),  # confident, but of a class it does not assess
        "labelled_categories": sorted(labelled),
        "ap50_per_category": {k: v["ap50"] for k, v in per_category(metrics).items()} if scored else {},
        "true_teeth": teeth_true,
        "tooth_recall_any_number": round(teeth_any / teeth_true, 3) if teeth_true else None,
        "tooth_recall_right_number": round(teeth_right / teeth_true, 3) if teeth_true else None,
    }


def class_name_category(name: str) -> str:
    from mmoral_pipeline.experts.classes import parse_class

    return parse_class(name).category.value


def _evaluate(args: argparse.Namespace) -> int:
    from mmoral_pipeline import tables
    from mmoral_pipeline.config import load_sources
    from mmoral_pipeline.experts.load import load_expert
    from mmoral_pipeline.sources import read_source

    expert = load_expert(args.checkpoint, backend=args.backend, device=args.device)
    sources = load_sources(args.sources)
    figures: dict[str, Any] = {"expert": expert.manifest.name, "version": expert.manifest.version,
                               "covers": expert.manifest.covers, "sources": {}}
    for spec in sources.sources:
        if args.source and spec.name not in args.source:
            continue
        batch = read_source(spec, sources)
        images = tables.records_to_frame(batch.images, tables.RAW_IMAGES, partition=spec.name)
        if images.height == 0:
            continue
        annotations = tables.records_to_frame(batch.annotations, tables.RAW_ANNOTATIONS, partition=spec.name)
        figures["sources"][spec.name] = evaluate_source(expert, images, annotations, args.batch_size)
    print(evaluation_markdown(figures))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


def evaluation_markdown(figures: dict[str, Any]) -> str:
    def f(v: Any) -> str:
        return "–" if v is None else (f"{v:.2f}" if isinstance(v, float) else str(v))

    lines = [
        f"expert {figures['expert']}@{figures['version']} (covers {', '.join(figures['covers'])})",
        "",
        (
            "| source | images | images/s | boxes kept (score > 0.3, covered) | other classes > 0.3 (not kept) | AP50 "
            "where labelled "
            "| teeth found (any number) | right number |"
        ),
        "|---|---:|---:|---|---|---|---:|---:|",
    ]
    for name, s in figures["sources"].items():
        kept = ", ".join(f"{k} {v}" for k, v in s["boxes_kept"].items()) or "none"
        other = ", ".join(f"{k} {v}" for k, v in s["boxes_not_covered"].items()) or "none"
        ap = ", ".join(f"{k} {f(v)}" for k, v in s["ap50_per_category"].items()) or "–"
        lines.append(f"| {name} | {s['images']} | {f(s['images_per_s'])} | {kept} | {other} | {ap} | "
                     f"{f(s['tooth_recall_any_number'])} | {f(s['tooth_recall_right_number'])} |")
    return "\n".join(lines)


def _compare(args: argparse.Namespace) -> int:
    import polars as pl

    from mmoral_pipeline import tables
    from mmoral_pipeline.attributes.frames import documents_from_frame
    from mmoral_pipeline.attributes.stage import build_attribute_tables
    from mmoral_pipeline.config import SourcesFile, SourceSpec
    from mmoral_pipeline.defs.io_manager import read_table, registered_partitions
    from mmoral_pipeline.experts.compare import compare_documents, comparison_markdown, side_by_side_sheet
    from mmoral_pipeline.materialize import ensure_dagster_home
    from mmoral_pipeline.sources import read_source
    from mmoral_pipeline.viz import to_png

    ensure_dagster_home()
    batches = registered_partitions()  # only the batches still registered, as every fan-in reads them
    attrs = read_table("image_attributes", base_dir=args.home, partitions=batches)
    attrs = attrs.filter(pl.col("source") == args.source)
    if attrs.height == 0:
        print(f"no image_attributes of source {args.source!r}: materialise it first", file=sys.stderr)
        return 2
    truth_spec = SourceSpec(name=args.source, format=args.truth_format, root=str(Path(args.truth_root).resolve()),
                            images=args.truth_images, annotations=args.truth_annotations)
    batch = read_source(truth_spec, SourcesFile(sources=[truth_spec], base_dir="/"))
    images = tables.records_to_frame(batch.images, tables.RAW_IMAGES, partition=args.source)
    annotations = tables.records_to_frame(batch.annotations, tables.RAW_ANNOTATIONS, partition=args.source)
    truth_docs = documents_from_frame(build_attribute_tables(images, annotations).image_attributes)
    result = compare_documents(documents_from_frame(attrs), truth_docs)
    print(comparison_markdown(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result.as_dict(), indent=2) + "\n")
    if args.sheet:
        expert = read_table("expert_annotations", base_dir=args.home, partitions=batches).filter(
            pl.col("source") == args.source
        )
        paths = dict(zip(attrs["image_id"].to_list(), attrs["path"].to_list(), strict=True))
        rows = []
        for image_id in sorted(paths)[: args.sheet_images]:
            true_boxes = [
                (c, str(f) if c == "tooth" and f else "", b)
                for c, f, b in annotations.filter(pl.col("image_id") == image_id)
                .select("category", "fdi", "box")
                .iter_rows()
            ]
            pred_boxes = [(c, str(t) if c == "tooth" and t else "", b) for c, t, b in
                          expert.filter(pl.col("image_id") == image_id).select("category", "tooth", "box").iter_rows()]
            rows.append((paths[image_id], true_boxes, pred_boxes))
        Path(args.sheet).write_bytes(to_png(side_by_side_sheet(rows)))
        print(f"\nwrote {args.sheet}")
    return 0
