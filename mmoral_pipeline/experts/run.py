"""Expert trainer entry point:
`python -m mmoral_pipeline.experts.run --images X.parquet --annotations Y.parquet [--set k=v]`.

Needs `dagster-pipes`, never `dagster`. Launched by the `expert_model` asset through Dagster Pipes: it
reads its settings and input tables from the Pipes extra `expert_train`, trains (`train.train_expert`)
and reports the materialisation (checkpoint, version, COCO metrics, throughput) and the check
`expert_map_floor` back. Run by hand (no Pipes), it prints the report as JSON.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from typing import Any

from mmoral_pipeline.training.run import _parse_value  # the one `--set key=value` reader

CHECK_NAME = "expert_map_floor"
EXTRA_KEY = "expert_train"


def per_class_markdown(per_class: dict[str, dict[str, Any]]) -> str:
    lines = ["| class | validation boxes | AP50 | AP |", "|---|---:|---:|---:|"]
    for name, row in per_class.items():
        ap50 = "–" if row["ap50"] is None else f"{row['ap50']:.3f}"
        ap = "–" if row["ap"] is None else f"{row['ap']:.3f}"
        lines.append(f"| {name} | {row['gt']} | {ap50} | {ap} |")
    return "\n".join(lines)


def _thin(steps: list[int], losses: list[float], max_points: int = 200) -> dict[str, list]:
    stride = max(1, -(-len(losses) // max_points))
    return {"steps": steps[::stride], "loss": losses[::stride]}


def materialization_metadata(report) -> dict[str, Any]:
    """Pipes metadata: small values only (a large Pipes message can be half-read and lost)."""
    return {
        "checkpoint_path": {"raw_value": report.checkpoint_dir, "type": "path"},
        "latest_path": {"raw_value": report.latest_dir, "type": "path"},
        "expert": report.name,
        "expert_version": report.version,
        "arch": report.arch,
        "device": report.device,
        "params": {"raw_value": report.params, "type": "int"},
        "classes": {"raw_value": len(report.classes), "type": "int"},
        "covers": {"raw_value": report.covers, "type": "json"},
        "not_covered": {"raw_value": report.not_covered, "type": "json"},
        "sources": {"raw_value": report.sources, "type": "json"},
        "images_per_split": {"raw_value": report.images, "type": "json"},
        "partly_labelled_images_left_out": {"raw_value": report.partly_labelled_images, "type": "int"},
        "train_boxes": {"raw_value": report.train_boxes, "type": "int"},
        "steps": {"raw_value": report.steps, "type": "int"},
        "epochs": {"raw_value": report.epochs, "type": "float"},
        "train_time_s": {"raw_value": report.train_time_s, "type": "float"},
        "train_cpu_s": {"raw_value": report.train_cpu_s, "type": "float"},
        "wall_time_s": {"raw_value": report.wall_time_s, "type": "float"},
        "train_images_per_s": {"raw_value": report.train_images_per_s, "type": "float"},
        "val_images_per_s": {"raw_value": report.val_images_per_s, "type": "float"},
        "map50": {"raw_value": report.metrics.get("map50", 0.0), "type": "float"},
        "map": {"raw_value": report.metrics.get("map", 0.0), "type": "float"},
        "evaluator": report.metrics.get("evaluator", ""),
        "val_images": {"raw_value": report.metrics.get("images", 0), "type": "int"},
        "per_category": {"raw_value": report.per_category, "type": "json"},
        "per_class": {"raw_value": per_class_markdown(report.metrics.get("per_class", {})), "type": "md"},
        "loss_curve": {"raw_value": _thin(report.loss_steps, report.losses), "type": "json"},
        "onnx": report.onnx or "",
    }


def check_metadata(report) -> dict[str, Any]:
    return {
        "map50": report.metrics.get("map50", 0.0),
        "floor": report.map50_floor,
        "val_images": report.metrics.get("images", 0),
        "losses_finite": report.loss_is_finite(),
    }


def _train(fields: dict[str, Any], images_path: str, annotations_path: str, log):
    import polars as pl

    from mmoral_pipeline.experts.settings import ExpertTrainSettings
    from mmoral_pipeline.experts.train import train_expert

    settings = ExpertTrainSettings.model_validate(fields)
    log(f"expert settings: {settings.model_dump_json()}")
    return train_expert(settings, pl.read_parquet(images_path), pl.read_parquet(annotations_path), log=log)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mmoral_pipeline.experts.run", description=__doc__)
    parser.add_argument("--images", help="raw_images Parquet (by hand; under Pipes the extra names it)")
    parser.add_argument("--annotations", help="raw_annotations Parquet")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one setting")
    args = parser.parse_args(argv)
    overrides = {k.strip(): _parse_value(v) for k, _, v in (item.partition("=") for item in args.set)}

    from dagster_pipes import PipesEnvVarParamsLoader, open_dagster_pipes

    if not PipesEnvVarParamsLoader().is_dagster_pipes_process():
        if not (args.images and args.annotations):
            parser.error("--images and --annotations are required outside Dagster")
        report = _train(overrides, args.images, args.annotations, print)
        print(report.model_dump_json(indent=2, exclude={"losses", "loss_steps"}))
        return 0 if report.loss_is_finite() else 1

    with open_dagster_pipes() as pipes:
        extra = (pipes.extras or {}).get(EXTRA_KEY) or {}
        try:
            report = _train(
                {**extra.get("settings", {}), **overrides}, extra["images"], extra["annotations"], pipes.log.info
            )
        except Exception:
            pipes.log.error(traceback.format_exc())
            raise
        pipes.report_asset_materialization(metadata=materialization_metadata(report), data_version=report.version)
        pipes.report_asset_check(
            check_name=CHECK_NAME,
            passed=report.meets_floor(),
            severity="ERROR",
            metadata=check_metadata(report),
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
