"""`mmoral materialize` runs partitioned assets in stages: one that reads every batch waits for all of them."""

from mmoral_pipeline.definitions import defs
from mmoral_pipeline.materialize import CheckLine, MaterializeReport, format_checks, partition_stages


def test_stages_follow_the_all_batch_inputs():
    graph = defs.get_repository_def().asset_graph
    partitioned = {k for k in graph.get_all_asset_keys() if graph.get(k).is_partitioned}
    stages = [{k.to_user_string() for k in s} for s in partition_stages(graph, partitioned)]
    assert {"raw_images", "raw_annotations", "rejected_inputs"} == stages[0]
    # image_copies reads raw_images of every batch: the documents wait until every batch is ingested
    assert {"image_copies", "image_attributes", "location_captions", "reports"} <= stages[1]
    assert stages[2] == {"merged_copies"}  # reads every batch's documents
    assert partition_stages(graph, {k for k in partitioned if k.to_user_string().startswith("raw_")}) == [
        {k for k in partitioned if k.to_user_string().startswith("raw_")}
    ]


def test_a_failed_check_prints_its_description_under_it():
    report = MaterializeReport(checks=[
        CheckLine("raw_annotations", "fdi_side_consistency", "aku", False, "ERROR", "aku: 56 of 117 teeth " + "x " * 80 + "fix it."),
        CheckLine("raw_images", "images_decode", "aku", True, "ERROR", None),
    ])
    lines = format_checks(report).splitlines()
    assert lines[1] == "  FAIL raw_annotations.fdi_side_consistency [aku]" and lines[2].startswith("         aku: 56 of 117 teeth")
    assert lines[-2].endswith("fix it.") and lines[-1] == "  PASS raw_images.images_decode [aku]"
