"""Trainer entry point: `python -m mmoral_pipeline.training.run [--settings FILE.json] [--set key=value ...]`.

Needs `dagster-pipes`, never `dagster`. Launched by the `sft_model` asset through Dagster Pipes, it reads its
settings from the Pipes extra `sft_settings` and reports the materialisation (figures, loss plot, checkpoint
hash) and the asset check `loss_finite_and_fell` back. Run by hand (no Pipes), it prints the report as JSON.
Works under `accelerate launch` / `torchrun`: every rank trains, only rank 0 talks to Dagster.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path
from typing import Any

from mmoral_pipeline.training.settings import SftSettings

CHECK_NAME = "loss_finite_and_fell"
EXTRA_KEY = "sft_settings"


def _parse_value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def settings_from_cli(argv: list[str] | None, extras: dict[str, Any] | None = None) -> SftSettings:
    """Pipes extra first, then a JSON file, then `--set key=value` overrides (values parsed as JSON if they can)."""
    parser = argparse.ArgumentParser(prog="python -m mmoral_pipeline.training.run", description=__doc__)
    parser.add_argument("--settings", help="JSON file with SftSettings fields")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one field")
    args = parser.parse_args(argv)
    fields: dict[str, Any] = dict(extras or {})
    if args.settings:
        fields.update(json.loads(Path(args.settings).read_text()))
    for item in args.set:
        key, _, value = item.partition("=")
        fields[key.strip()] = _parse_value(value)
    return SftSettings.model_validate(fields)


def pipes_extras_without_session() -> dict[str, Any] | None:
    """The Pipes extras, read without opening a message channel (for ranks other than 0)."""
    from dagster_pipes import PipesDefaultContextLoader, PipesEnvVarParamsLoader

    params = PipesEnvVarParamsLoader()
    if not params.is_dagster_pipes_process():
        return None
    with PipesDefaultContextLoader().load_context(params.load_context_params()) as data:
        return dict(data.get("extras") or {}).get(EXTRA_KEY)


def materialization_metadata(report) -> dict[str, Any]:
    """Pipes metadata for the asset: figures as numbers, the loss curve (at most 200 points) and the
    plot's path. Pipes messages stay small: Dagster's temp-file reader can read a half-written
    line of a large message and then drops every later one, so the orchestrator inlines the plot."""
    md: dict[str, Any] = {
        "checkpoint_path": {"raw_value": report.checkpoint_dir, "type": "path"},
        "weights_sha256": {"raw_value": report.weights_sha256, "type": "text"},
        "weights_files": {"raw_value": report.weights_files, "type": "json"},
        "base_model": report.base_model,
        "finetune": report.finetune,
        "device": report.device,
        "world_size": report.world_size,
        "params_total": {"raw_value": report.params_total, "type": "int"},
        "params_trainable": {"raw_value": report.params_trainable, "type": "int"},
        "train_samples": {"raw_value": report.train_samples, "type": "int"},
        "steps": {"raw_value": report.steps, "type": "int"},
        "epochs": {"raw_value": report.epochs, "type": "float"},
        "wall_time_s": {"raw_value": round(report.wall_time_s, 2), "type": "float"},
        "train_time_s": {"raw_value": round(report.train_time_s, 2), "type": "float"},
        "samples_per_s": {"raw_value": round(report.samples_per_s, 3), "type": "float"},
        "tokens_per_s": {"raw_value": round(report.tokens_per_s, 1), "type": "float"},
        "tokens_seen": {"raw_value": report.tokens_seen, "type": "int"},
        "assistant_tokens_seen": {"raw_value": report.assistant_tokens_seen, "type": "int"},
        "loss_start": {"raw_value": report.loss_start, "type": "float"},
        "loss_end": {"raw_value": report.loss_end, "type": "float"},
        "learning_rate": {"raw_value": report.learning_rate, "type": "float"},
        "max_pixels": report.max_pixels,
        "bf16": report.bf16,
        "task_types": {"raw_value": report.task_types or "all", "type": "json"},
        "closed_target": report.closed_target,
        "loss_curve": {"raw_value": _thin_curve(report.loss_steps, report.losses), "type": "json"},
    }
    if report.loss_plot_png:
        md["loss_plot_path"] = {"raw_value": report.loss_plot_png, "type": "path"}
    return md


def _thin_curve(steps: list[int], losses: list[float], max_points: int = 200) -> dict[str, list]:
    stride = max(1, -(-len(losses) // max_points))
    return {"steps": steps[::stride], "loss": [round(v, 4) for v in losses[::stride]]}


def check_metadata(report) -> dict[str, Any]:
    return {
        "loss_start": report.loss_start,
        "loss_end": report.loss_end,
        "logged_points": len(report.losses),
        "all_finite": report.loss_is_finite(),
    }


def main(argv: list[str] | None = None) -> int:
    from mmoral_pipeline.training.trainer import is_main_process, train

    if not is_main_process():
        settings = settings_from_cli(argv, pipes_extras_without_session())
        train(settings, log=lambda _msg: None)
        return 0

    from dagster_pipes import PipesEnvVarParamsLoader, open_dagster_pipes

    if not PipesEnvVarParamsLoader().is_dagster_pipes_process():
        settings = settings_from_cli(argv)
        report = train(settings)
        print(report.model_dump_json(indent=2))
        return 0 if report.loss_is_finite() else 1

    with open_dagster_pipes() as pipes:
        try:
            settings = settings_from_cli(argv, (pipes.extras or {}).get(EXTRA_KEY))
            pipes.log.info(f"SFT settings: {settings.model_dump_json()}")
            report = train(settings, log=pipes.log.info)
        except Exception:
            pipes.log.error(traceback.format_exc())
            raise
        pipes.report_asset_materialization(
            metadata=materialization_metadata(report), data_version=report.weights_sha256[:16]
        )
        pipes.report_asset_check(
            check_name=CHECK_NAME,
            passed=report.loss_fell(),
            severity="ERROR" if not report.loss_is_finite() else "WARN",
            metadata=check_metadata(report),
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
