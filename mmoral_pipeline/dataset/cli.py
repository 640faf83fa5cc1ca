"""`mmoral lineage SAMPLE_ID [--html OUT.html]`: trace one instruction sample to its sources.

The integrator wires `add_lineage_arguments` / `run_lineage` into the `mmoral` command.
"""

from __future__ import annotations

import argparse
import sys


def add_lineage_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "sample_id",
        nargs="?",
        default=None,
        help="sample_id of a row of instruction_samples (a unique prefix of 6+ characters works); see --list",
    )
    parser.add_argument(
        "--html",
        default=None,
        metavar="OUT.html",
        help="also write a self-contained HTML page (X-ray with boxes + chain)",
    )
    parser.add_argument("--home", default=None, help="MMORAL_HOME to read tables from (default: $MMORAL_HOME)")
    parser.add_argument("--full", action="store_true", help="print texts and the raw response without shortening")
    parser.add_argument("--no-verify", action="store_true", help="skip re-hashing the raw image")
    parser.add_argument("--list", type=int, nargs="?", const=1, default=None, metavar="N",
                        help="list N sample ids per task type (default 1) instead of tracing one")


def dataset_partitions(home: str | None) -> list[str]:
    """The batches `instruction_samples` has samples of: where a sample's lineage is found (fast: no Dagster).
    Without that table, the batches registered on the instance; `run_lineage` falls back to those too when
    the chain breaks (a merged document's copies may sit in batches without samples)."""
    import polars as pl

    from mmoral_pipeline.storage import scan_table

    try:
        column = scan_table("instruction_samples", base_dir=home).select(pl.col("partition").unique()).collect()
        return sorted(p for p in column["partition"].to_list() if p)
    except (FileNotFoundError, pl.exceptions.ColumnNotFoundError):
        return registered_batches()


def registered_batches() -> list[str]:
    """The batches registered on the instance at DAGSTER_HOME (imports Dagster: about 2 s)."""
    from mmoral_pipeline.defs.io_manager import registered_partitions
    from mmoral_pipeline.materialize import ensure_dagster_home

    ensure_dagster_home()
    return registered_partitions()


def run_lineage(args: argparse.Namespace) -> int:
    """Print the chain; 0 when it resolves without problems, 1 with problems, 2 for an unknown id."""
    from mmoral_pipeline.dataset.lineage import UnknownSampleError, render_text, resolve_lineage, write_html
    from mmoral_pipeline.storage import table_reader

    # the batches the dataset was built from, scanned: one sample reads only its rows
    read = table_reader(dataset_partitions(args.home), base_dir=args.home, lazy=True)

    from pathlib import Path

    from mmoral_pipeline.config import mmoral_home

    home = args.home or mmoral_home()
    cache = Path(home) / "llm_cache.sqlite" if "://" not in home else None
    if args.list is not None or not args.sample_id:
        return _list_ids(read, args.list or 1)
    verify = not getattr(args, "no_verify", False)
    try:
        chain = resolve_lineage(args.sample_id, read, verify_sha256=verify, cache_path=cache)
        if chain.problems:  # e.g. a merged document cites its copies' labels in batches without samples of their own
            read = table_reader(registered_batches(), base_dir=args.home, lazy=True)
            chain = resolve_lineage(args.sample_id, read, verify_sha256=verify, cache_path=cache)
    except UnknownSampleError as exc:
        print(f"mmoral lineage: {exc}", file=sys.stderr)
        return 2
    print(render_text(chain, full=getattr(args, "full", False)))
    if args.html:
        path = write_html(chain, args.html)
        print(f"wrote {path}")
    return 1 if chain.problems else 0


def _list_ids(read, per_task: int) -> int:
    """A few sample ids per task type, to pick one to trace."""
    samples = read("instruction_samples")
    if samples is None:
        print("mmoral lineage: instruction_samples has not been materialised yet "
              "(mmoral materialize --select instruction_samples)", file=sys.stderr)
        return 2
    samples = samples.lazy().select("sample_id", "task_type", "split", "image_id").collect()
    rows = samples.sort("task_type", "sample_id").group_by("task_type", maintain_order=True).head(per_task)
    for r in rows.iter_rows(named=True):
        print(f"{r['sample_id']}  {r['task_type']:<13} {r['split']:<6} {r['image_id']}")
    print(f"({samples.height} samples; trace one with: mmoral lineage SAMPLE_ID [--html out.html])")
    return 0
