"""`mmoral lineage SAMPLE_ID [--html OUT.html]`: trace one instruction sample to its sources.

The integrator wires `add_lineage_arguments` / `run_lineage` into the `mmoral` command.
"""

from __future__ import annotations

import argparse
import sys


def add_lineage_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sample_id", help="sample_id of a row of instruction_samples (see 'sample_id' in exports/trl/train.jsonl)")
    parser.add_argument("--html", default=None, metavar="OUT.html", help="also write a self-contained HTML page (X-ray with boxes + chain)")
    parser.add_argument("--home", default=None, help="MMORAL_HOME to read tables from (default: $MMORAL_HOME)")
    parser.add_argument("--full", action="store_true", help="print texts and the raw response without shortening")
    parser.add_argument("--no-verify", action="store_true", help="skip re-hashing the raw image")


def run_lineage(args: argparse.Namespace) -> int:
    """Print the chain; 0 when it resolves without problems, 1 with problems, 2 for an unknown id."""
    from mmoral_pipeline.dataset.lineage import UnknownSampleError, render_text, resolve_lineage, write_html
    from mmoral_pipeline.defs.io_manager import read_table

    def read(name: str):
        try:
            return read_table(name, base_dir=args.home)
        except FileNotFoundError:
            return None

    from pathlib import Path

    from mmoral_pipeline.config import mmoral_home

    home = args.home or mmoral_home()
    cache = Path(home) / "llm_cache.sqlite" if "://" not in home else None
    try:
        chain = resolve_lineage(args.sample_id, read, verify_sha256=not getattr(args, "no_verify", False), cache_path=cache)
    except UnknownSampleError as exc:
        print(f"mmoral lineage: {exc}", file=sys.stderr)
        return 2
    print(render_text(chain, full=getattr(args, "full", False)))
    if args.html:
        path = write_html(chain, args.html)
        print(f"wrote {path}")
    return 1 if chain.problems else 0
