"""The `mmoral` command: materialise, generate synthetic data, trace a sample, benchmark a model, validate items."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _cmd_materialize(args: argparse.Namespace) -> int:
    from mmoral_pipeline.materialize import format_checks, format_left_out, materialize
    from mmoral_pipeline.summary import print_summary

    run_config = None
    if args.config:
        import yaml

        run_config = yaml.safe_load(Path(args.config).read_text()) or {}
        if not isinstance(run_config, dict):
            print(f"mmoral materialize: {args.config}: a run config is a mapping (ops: ...)", file=sys.stderr)
            return 2
    report = materialize(
        selection=args.select, sources_path=args.sources, force=args.force, workers=args.workers, run_config=run_config
    )
    print(format_checks(report))
    if report.left_out:
        print(format_left_out(report))
    if not args.quiet:
        print_summary()
    if report.failed:
        print(f"Failed partitions: {', '.join(report.failed)}", file=sys.stderr)
        return 1
    return 0


def _cmd_partitions(args: argparse.Namespace) -> int:
    import dagster as dg

    from mmoral_pipeline.materialize import ensure_dagster_home, register_partitions

    ensure_dagster_home()
    for key in register_partitions(dg.DagsterInstance.get(), args.sources):
        print(key)
    return 0


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; with `command`, only that subcommand's module is imported (the others are listed, not loaded)."""
    parser = argparse.ArgumentParser(prog="mmoral", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("materialize", help="register partitions and materialise assets on the persistent instance")
    p.add_argument(
        "--select",
        default=None,
        help="Dagster asset selection, e.g. 'group:ingest' or 'key:raw_images+' (default: everything)",
    )
    p.add_argument("--sources", default=None, help="sources YAML (default: $MMORAL_SOURCES or assets/sources.yaml)")
    p.add_argument("--quiet", action="store_true", help="no summary at the end")
    p.add_argument(
        "--config",
        default=None,
        help="YAML run config for the runs, Dagster's form (ops: {sft_model: {config: {max_steps: 1500}}}); "
        "an asset whose op is given config always runs",
    )
    p.add_argument("--force", action="store_true", help="re-run every selected asset partition, also those up to date")
    p.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("MMORAL_MATERIALIZE_WORKERS", "1")),
        help="batches run at once, each in its own process (default $MMORAL_MATERIALIZE_WORKERS or 1)",
    )
    p.set_defaults(func=_cmd_materialize)

    p = sub.add_parser("partitions", help="register and list the batch partitions of the sources file")
    p.add_argument("--sources", default=None)
    p.set_defaults(func=_cmd_partitions)

    _optional(
        sub,
        command,
        "synth",
        "write procedural panoramic X-rays with annotations",
        "mmoral_pipeline.synth.cli",
        "add_synth_arguments",
        "run_synth",
    )
    _optional(
        sub,
        command,
        "lineage",
        "trace one instruction sample back to its image, annotations and prompt",
        "mmoral_pipeline.dataset.cli",
        "add_lineage_arguments",
        "run_lineage",
    )
    _optional(
        sub,
        command,
        "expert",
        "evaluate a visual expert on labelled sources; compare pseudo-labelled reports with true ones",
        "mmoral_pipeline.experts.cli",
        "add_expert_arguments",
        "run_expert",
    )
    _optional(
        sub,
        command,
        "bench",
        "score a model on MMOral-OPG-Bench-style TSVs",
        "mmoral_pipeline.evaluation.cli",
        "add_bench_arguments",
        "run_bench",
    )
    _optional(
        sub,
        command,
        "validate",
        "validate externally written items (JSONL) against the attributes in $MMORAL_HOME",
        "mmoral_pipeline.generation.cli",
        "add_validate_arguments",
        "run_validate",
    )
    return parser


def _optional(sub, command: str | None, name: str, help_text: str, module: str, add: str, run: str) -> None:
    import importlib

    p = sub.add_parser(name, help=help_text)
    if command not in (None, name):  # not the one asked for: skip importing it (`mmoral lineage` starts faster)
        return
    mod = importlib.import_module(module)
    getattr(mod, add)(p)
    p.set_defaults(func=getattr(mod, run))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(command).parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
