"""In-process materialisation of the ingest assets and checks on a temporary instance."""

from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import yaml

from mmoral_pipeline.defs.ingest import ingest_assets, ingest_checks
from mmoral_pipeline.defs.io_manager import ParquetIOManager, read_table
from mmoral_pipeline.defs.partitions import BATCHES
from mmoral_pipeline.defs.resources import SourcesResource
from mmoral_pipeline.materialize import register_partitions
from mmoral_pipeline.synth import generate


@pytest.fixture()
def small_sources(tmp_path: Path, monkeypatch) -> Path:
    generate(n=4, seed=11, out=tmp_path / "good", fmt="coco", width=700, height=350, scores=True)
    bad = tmp_path / "bad"
    generate(n=2, seed=12, out=bad, fmt="coco", width=700, height=350)
    # corrupt one of the two images: truncated JPEG
    img = sorted((bad / "images").glob("*.jpg"))[0]
    img.write_bytes(img.read_bytes()[:200])
    doc = {
        "sources": [
            {"name": "good", "format": "coco", "root": str(tmp_path / "good"), "shard_size": 2},
            {"name": "bad", "format": "coco", "root": str(bad)},
        ]
    }
    path = tmp_path / "sources.yaml"
    path.write_text(yaml.safe_dump(doc))
    monkeypatch.setenv("MMORAL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MMORAL_SOURCES", str(path))
    return path


def test_ingest_assets_and_checks_materialise(small_sources: Path, tmp_path: Path):
    home = tmp_path / "home"
    with dg.instance_for_test() as instance:
        keys = register_partitions(instance, str(small_sources))
        assert keys == ["good__0000", "good__0001", "bad"]
        assert instance.get_dynamic_partitions(BATCHES) == keys
        resources = {"io_manager": ParquetIOManager(str(home)), "sources": SourcesResource(path=str(small_sources))}
        checks = {}
        for key in keys:
            result = dg.materialize(
                [*ingest_assets, *ingest_checks], partition_key=key, instance=instance, resources=resources
            )
            assert result.success
            for ev in result.get_asset_check_evaluations():
                checks[(key, ev.check_name)] = ev.passed

    # one Parquet file per asset and partition, where the contract says
    for asset in ("raw_images", "raw_annotations", "rejected_inputs"):
        for key in keys:
            assert (home / asset / f"{key}.parquet").exists()
    images = read_table("raw_images", base_dir=str(home), partitions="all")
    rejected = read_table("rejected_inputs", base_dir=str(home), partitions="all")
    assert images.height == 5  # 4 good + 1 intact of the bad source
    assert images["sha256"].n_unique() == 5
    assert set(rejected.filter(pl.col("kind") == "image")["reason"]) == {"image_corrupt"}
    # the corrupt image's annotations are quarantined too, not silently dropped
    assert rejected.filter(pl.col("reason") == "image_rejected").height > 0

    for key in keys:
        assert checks[(key, "inputs_balance")]
        assert checks[(key, "images_decode")]
        assert checks[(key, "boxes_inside_images")]
        assert checks[(key, "fdi_side_consistency")]
