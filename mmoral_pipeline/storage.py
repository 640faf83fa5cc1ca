"""Where the pipeline's tables live and how to read them, without Dagster: `$MMORAL_HOME/<asset>.parquet`
or `$MMORAL_HOME/<asset>/<partition>.parquet`, local or any fsspec URL.

The IO manager (`defs/io_manager.py`) writes and loads through these; the CLI (`mmoral lineage`), lineage,
checks and perf scripts read with them directly. `scan_table` is lazy: filters and column selections read
only what they need, which is what keeps one sample's lineage fast among 1.3M samples.
"""

from __future__ import annotations

import hashlib

import polars as pl
from upath import UPath

from mmoral_pipeline.config import mmoral_home


def is_local(path: UPath) -> bool:
    return getattr(path, "protocol", "") in ("", "file", "local")


def file_sha256(path: UPath) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def concat_partitions(
    frames: list[pl.DataFrame | pl.LazyFrame | None], *, lazy: bool = False
) -> pl.DataFrame | pl.LazyFrame:
    """Partitions' frames as one (rows concatenated, columns unified); an empty frame when there are none."""
    present = [f for f in frames if f is not None]
    if lazy:
        return pl.concat(present, how="diagonal_relaxed") if present else pl.LazyFrame()
    nonempty = [f for f in present if f.height > 0]  # type: ignore[union-attr]
    if not nonempty:
        return present[0] if present else pl.DataFrame()
    return pl.concat(nonempty, how="diagonal_relaxed")


def read_file(path: UPath, columns: list[str] | None = None) -> pl.DataFrame:
    """One Parquet file, all columns or those of the given ones it has."""
    import pyarrow.parquet as pq  # here: `mmoral lineage` scans with polars alone and starts faster

    with path.open("rb") as fh:
        if columns is not None:
            names = set(pq.ParquetFile(fh).schema_arrow.names)
            columns = [c for c in columns if c in names]
            fh.seek(0)
        return pl.from_arrow(pq.read_table(fh, columns=columns))  # type: ignore[return-value]


def scan_file(path: UPath, columns: list[str] | None = None) -> pl.LazyFrame:
    """A lazy scan of one Parquet file (object storage other than polars' own is read eagerly, then made lazy)."""
    lf = pl.scan_parquet(str(path)) if is_local(path) else read_file(path).lazy()
    if not columns:
        return lf
    names = set(lf.collect_schema().names())
    return lf.select([c for c in columns if c in names])


def table_paths(
    asset_name: str,
    partition: str | None = None,
    base_dir: str | None = None,
    partitions: list[str] | str | None = None,
) -> list[UPath]:
    """The Parquet files of a table: the single file, one `partition`'s, or those of the `partitions` given
    (a list, usually the registered ones, so a batch dropped from the sources file is never read again,
    or "all" for every file in its folder: a folder the caller wrote itself). A partitioned table read
    with neither is an error: which batches count is the caller's decision, never whatever files happen
    to be on disk. FileNotFoundError when there are none."""
    base = UPath(base_dir or mmoral_home())
    single = base / f"{asset_name}.parquet"
    if partition is None and single.exists():
        paths = [single]
    elif partition is None:
        folder = base / asset_name
        paths = (
            sorted(p for p in folder.iterdir() if p.name.endswith(".parquet") and not p.name.startswith("."))
            if folder.exists()
            else []
        )
        if partitions is None and paths:
            raise ValueError(
                f"{asset_name} is partitioned: pass partitions=registered_partitions() (or 'all', or one partition)"
            )
        if partitions is not None and partitions != "all":
            allowed = set(partitions)
            paths = [p for p in paths if p.name[: -len(".parquet")] in allowed]
    else:
        paths = [base / asset_name / f"{partition}.parquet"]
    for p in paths:
        if not p.exists():
            raise FileNotFoundError(
                f"{p} does not exist: materialise {asset_name!r} first (mmoral materialize --select {asset_name})"
            )
    if not paths:
        raise FileNotFoundError(
            f"no Parquet for {asset_name!r} under {base}: materialise it first (mmoral materialize --select "
            f"{asset_name})"
        )
    return paths


def read_table(
    asset_name: str,
    partition: str | None = None,
    base_dir: str | None = None,
    columns: list[str] | None = None,
    partitions: list[str] | str | None = None,
) -> pl.DataFrame:
    """Read a table written by the IO manager outside Dagster (CLI, lineage, perf scripts): the partitions
    as `table_paths` says, concatenated; `columns` reads only those."""
    paths = table_paths(asset_name, partition, base_dir, partitions)
    return concat_partitions([read_file(p, columns) for p in paths])  # type: ignore[return-value]


def scan_table(
    asset_name: str,
    partition: str | None = None,
    base_dir: str | None = None,
    partitions: list[str] | str | None = None,
) -> pl.LazyFrame:
    """A lazy scan of a table outside Dagster: filters and column selections read only what they need."""
    paths = table_paths(asset_name, partition, base_dir, partitions)
    return concat_partitions([scan_file(p) for p in paths], lazy=True)  # type: ignore[return-value]


def table_reader(partitions: list[str], base_dir: str | None = None, *, lazy: bool = False):
    """A `TableReader` (name -> frame, or None when never materialised) over `partitions`: what the
    lineage CLI and the sample_lineage job walk; `lazy=True` gives scans (one sample among 1.3M reads
    only its rows)."""

    def read(name: str) -> pl.DataFrame | pl.LazyFrame | None:
        try:
            if lazy:
                return scan_table(name, base_dir=base_dir, partitions=partitions)
            return read_table(name, base_dir=base_dir, partitions=partitions)
        except FileNotFoundError:
            return None

    return read
