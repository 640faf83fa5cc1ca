"""The project IO manager: every table is `$MMORAL_HOME/<asset_name>/<partition>.parquet`.

A `dg.UPathIOManager` subclass over pyarrow/polars (dagster-polars breaks with polars 2), so
local folders and fsspec URLs (s3://, gs://, memory://) work alike. Unpartitioned assets go to
`$MMORAL_HOME/<asset_name>.parquet`. A downstream asset that reads several partitions gets one
DataFrame with all of them (the partitions' rows concatenated). An input annotated `pl.LazyFrame`
is scanned instead of read: a partitioned asset that needs a few rows of every partition (the
annotations of an X-ray's copies in other batches) filters before anything is loaded.
"""

from __future__ import annotations

from typing import Any

import dagster as dg
import polars as pl
import pyarrow.parquet as pq
from upath import UPath

from mmoral_pipeline.config import mmoral_home


class ParquetIOManager(dg.UPathIOManager):
    extension: str = ".parquet"

    def __init__(self, base_dir: str | None = None):
        super().__init__(base_path=UPath(base_dir or mmoral_home()))

    def dump_to_path(self, context: dg.OutputContext, obj: pl.DataFrame, path: UPath) -> None:
        if not isinstance(obj, pl.DataFrame):
            raise TypeError(
                f"{context.asset_key.to_user_string()}: the Parquet IO manager stores polars DataFrames, got {type(obj)}"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".{path.name}.tmp"
        with tmp.open("wb") as fh:
            pq.write_table(obj.to_arrow(), fh, compression="zstd")
        tmp.rename(path)  # a killed run never leaves half a file behind
        context.add_output_metadata({"dagster/uri": dg.MetadataValue.path(str(path))})

    def load_from_path(self, context: dg.InputContext, path: UPath) -> pl.DataFrame | pl.LazyFrame:
        if _wants_lazy(context):
            if not path.exists():
                raise FileNotFoundError(str(path))  # lets allow_missing_partitions skip it
            if path.protocol in ("", "file", "local"):
                return pl.scan_parquet(str(path))
        with path.open("rb") as fh:
            frame = pl.from_arrow(pq.read_table(fh))
        return frame.lazy() if _wants_lazy(context) else frame  # type: ignore[union-attr,return-value]

    def load_input(self, context: dg.InputContext) -> Any:
        obj = super().load_input(context)
        if isinstance(obj, dict):  # several partitions -> one frame
            frames = [df for df in obj.values() if df is not None]
            if _wants_lazy(context):
                return pl.concat(frames, how="diagonal_relaxed") if frames else pl.LazyFrame()
            frames = [df for df in frames if df.height > 0]
            if not frames:
                first = next(iter(obj.values()), None)
                return first if first is not None else pl.DataFrame()
            return pl.concat(frames, how="diagonal_relaxed")
        return obj


def _wants_lazy(context: dg.InputContext) -> bool:
    return context.dagster_type is not None and context.dagster_type.typing_type is pl.LazyFrame


def read_table(asset_name: str, partition: str | None = None, base_dir: str | None = None) -> pl.DataFrame:
    """Read a table written by the IO manager outside Dagster (CLI, lineage, perf scripts).

    With `partition=None` on a partitioned asset, all partitions are concatenated.
    """
    base = UPath(base_dir or mmoral_home())
    single = base / f"{asset_name}.parquet"
    if partition is None and single.exists():
        paths = [single]
    elif partition is None:
        folder = base / asset_name
        paths = sorted(p for p in folder.iterdir() if p.name.endswith(".parquet") and not p.name.startswith(".")) if folder.exists() else []
    else:
        paths = [base / asset_name / f"{partition}.parquet"]
    frames = []
    for p in paths:
        if not p.exists():
            raise FileNotFoundError(f"{p} does not exist: materialise {asset_name!r} first (mmoral materialize --select {asset_name})")
        with p.open("rb") as fh:
            frames.append(pl.from_arrow(pq.read_table(fh)))
    if not frames:
        raise FileNotFoundError(f"no Parquet for {asset_name!r} under {base}: materialise it first (mmoral materialize --select {asset_name})")
    return pl.concat(frames, how="diagonal_relaxed")  # type: ignore[arg-type]
