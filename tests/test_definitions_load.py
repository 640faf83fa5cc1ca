"""The definitions load, and loading them stays cheap (no torch/transformers/trl/datasets)."""

import json
import subprocess
import sys

HEAVY = ["torch", "transformers", "trl", "datasets", "peft", "accelerate"]


def test_definitions_import_does_not_load_heavy_libraries():
    code = (
        "import sys, json; import mmoral_pipeline.definitions as d; "
        "d.defs.get_repository_def(); "
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert loaded == [], f"importing the definitions pulled in {loaded}"


def test_definitions_resolve_every_asset_and_check():
    from mmoral_pipeline.definitions import defs

    repo = defs.get_repository_def()
    keys = {k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()}
    assert {"raw_images", "raw_annotations", "rejected_inputs"} <= keys
    # every asset declares a group and a description
    for node in repo.asset_graph.asset_nodes:
        assert node.group_name and node.group_name != "default", node.key
        assert node.description, node.key


def test_every_check_on_a_batch_asset_is_recorded_per_batch():
    """The fan-in gate reads check results per partition: a check on a partitioned asset without a
    partitions_def is stored without one (Dagster 1.13), so its failures could not gate anything."""
    from mmoral_pipeline.definitions import defs

    graph = defs.get_repository_def().asset_graph
    unpartitioned = [
        key.to_user_string() + "." + key.name
        for key in graph.asset_check_keys
        if graph.get(key.asset_key).partitions_def is not None and graph.get_check_spec(key).partitions_def is None
    ]
    assert unpartitioned == []


def test_no_asset_reads_parquet_behind_dagsters_back():
    """Declared inputs: the Dagster shell never reads MMORAL_HOME tables itself (only the IO manager does)."""
    import re
    from pathlib import Path

    import mmoral_pipeline.defs as shell

    offenders = []
    for path in sorted(Path(shell.__file__).parent.glob("*.py")):
        if path.name in ("io_manager.py",):
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"\bread_table\(|pl\.read_parquet|pq\.read_table", line):
                offenders.append(f"{path.name}:{n}: {line.strip()}")
    assert offenders == []
