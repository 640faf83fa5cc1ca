"""In-process materialisation: ingest -> attributes -> captions (+ checks) on a temporary instance."""

from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import yaml

from mmoral_pipeline.attributes.caption import CAPTION_VERSION
from mmoral_pipeline.defs.attributes import attributes_assets, attributes_checks
from mmoral_pipeline.defs.experts import expert_annotations_batch
from mmoral_pipeline.defs.ingest import ingest_assets
from mmoral_pipeline.defs.io_manager import ParquetIOManager, read_table
from mmoral_pipeline.defs.partitions import BATCHES
from mmoral_pipeline.defs.resources import SourcesResource
from mmoral_pipeline.domain.attributes import ImageAttributes
from mmoral_pipeline.synth import generate


@pytest.fixture()
def synth_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    generate(n=3, seed=21, out=tmp_path / "synth", fmt="coco", width=700, height=350, scores=True)
    path = tmp_path / "sources.yaml"
    path.write_text(yaml.safe_dump({"sources": [{"name": "synth", "format": "coco", "root": str(tmp_path / "synth"),
                                                 "options": {"score_field": "score"}}]}))
    monkeypatch.setenv("MMORAL_HOME", str(tmp_path / "home"))
    return path


def _run(instance: dg.DagsterInstance, home: Path, sources: Path, run_config: dict | None = None,
         groups: tuple[str, ...] = ("ingest", "attributes")) -> dg.ExecuteInProcessResult:
    resources = {"io_manager": ParquetIOManager(str(home)), "sources": SourcesResource(path=str(sources))}
    return dg.materialize(
        [*ingest_assets, expert_annotations_batch, *attributes_assets, *attributes_checks],
        partition_key="synth",
        instance=instance,
        resources=resources,
        run_config=run_config,
        selection=dg.AssetSelection.groups(*groups),
    )


def test_attributes_materialise_with_checks_and_config(synth_sources: Path, tmp_path: Path):
    home = tmp_path / "home"
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(BATCHES, ["synth"])
        result = _run(instance, home, synth_sources)
        assert result.success
        evaluations = {ev.check_name: ev.passed for ev in result.get_asset_check_evaluations()}
        mats = {m.asset_key.to_user_string(): m for m in result.get_asset_materialization_events()}
        outcomes_meta = result.asset_materializations_for_node("attributes_batch")
        default = read_table("annotation_outcomes", base_dir=str(home), partitions="all")
        # thresholds are run config (launchpad): a stricter one drops more, under its own name
        strict_config = {"ops": {"attributes_batch": {"config": {"finding_threshold": 0.95}}}}
        assert _run(instance, home, synth_sources, strict_config, groups=("attributes",)).success
        strict = read_table("annotation_outcomes", base_dir=str(home), partitions="all")

    assert {"no_finding_lost", "fdi_ids_valid", "no_tooth_twice", "captions_match_attributes"} <= set(evaluations)
    assert all(
        evaluations[k] for k in ("no_finding_lost", "fdi_ids_valid", "no_tooth_twice", "captions_match_attributes")
    )
    assert {"image_attributes", "tooth_attributes", "annotation_outcomes", "location_captions"} <= set(mats)
    chart = next(m for m in outcomes_meta if m.asset_key.to_user_string() == "annotation_outcomes").metadata[
        "kept_per_class_chart"
    ]
    assert "data:image/png;base64," in chart.value

    images = read_table("image_attributes", base_dir=str(home), partitions="all")
    teeth = read_table("tooth_attributes", base_dir=str(home), partitions="all")
    captions = read_table("location_captions", base_dir=str(home), partitions="all")
    raw = read_table("raw_annotations", base_dir=str(home), partitions="all")
    outcomes = read_table("annotation_outcomes", base_dir=str(home), partitions="all")
    assert images.height == 3 and captions.height == 3
    assert outcomes.height == raw.height
    # the nested struct column survives Parquet
    assert teeth.schema["conditions"] == pl.List(
        pl.Struct(
            {
                "category": pl.String,
                "bbox": pl.List(pl.Float64),
                "score": pl.Float64,
                "type": pl.String,
                "annotation_ids": pl.List(pl.String),
            }
        )
    )
    for row in images.iter_rows(named=True):
        doc = ImageAttributes.model_validate_json(row["document"])
        assert doc.content_hash() == row["attribute_row_hash"]
        assert row["n_teeth"] == len(doc.teeth) == teeth.filter(pl.col("image_id") == row["image_id"]).height
    assert set(captions["caption_version"]) == {CAPTION_VERSION}
    assert captions["attribute_row_hash"].to_list() == images["attribute_row_hash"].to_list()

    n_default = default.filter(pl.col("outcome") == "dropped:finding_threshold").height
    n_strict = strict.filter(pl.col("outcome") == "dropped:finding_threshold").height
    assert n_strict > n_default and strict.height == default.height
