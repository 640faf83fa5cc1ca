"""The production instance configuration of docs/production.md, on a real PostgreSQL server.

Starts PostgreSQL on loopback, writes the documented `dagster.yaml` block verbatim, and materialises
the ingest and attributes assets (with their checks) on that instance; then reads runs,
materialisations, check results and partitions back through a second instance object.
"""

import re
from pathlib import Path

import dagster as dg
import pytest

from mmoral_pipeline.defs.attributes import attributes_assets, attributes_checks
from mmoral_pipeline.defs.experts import expert_annotations_batch
from mmoral_pipeline.defs.ingest import ingest_assets, ingest_checks
from mmoral_pipeline.defs.io_manager import ParquetIOManager, read_table
from mmoral_pipeline.defs.partitions import BATCHES
from mmoral_pipeline.defs.resources import SourcesResource
from mmoral_pipeline.materialize import register_partitions

from .conftest import REPO, write_sources

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

BLOCK = re.compile(
    r"<!-- production-dagster-yaml: begin.*?-->\s*```yaml\n(.*?)```\s*<!-- production-dagster-yaml: end -->", re.DOTALL
)


def production_yaml() -> str:
    doc = (REPO / "docs" / "production.md").read_text()
    m = BLOCK.search(doc)
    assert m, "docs/production.md lost its marked dagster.yaml block"
    return m.group(1)


def test_documented_config_uses_postgres_and_the_llm_pool():
    text = production_yaml()
    import yaml

    cfg = yaml.safe_load(text)
    assert cfg["storage"]["postgres"]["postgres_url"] == {"env": "DAGSTER_PG_URL"}
    assert cfg["run_retries"]["enabled"] is True
    assert cfg["concurrency"]["runs"]["max_concurrent_runs"] >= 1
    assert "dagster instance concurrency set llm" in text


def test_ingest_and_attributes_materialise_on_postgres(postgres_server, tmp_path: Path, monkeypatch):
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage

    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(production_yaml())
    monkeypatch.setenv("DAGSTER_PG_URL", postgres_server.url)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    data = tmp_path / "mmoral"
    monkeypatch.setenv("MMORAL_HOME", str(data))
    sources = write_sources(tmp_path / "raw", {"north": 2, "south": 2})
    monkeypatch.setenv("MMORAL_SOURCES", str(sources))

    assets = [*ingest_assets, expert_annotations_batch, *attributes_assets, *ingest_checks, *attributes_checks]
    resources = {"io_manager": ParquetIOManager(str(data)), "sources": SourcesResource(path=str(sources))}
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        keys = register_partitions(instance, str(sources))
        assert keys == ["north", "south"]
        run_ids = []
        for key in keys:
            result = dg.materialize(assets, partition_key=key, instance=instance, resources=resources)
            assert result.success, key
            run_ids.append(result.run_id)

    # a fresh instance object reads everything back from the server
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_dynamic_partitions(BATCHES) == ["north", "south"]
        for run_id in run_ids:
            run = instance.get_run_by_id(run_id)
            assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
        expected = {
            "raw_images",
            "raw_annotations",
            "rejected_inputs",
            "image_attributes",
            "tooth_attributes",
            "location_captions",
        }
        for name in expected:
            parts = instance.get_materialized_partitions(dg.AssetKey(name))
            assert parts == {"north", "south"}, name
        event = instance.get_latest_materialization_event(dg.AssetKey("tooth_attributes"))
        rows = event.asset_materialization.metadata["dagster/row_count"].value
        assert rows == read_table("tooth_attributes", partition="south", base_dir=str(data)).height
        check_records = instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(dg.AssetKey("tooth_attributes"), "fdi_ids_valid"), limit=10
        )
        assert len(check_records) == 2
        assert all(r.status.value == "SUCCEEDED" for r in check_records)
    assert read_table("image_attributes", base_dir=str(data), partitions="all").height == 4
