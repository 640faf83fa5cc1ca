"""The short summary `make demo` prints: what was made, where it is, how to look at it."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from mmoral_pipeline.config import mmoral_home


def table_counts(home: str | None = None) -> dict[str, tuple[int, int]]:
    """asset name -> (partitions/files, rows) for every Parquet table under MMORAL_HOME."""
    base = Path(home or mmoral_home())
    out: dict[str, tuple[int, int]] = {}
    if not base.exists():
        return out
    for entry in sorted(base.iterdir()):
        if entry.is_dir():
            files = [p for p in entry.glob("*.parquet") if not p.name.startswith(".")]
            if files:
                out[entry.name] = (len(files), sum(pq.ParquetFile(p).metadata.num_rows for p in files))
        elif entry.suffix == ".parquet":
            out[entry.stem] = (1, pq.ParquetFile(entry).metadata.num_rows)
    return out


def print_summary(home: str | None = None) -> None:
    base = home or mmoral_home()
    counts = table_counts(base)
    print()
    print(f"Outputs under {base}")
    print(f"  {'table':28} {'files':>5} {'rows':>9}")
    for name, (files, rows) in counts.items():
        print(f"  {name:28} {files:>5} {rows:>9}")
    exports = Path(base) / "exports"
    if exports.exists():
        print(f"Exports: {exports}")
        for p in sorted(exports.rglob("*")):
            if p.is_file() and p.suffix in {".json", ".jsonl", ".tsv", ".md"}:
                print(f"  {p.relative_to(base)}")
    print()
    print("Open the UI:  make ui   (then http://127.0.0.1:3000; runs above are in its history)")
    print("Trace a sample:  .venv/bin/mmoral lineage <sample_id>")
