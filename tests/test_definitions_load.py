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
