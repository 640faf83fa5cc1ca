"""Through a real Dagster instance: expert_model trains out of process (Pipes), its floor check gates
expert_annotations, and the experts' boxes reach attributes, reports and lineage of an `images` source."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import yaml

from mmoral_pipeline.cli import main as mmoral
from mmoral_pipeline.dataset.lineage import read_annotations
from mmoral_pipeline.defs.attributes import attributes_assets, attributes_checks
from mmoral_pipeline.defs.experts import experts_assets, experts_resources
from mmoral_pipeline.defs.generation import LLMResource
from mmoral_pipeline.defs.ingest import ingest_assets, ingest_checks
from mmoral_pipeline.defs.io_manager import ParquetIOManager, read_table
from mmoral_pipeline.defs.partitions import BATCHES
from mmoral_pipeline.defs.resources import SourcesResource
from mmoral_pipeline.synth.generate import generate

from .conftest import TINY_CATEGORIES

TINY_CONFIG = {
    "image_size": 256, "width": 8, "fpn_channels": 32, "categories": TINY_CATEGORIES, "min_instances": 3,
    "max_steps": 60, "warmup_steps": 5, "threads": 1, "cover_min_ap50": 0.0, "map50_floor": 0.0, "export_onnx": False,
}


@pytest.fixture()
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    home = tmp_path / "home"
    monkeypatch.setenv("MMORAL_HOME", str(home))
    generate(40, seed=3, out=tmp_path / "labelled", fmt="coco", width=400, height=200)
    generate(4, seed=9, out=tmp_path / "clinic", fmt="coco", width=400, height=200)  # labels withheld: format images
    sources = tmp_path / "sources.yaml"
    sources.write_text(yaml.safe_dump({"sources": [
        {"name": "labelled", "format": "coco", "root": "labelled"},
        {"name": "clinic", "format": "images", "root": "clinic", "images": "images", "experts": ["expert_model"]},
    ]}))
    resources = {
        "io_manager": ParquetIOManager(str(home)),
        "sources": SourcesResource(path=str(sources)),
        "llm": LLMResource(backend="offline", cache_path=str(tmp_path / "llm.sqlite")),
        **experts_resources,
    }
    return home, resources


def _all_assets():
    from mmoral_pipeline.defs.dataset import dataset_checks, instruction_samples
    from mmoral_pipeline.defs.generation import generation_assets, generation_checks

    return [*ingest_assets, *ingest_checks, *experts_assets, *attributes_assets, *attributes_checks, *generation_assets,
            *generation_checks, instruction_samples, *dataset_checks]


def _materialize(instance, resources, selection, partition=None, run_config=None) -> dg.ExecuteInProcessResult:
    sel = dg.AssetSelection.assets(*selection)
    return dg.materialize(
        _all_assets(), selection=sel | dg.AssetSelection.checks_for_assets(*selection), partition_key=partition,
        instance=instance, resources=resources, run_config=run_config, raise_on_error=False,
    )


def _train(instance, resources, **over) -> dg.ExecuteInProcessResult:
    return _materialize(
        instance, resources, ["expert_model"], run_config={"ops": {"expert_model": {"config": {**TINY_CONFIG, **over}}}}
    )


def test_trained_expert_labels_an_images_source_end_to_end(world):
    home, resources = world
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(BATCHES, ["labelled", "clinic"])
        for key in ("labelled", "clinic"):
            assert _materialize(instance, resources, ["raw_images", "raw_annotations", "rejected_inputs"], key).success
        result = _train(instance, resources)
        assert result.success
        md = result.asset_materializations_for_node("expert_model")[0].metadata
        assert Path(md["checkpoint_path"].value).is_dir() and md["evaluator"].value == "pycocotools"
        assert md["sources"].value == ["labelled"]  # the images source has nothing to learn from
        assert 0.0 <= md["map50"].value <= 1.0 and md["train_images_per_s"].value > 0
        [check] = result.get_asset_check_evaluations()
        assert check.check_name == "expert_map_floor" and check.passed
        assert (home / "expert_model" / "latest" / "expert.json").exists()

        per_batch = [
            "expert_annotations",
            "expert_coverage",
            "image_copies",
            "image_attributes",
            "tooth_attributes",
            "annotation_outcomes",
            "location_captions",
            "reports",
            "vqa_items",
            "dialogues",
            "attribute_tasks",
            "rejected_generations",
        ]
        run = _materialize(instance, resources, per_batch, "clinic")
        assert run.success
        checks = {e.check_name: e.passed for e in run.get_asset_check_evaluations()}
        assert checks["experts_ran_on_every_image"] and checks["no_finding_lost"]
        ann_md = run.asset_materializations_for_node("expert_annotations_batch")
        by_key = {m.asset_key.to_user_string(): m.metadata for m in ann_md}
        assert by_key["expert_annotations"]["images_per_s"].value > 0
        assert by_key["expert_annotations"]["device"].value == "cpu"

        boxes = read_table("expert_annotations", "clinic", base_dir=str(home))
        coverage = read_table("expert_coverage", "clinic", base_dir=str(home))
        assert {"image_id", "category", "tooth", "box", "score", "expert", "expert_version"} <= set(boxes.columns)
        assert boxes.height > 0 and boxes["score"].min() > 0.3
        assert boxes.filter(pl.col("category") == "tooth")["tooth"].null_count() == 0
        assert coverage.height == 4 and all(set(a) == set(TINY_CATEGORIES) for a in coverage["assessed"])

        # the experts' boxes are the images' annotations: documents cite them, lineage names the expert
        docs = read_table("image_attributes", "clinic", base_dir=str(home))
        expert_ids = set(boxes["annotation_id"])
        cited = {aid for blob in docs["document"] for t in json.loads(blob)["teeth"] for aid in t["annotation_ids"]}
        assert cited and cited <= expert_ids
        joined = read_annotations(lambda name: read_table(name, base_dir=str(home), partitions="all"))
        mine = joined.filter(pl.col("annotation_id").is_in(list(cited)))
        assert mine["expert"].unique().to_list() == [f"mmoral-expert@{md['expert_version'].value}"]
        assert (
            joined.filter(pl.col("source") == "labelled")["expert"].null_count()
            == joined.filter(pl.col("source") == "labelled").height
        )
        assert read_table("reports", "clinic", base_dir=str(home)).height == 4
        # the dataset's referential check finds the experts' boxes the documents cite (no orphan annotation)
        dataset = _materialize(instance, resources, ["instruction_samples", "dropped_samples"])
        integrity = {e.check_name: e for e in dataset.get_asset_check_evaluations()}["referential_integrity"]
        assert integrity.passed, integrity.metadata["problems"].value

        # the commands: the withheld labels against the reports' statements, and the expert scored on a labelled source
        out = home.parent
        assert (
            mmoral(
                [
                    "expert",
                    "compare",
                    "--source",
                    "clinic",
                    "--truth-root",
                    str(out / "clinic"),
                    "--home",
                    str(home),
                    "--json",
                    str(out / "compare.json"),
                    "--sheet",
                    str(out / "sheet.png"),
                ]
            )
            == 0
        )
        compared = json.loads((out / "compare.json").read_text())
        assert compared["images"] == 4 and compared["assessed"] == TINY_CATEGORIES
        assert compared["per_category"]["tooth"]["true"] > 0 and compared["unsaid"]  # findings: not assessed, unsaid
        assert (out / "sheet.png").read_bytes()[:4] == b"\x89PNG"
        assert mmoral(["expert", "evaluate", md["checkpoint_path"].value, "--sources", str(out / "sources.yaml"),
                       "--source", "labelled", "--json", str(out / "eval.json")]) == 0
        evaluated = json.loads((out / "eval.json").read_text())["sources"]["labelled"]
        assert (
            evaluated["images"] == 40
            and 0.0 <= evaluated["tooth_recall_right_number"] <= evaluated["tooth_recall_any_number"]
        )

        # a labelled source without experts gets empty expert tables and its own labels only
        assert _materialize(instance, resources, ["expert_annotations", "expert_coverage"], "labelled").success
        assert read_table("expert_annotations", "labelled", base_dir=str(home)).height == 0


def test_an_expert_below_its_floor_may_not_label_data(world):
    home, resources = world
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(BATCHES, ["labelled", "clinic"])
        for key in ("labelled", "clinic"):
            assert _materialize(instance, resources, ["raw_images", "raw_annotations", "rejected_inputs"], key).success
        result = _train(instance, resources, max_steps=2, map50_floor=1.0)
        [check] = result.get_asset_check_evaluations()
        assert check.check_name == "expert_map_floor" and not check.passed
        assert check.metadata["floor"].value == 1.0
        run = _materialize(instance, resources, ["expert_annotations", "expert_coverage"], "clinic")
        assert not run.success
        failure = next(e for e in run.all_events if e.event_type_value == "STEP_FAILURE")
        assert "may not label data" in failure.step_failure_data.error.message
        assert "expert_map_floor failed" in failure.step_failure_data.error.message
        assert not (home / "expert_annotations" / "clinic.parquet").exists()
