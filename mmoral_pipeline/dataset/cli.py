"""`mmoral lineage SAMPLE_ID [--html OUT.html]`: trace one instruction sample to its sources."""

from __future__ import annotations

import argparse


def add_lineage_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sample_id", help="sample_id of a row of instruction_samples (see exports/trl/*.jsonl)")
    parser.add_argument("--html", default=None, metavar="OUT.html", help="also write a self-contained HTML page")
    parser.add_argument("--home", default=None, help="MMORAL_HOME to read tables from (default: $MMORAL_HOME)")


def run_lineage(args: argparse.Namespace) -> int:
    raise SystemExit("mmoral lineage: not implemented yet")
