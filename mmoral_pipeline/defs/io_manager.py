"""The project IO manager: every table is `$MMORAL_HOME/<asset_name>/<partition>.parquet`.

A `dg.UPathIOManager` subclass over pyarrow/polars (dagster-polars breaks with polars 2), so
local folders and fsspec URLs (s3://, gs://, memory://) work alike. Unpartitioned assets go to
`$MMORAL_HOME/<asset_name>.parquet`. A downstream asset that reads several partitions gets one
DataFrame with all of them (the partitions' rows concatenated).

At MMOral's size (1.3M samples) no step may hold every table whole, so an input can ask for less:
- annotated `pl.LazyFrame`: a lazy scan (nothing read until collected; filters and column
  selections are pushed down into the Parquet reader; several partitions are one lazy concat), e.g.
  a partitioned asset that needs a few rows of every partition (the annotations of an X-ray's copies
  in other batches);
- annotated `dict[str, pl.LazyFrame]`: one lazy scan per partition (the dataset stage works batch by batch);
- `dg.AssetIn(metadata={"columns": [...]})`: only those columns are read.
Files are written in row groups of `ROW_GROUP_ROWS` rows, so scans skip what they do not need.
Every written table carries `mmoral/content_sha256` (of the file) in its metadata: what
`mmoral materialize` compares to decide that a downstream partition is still up to date.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from typing import Any

import dagster as dg
import polars as pl
from upath import UPath

from mmoral_pipeline.config import mmoral_home
from mmoral_pipeline.storage import concat_partitions, file_sha256, read_file, read_table, scan_file, scan_table

__all__ = ["CONTENT_HASH_KEY", "ParquetIOManager", "read_table", "scan_table"]

ROW_GROUP_ROWS = 50_000
CONTENT_HASH_KEY = "mmoral/content_sha256"


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
            # polars writes its own buffers (to_arrow() would copy every string column: +1.6 GB at MMOral's size)
            obj.write_parquet(fh, compression="zstd", row_group_size=ROW_GROUP_ROWS)
        digest = file_sha256(tmp)
        tmp.rename(path)  # a killed run never leaves half a file behind
        context.add_output_metadata({"dagster/uri": dg.MetadataValue.path(str(path)), CONTENT_HASH_KEY: digest})

    def load_from_path(self, context: dg.InputContext, path: UPath) -> pl.DataFrame | pl.LazyFrame:
        columns = (context.definition_metadata or {}).get("columns")
        if _wants_lazy(context):
            if not path.exists():  # a scan fails only when collected: say it now (allow_missing_partitions)
                raise FileNotFoundError(str(path))
            return scan_file(path, columns)
        return read_file(path, columns)

    def load_input(self, context: dg.InputContext) -> Any:
        obj = super().load_input(context)
        if typing.get_origin(getattr(context.dagster_type, "typing_type", None)) in (dict, Mapping):  # {partition: frame}, even for one
            if isinstance(obj, dict):
                return obj
            return {} if obj is None else {context.asset_partition_keys[0]: obj}
        if isinstance(obj, dict):  # several partitions -> one frame
            return concat_partitions(list(obj.values()), lazy=_wants_lazy(context))
        if obj is None and _wants_lazy(context):
            return pl.LazyFrame()
        return obj


def _wants_lazy(context: dg.InputContext) -> bool:
    typing_type = context.dagster_type.typing_type if context.dagster_type is not None else None
    return typing_type is pl.LazyFrame or getattr(typing_type, "__args__", (None, None))[-1] is pl.LazyFrame


