"""The Parquet IO manager's input forms: one frame, a lazy scan, {partition: lazy scan}, only some columns."""

from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from mmoral_pipeline.defs.io_manager import CONTENT_HASH_KEY, ParquetIOManager
from mmoral_pipeline.storage import file_sha256, read_table, scan_table

parts = dg.StaticPartitionsDefinition(["a", "b"])
SEEN: dict[str, object] = {}


@dg.asset(partitions_def=parts)
def table(context: dg.AssetExecutionContext) -> pl.DataFrame:
    k = context.partition_key
    return pl.DataFrame({"partition": [k, k], "x": [1, 2] if k == "a" else [3, 4], "big": ["..", ".."]})


MISSING_OK = {"allow_missing_partitions": True}  # as the project's fan-in assets: read the partitions that exist


@dg.asset(ins={"table": dg.AssetIn("table", metadata={**MISSING_OK, "columns": ["partition", "x"]})})
def eager(table: pl.DataFrame) -> pl.DataFrame:
    SEEN["eager"] = table
    return table


@dg.asset(deps=[eager], ins={"table": dg.AssetIn("table", metadata=MISSING_OK)})
def lazy(table: pl.LazyFrame) -> pl.DataFrame:
    SEEN["lazy"] = table
    return table.filter(pl.col("x") > 1).collect()


@dg.asset(deps=[lazy], ins={"table": dg.AssetIn("table", metadata=MISSING_OK)})
def per_partition(table: dict[str, pl.LazyFrame]) -> pl.DataFrame:
    SEEN["per_partition"] = table
    return pl.DataFrame({"n": [len(table)]})


@pytest.mark.parametrize("keys", [["a", "b"], ["a"]])
def test_input_forms(tmp_path: Path, keys: list[str]) -> None:
    io = ParquetIOManager(str(tmp_path))
    with dg.instance_for_test() as instance:
        for k in keys:
            assert dg.materialize([table], partition_key=k, resources={"io_manager": io}, instance=instance).success
        # the downstream assets read every partition that exists (here: `keys`)
        assert dg.materialize(
            [table, eager, lazy, per_partition],
            selection=[eager, lazy, per_partition],
            resources={"io_manager": io},
            instance=instance,
        ).success
        rec = instance.fetch_materializations(dg.AssetKey("table"), limit=1).records[0]
        path = tmp_path / "table" / f"{keys[-1]}.parquet"
        assert rec.asset_materialization.metadata[CONTENT_HASH_KEY].value == file_sha256(path)
    want = [1, 2, 3, 4][: 2 * len(keys)]
    assert SEEN["eager"].columns == ["partition", "x"] and SEEN["eager"]["x"].to_list() == want
    assert isinstance(SEEN["lazy"], pl.LazyFrame) and SEEN["lazy"].collect()["x"].to_list() == want
    assert set(SEEN["per_partition"]) == set(keys) and all(
        isinstance(v, pl.LazyFrame) for v in SEEN["per_partition"].values()
    )
    assert read_table("lazy", base_dir=str(tmp_path), partitions="all")["x"].to_list() == want[1:]
    assert scan_table("table", base_dir=str(tmp_path), partitions="all").select(pl.len()).collect().item() == 2 * len(keys)  # noqa: E501
    assert read_table("table", base_dir=str(tmp_path), columns=["x"], partitions="all").columns == ["x"]
