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
"""

from typing import Any

import dagster as dg
import polars as pl
import pyarrow.parquet as pq
from upath import UPath

from mmoral_pipeline.config import mmoral_home


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

    def dump_to_path(self, context: dg.OutputContext, obj: pl.DataFrame, path: UPath) -> None:
        if not isinstance(obj, pl.DataFrame):
            raise TypeError(
                f"{context.asset_key.to_user_string()}: the Parquet IO manager stores polars DataFrames, got "
                f"{type(obj)}"
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
        optional = (
            context.has_asset_key
            and not context.has_asset_partitions
            and (context.definition_metadata or {}).get("allow_missing")
        )
        if optional and not self._get_path(context).exists():
            return None  # an optional unpartitioned input (AssetIn metadata allow_missing) never materialised
        if not (context.has_asset_key and context.has_asset_partitions) or _same_partition(context):
            return super().load_input(context)
        return self._load_gated(context)

    def _load_gated(self, context: dg.InputContext) -> pl.DataFrame | pl.LazyFrame:
        """Several partitions of one table (a fan-in): only those the gate admits, concatenated."""
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
        frames = []
        for key in gate.admitted:
            path = paths[key]
            if not path.exists():
                if allow_missing:
                    continue
                raise FileNotFoundError(f"{name}: partition {key!r} was materialised but {path} is gone")
            frames.append(self.load_from_path(context, path))
        if _wants_lazy(context):
            return pl.concat(frames, how="diagonal_relaxed") if frames else pl.LazyFrame()
        frames = [df for df in frames if df.height > 0] or frames[:1]
        return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()


def _wants_lazy(context: dg.InputContext) -> bool:
    return context.dagster_type is not None and context.dagster_type.typing_type is pl.LazyFrame


def _same_partition(context: dg.InputContext) -> bool:
    """A partitioned step reading its own partition of an upstream table: not a fan-in."""
    return context.has_partition_key and list(context.asset_partition_keys) == [context.partition_key]


def registered_partitions(instance: dg.DagsterInstance | None = None) -> list[str]:
    """The batch partitions registered on `instance` (default: the one at `DAGSTER_HOME`)."""
    from mmoral_pipeline.defs.partitions import BATCHES

    return list((instance or dg.DagsterInstance.get()).get_dynamic_partitions(BATCHES))


def read_table(
    asset_name: str,
    partition: str | None = None,
    base_dir: str | None = None,
    partitions: list[str] | str | None = None,
) -> pl.DataFrame:
    """Read a table written by the IO manager outside Dagster (CLI, lineage, perf scripts).

    A partitioned table is read for one `partition`, or for the `partitions` given: a list (usually
    `registered_partitions()`, so a batch dropped from the sources file is never read again) or
    "all" for every file in its folder (a folder the caller wrote itself). Saying neither is an error:
    which batches count is the caller's decision, never whatever files happen to be on disk.
    """
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
        if partitions != "all" and partitions is not None:
            allowed = set(partitions)
            paths = [p for p in paths if p.name[: -len(".parquet")] in allowed]
    else:
        paths = [base / asset_name / f"{partition}.parquet"]
    frames = []
    for p in paths:
        if not p.exists():
            raise FileNotFoundError(
                f"{p} does not exist: materialise {asset_name!r} first (mmoral materialize --select {asset_name})"
            )
        with p.open("rb") as fh:
            frames.append(pl.from_arrow(pq.read_table(fh)))
    if not frames:
        raise FileNotFoundError(
            f"no Parquet for {asset_name!r} under {base}: materialise it first (mmoral materialize --select "
            f"{asset_name})"
        )
    return pl.concat(frames, how="diagonal_relaxed")  # type: ignore[arg-type]


def table_reader(partitions: list[str], base_dir: str | None = None):
    """A `TableReader` (name -> frame, or None when never materialised) over `partitions`: what the
    lineage CLI and the sample_lineage job walk."""

    def read(name: str) -> pl.DataFrame | None:
        try:
            return read_table(name, base_dir=base_dir, partitions=partitions)
        except FileNotFoundError:
            return None

    return read
