"""The project IO manager: every table is `$MMORAL_HOME/<asset_name>/<partition>.parquet`.

A `dg.UPathIOManager` subclass over pyarrow/polars (dagster-polars breaks with polars 2), so
local folders and fsspec URLs (s3://, gs://, memory://) work alike. Unpartitioned assets go to
`$MMORAL_HOME/<asset_name>.parquet`. A downstream asset that reads several partitions gets one
DataFrame with all of them (the partitions' rows concatenated), but only of the partitions the
gate admits (`defs.gates`): a partition whose latest run failed or whose blocking check failed is
left out, with a warning in the run log, even when its files from an earlier run are on disk.
An input annotated `pl.LazyFrame` is scanned instead of read: a partitioned asset that needs a few
rows of every partition (the annotations of an X-ray's copies in other batches) filters before
anything is loaded (through the same gate).
Only registered partitions are ever read: Dagster passes the registered keys, and `read_table`
(outside Dagster) must be told which partitions to read.
At MMOral's size (1.3M samples) no step may hold every table whole, so an input can ask for less:
- annotated `pl.LazyFrame`: a lazy scan (nothing read until collected; filters and column
  selections are pushed down into the Parquet reader; several partitions are one lazy concat);
- annotated `dict[str, pl.LazyFrame]`: one lazy scan per admitted partition (the dataset stage works
  batch by batch);
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
from mmoral_pipeline.storage import (
    concat_partitions,
    file_sha256,
    is_local,
    read_file,
    read_table,
    scan_file,
    scan_table,
    table_reader,
)

__all__ = [
    "CONTENT_HASH_KEY",
    "ParquetIOManager",
    "read_table",
    "registered_partitions",
    "scan_table",
    "table_reader",
]

ROW_GROUP_ROWS = 50_000
CONTENT_HASH_KEY = "mmoral/content_sha256"


class ParquetIOManager(dg.UPathIOManager):
    extension: str = ".parquet"

    def __init__(self, base_dir: str | None = None):
        self._base_dir = base_dir
        super().__init__(base_path=UPath(base_dir or mmoral_home()))

    @property
    def _base_path(self) -> UPath:
        """`base_dir`, else `$MMORAL_HOME` as it is when a run reads or writes (not when definitions load)."""
        return UPath(self._base_dir or mmoral_home())

    @_base_path.setter
    def _base_path(self, value: UPath) -> None:  # UPathIOManager.__init__ assigns it; the property decides
        pass

    def dump_to_path(self, context: dg.OutputContext, obj: pl.DataFrame | pl.LazyFrame, path: UPath) -> None:
        if not isinstance(obj, pl.DataFrame | pl.LazyFrame):
            raise TypeError(
                f"{context.asset_key.to_user_string()}: the Parquet IO manager stores polars DataFrames (or lazy "
                f"frames, streamed), got {type(obj)}"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".{path.name}.tmp"
        if isinstance(obj, pl.LazyFrame) and is_local(tmp):  # streamed: never one frame in memory
            obj.sink_parquet(str(tmp), compression="zstd", row_group_size=ROW_GROUP_ROWS)
        else:
            frame = obj.collect() if isinstance(obj, pl.LazyFrame) else obj
            with tmp.open("wb") as fh:
                # polars writes its own buffers (to_arrow() would copy every string column: +1.6 GB at MMOral's size)
                frame.write_parquet(fh, compression="zstd", row_group_size=ROW_GROUP_ROWS)
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
        optional = (
            context.has_asset_key
            and not context.has_asset_partitions
            and (context.definition_metadata or {}).get("allow_missing")
        )
        if optional and not self._get_path(context).exists():
            return None  # an optional unpartitioned input (AssetIn metadata allow_missing) never materialised
        if not (context.has_asset_key and context.has_asset_partitions) or _same_partition(context):
            obj = super().load_input(context)
            if _wants_dict(context):  # {partition: frame}, even for one
                return {} if obj is None else {context.asset_partition_keys[0]: obj}
            if obj is None and _wants_lazy(context):
                return pl.LazyFrame()
            return obj
        return self._load_gated(context)

    def _load_gated(self, context: dg.InputContext) -> pl.DataFrame | pl.LazyFrame | dict[str, Any]:
        """Several partitions of one table (a fan-in): only those the gate admits, concatenated (or one
        frame per partition for a `dict` input)."""
        from mmoral_pipeline.defs.gates import partition_gate

        step = context.step_context
        graph = step.job_def.asset_layer.asset_graph
        keys = context.asset_partition_keys
        gate = partition_gate(context.instance, graph, context.asset_key, keys, current_run_id=step.run_id)
        name = context.asset_key.to_user_string()
        if gate.left_out:
            context.log.warning(
                f"{name}: {len(gate.left_out)} partition(s) left out: "
                + "; ".join(f"{p}: {why}" for p, why in gate.left_out.items())
            )
        allow_missing = bool((context.definition_metadata or {}).get("allow_missing_partitions", False))
        paths = self._get_paths_for_partitions(context)
        frames: dict[str, Any] = {}
        for key in gate.admitted:
            path = paths[key]
            if not path.exists():
                if allow_missing:
                    continue
                raise FileNotFoundError(f"{name}: partition {key!r} was materialised but {path} is gone")
            frames[key] = self.load_from_path(context, path)
        if _wants_dict(context):
            return frames
        return concat_partitions(list(frames.values()), lazy=_wants_lazy(context))


def _wants_lazy(context: dg.InputContext) -> bool:
    typing_type = context.dagster_type.typing_type if context.dagster_type is not None else None
    return typing_type is pl.LazyFrame or getattr(typing_type, "__args__", (None, None))[-1] is pl.LazyFrame


def _wants_dict(context: dg.InputContext) -> bool:
    typing_type = getattr(context.dagster_type, "typing_type", None)
    return typing.get_origin(typing_type) in (dict, Mapping)


def _same_partition(context: dg.InputContext) -> bool:
    """A partitioned step reading its own partition of an upstream table: not a fan-in."""
    return context.has_partition_key and list(context.asset_partition_keys) == [context.partition_key]


def registered_partitions(instance: dg.DagsterInstance | None = None) -> list[str]:
    """The batch partitions registered on `instance` (default: the one at `DAGSTER_HOME`)."""
    from mmoral_pipeline.defs.partitions import BATCHES

    return list((instance or dg.DagsterInstance.get()).get_dynamic_partitions(BATCHES))
