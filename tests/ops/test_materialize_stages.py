"""`mmoral materialize` runs partitioned assets in stages: one that reads every batch waits for all of them."""

from mmoral_pipeline.definitions import defs
from mmoral_pipeline.materialize import CheckLine, MaterializeReport, format_checks, run_phases


def test_stages_follow_the_all_batch_inputs_and_the_unpartitioned_assets_between_them():
    graph = defs.get_repository_def().asset_graph
    every = set(graph.get_all_asset_keys())
    phases = [(partitioned, {k.to_user_string() for k in keys}) for partitioned, keys in run_phases(graph, every)]
    assert phases[0] == (True, {"raw_images", "raw_annotations", "rejected_inputs"})
    # the expert learns from every batch's labels, then labels the batches
    assert phases[1] == (False, {"expert_model"})
    # image_copies reads raw_images of every batch, the documents read every batch's boxes (copies of an X-ray
    # in other sources): the documents wait until every batch is ingested and labelled
    assert phases[2] == (True, {"expert_annotations", "expert_coverage", "image_copies"})
    assert phases[3][0] and {"image_attributes", "location_captions", "reports"} <= phases[3][1]
    assert not phases[4][0] and {"instruction_samples", "sft_model", "benchmark_results"} <= phases[4][1]
    assert phases[5] == (True, {"merged_copies"})  # reads every batch's documents
    raws = {k for k in every if k.to_user_string().startswith("raw_")}
    assert run_phases(graph, raws) == [(True, raws)]
    without_expert = {k for k in every if graph.get(k).is_partitioned}
    partitioned_only = [{k.to_user_string() for k in keys} for _, keys in run_phases(graph, without_expert)]
    assert partitioned_only[0] == {
        "raw_images",
        "raw_annotations",
        "rejected_inputs",
        "expert_annotations",
        "expert_coverage",
    }
    assert {"image_copies", "image_attributes"} <= partitioned_only[1] and partitioned_only[2] == {"merged_copies"}


def test_a_failed_check_prints_its_description_under_it():
    report = MaterializeReport(
        checks=[
            CheckLine(
                "raw_annotations",
                "fdi_side_consistency",
                "aku",
                False,
                "ERROR",
                "aku: 56 of 117 teeth " + "x " * 80 + "fix it.",
            ),
            CheckLine("raw_images", "images_decode", "aku", True, "ERROR", None),
        ]
    )
    lines = format_checks(report).splitlines()
    assert lines[1] == "  FAIL raw_annotations.fdi_side_consistency [aku]" and lines[2].startswith(
        "         aku: 56 of 117 teeth"
    )
    assert lines[-2].endswith("fix it.") and lines[-1] == "  PASS raw_images.images_decode [aku]"


def test_materialize_config_must_be_a_mapping(tmp_path, capsys):
    """`mmoral materialize --config FILE` takes Dagster's run config form; anything else is refused before
    a run starts."""
    from mmoral_pipeline.cli import main

    bad = tmp_path / "run.yaml"
    bad.write_text("- sft_model\n")
    assert main(["materialize", "--config", str(bad)]) == 2
    assert "a run config is a mapping" in capsys.readouterr().err
