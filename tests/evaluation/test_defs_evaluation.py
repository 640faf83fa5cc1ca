"""benchmark_items / benchmark_results materialised in process on a temporary MMORAL_HOME."""

from __future__ import annotations

import json
import sys

import dagster as dg
import polars as pl
import pytest
from PIL import Image

from mmoral_pipeline.dataset.split import is_holdout
from mmoral_pipeline.evaluation.runners import closed_prompt
from mmoral_pipeline.evaluation.tsv import decode_image, read_closed_tsv, read_open_tsv

from .factories import make_attributes
from .tiny_vlm import build_tiny_vlm


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("MMORAL_HOME", str(tmp_path))
    attrs = [make_attributes(s, width=400, height=200) for s in range(12)]
    rows = []
    for a in attrs:
        img = tmp_path / "img" / a.file_name
        img.parent.mkdir(exist_ok=True)
        Image.new("RGB", (400, 200), (60, 60, 60)).save(img)
        rows.append({"image_id": a.image_id, "path": str(img), "file_name": a.file_name, "document": json.dumps(a.to_mmoral_json())})
    (tmp_path / "image_attributes").mkdir()
    pl.DataFrame(rows).write_parquet(tmp_path / "image_attributes" / "demo.parquet")
    bench = ["img002", "img005", "img009"]
    pl.DataFrame({"image_id": [a.image_id for a in attrs], "split": ["bench" if a.image_id in bench else "train" for a in attrs]}
                 ).write_parquet(tmp_path / "instruction_samples.parquet")
    # generated closed VQA (the offline writer's) for held-out img002 and training img003; img005's is a rejected row
    import random

    from mmoral_pipeline.generation.facts import facts_of
    from mmoral_pipeline.generation.offline import vqa_candidates

    vqa = []
    for a, rejected_by in ((attrs[2], None), (attrs[3], None), (attrs[5], "grounded_teeth")):
        for i, c in enumerate(vqa_candidates(facts_of(a), random.Random(0))[0]):
            vqa.append({"item_id": f"{a.image_id}-{i}", "image_id": a.image_id, "task_type": "vqa_closed", "question": c["question"],
                        "answer": c["answer_text"], "options": c["options"], "dimensions": c["dimensions"], "rejected_by": rejected_by})
    (tmp_path / "vqa_items").mkdir()
    pl.DataFrame(vqa).write_parquet(tmp_path / "vqa_items" / "demo.parquet")
    return tmp_path, bench


def _materialize(assets, checks=(), config=None):
    from mmoral_pipeline.defs.io_manager import ParquetIOManager

    return dg.materialize([*assets, *checks], resources={"io_manager": ParquetIOManager()}, run_config=config,
                          instance=dg.DagsterInstance.ephemeral(), raise_on_error=True)


def test_defs_import_without_torch():
    import mmoral_pipeline.defs.evaluation as ev

    assert [a.key.to_user_string() for a in ev.evaluation_assets] == ["benchmark_items", "benchmark_results"]
    assert [c.check_key.name for c in ev.evaluation_checks] == ["sft_not_worse_than_base", "sft_beats_baselines_on_closed"]
    specs = {a.key.to_user_string(): a for a in ev.evaluation_assets}
    deps = {k.to_user_string() for k in specs["benchmark_items"].asset_deps[specs["benchmark_items"].key]}
    assert deps == {"image_attributes", "reports", "vqa_items", "instruction_samples"}
    assert specs["benchmark_items"].group_names_by_key[specs["benchmark_items"].key] == "evaluation"
    import subprocess

    code = "import sys, mmoral_pipeline.defs.evaluation; print(any(m.startswith(('torch', 'transformers')) for m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_benchmark_items_and_results_end_to_end(home):
    from mmoral_pipeline.defs.evaluation import benchmark_items, benchmark_results, sft_not_worse_than_base

    tmp, bench = home
    res = _materialize([benchmark_items])
    [mat] = res.asset_materializations_for_node("benchmark_items")
    assert mat.metadata["held_out_images"].value == 3
    assert mat.metadata["holdout_rule"].value == "instruction_samples.split == 'bench'"
    assert mat.metadata["rejected_by_validator"].value == {}  # every item passed the generation validators
    from_vqa = pl.read_parquet(tmp / "benchmark_items.parquet").filter(pl.col("source").str.starts_with("vqa:"))
    assert set(from_vqa["image_id"]) == {"img002"} and from_vqa.height == mat.metadata["closed_from"].value["generated_vqa"] == 3
    closed = read_closed_tsv(tmp / "exports" / "bench" / "closed_ended.tsv")
    open_ = read_open_tsv(tmp / "exports" / "bench" / "open_ended.tsv")
    assert len(closed) == 15 and len(open_) == 18
    assert {it.image_id for it in closed} == set(bench)
    assert decode_image(closed[0].image).size == (400, 200)
    items = pl.read_parquet(tmp / "benchmark_items.parquet")
    assert items.height == 33 and set(items["kind"]) == {"closed", "open"}

    # tiny "sft" and "base" checkpoints where the trainer would leave them
    texts = [closed_prompt(it) for it in closed] + ["A", "B", "C", "D"] * 5
    import shutil

    build_tiny_vlm(texts, tmp / "sft_model" / "latest")
    shutil.copytree(tmp / "sft_model" / "latest", tmp / "sft_model" / "latest_base")  # same weights: sft == base
    cfg = {"ops": {"benchmark_results": {"config": {
        "models": ["random", "most_frequent", "sft", "base"], "limit": 4, "max_new_tokens_open": 8, "max_pixels": 64 * 28 * 28}}}}
    res = _materialize([benchmark_results], [sft_not_worse_than_base], cfg)
    df = pl.read_parquet(tmp / "benchmark_results.parquet")
    assert df["model"].to_list() == ["random", "most_frequent", "sft", "base"]
    assert df.filter(pl.col("model") == "sft")["n_open"][0] == 4
    assert df.filter(pl.col("model") == "random")["open_overall"][0] is None
    [mat] = res.asset_materializations_for_node("benchmark_results")
    table = mat.metadata["results_table"].value
    assert "| sft |" in table and "| base |" in table and "Extract-fail %" in table
    [check] = res.get_asset_check_evaluations()
    assert check.check_name == "sft_not_worse_than_base" and check.severity == dg.AssetCheckSeverity.WARN
    assert check.passed  # identical weights score identically, so "not worse" holds
    assert {"sft", "base"} <= set(check.metadata)
    lines = (tmp / "benchmark_results" / "predictions_closed.jsonl").read_text().splitlines()
    assert len(lines) == 16 and all("method" in json.loads(x) for x in lines)
    assert (tmp / "benchmark_results" / "dimensions.png").read_bytes()[:4] == b"\x89PNG"


def test_benchmark_results_on_official_sample(home, closed_sample_tsv):
    from mmoral_pipeline.defs.evaluation import benchmark_results

    tmp, _ = home
    cfg = {"ops": {"benchmark_results": {"config": {"models": ["most_frequent", "sft"], "tsv_paths": [str(closed_sample_tsv)]}}}}
    res = _materialize([benchmark_results], [], cfg)
    [mat] = res.asset_materializations_for_node("benchmark_results")
    assert mat.metadata["skipped_models"].value == {"sft": f"no checkpoint at {tmp / 'sft_model' / 'latest'}"}
    df = pl.read_parquet(tmp / "benchmark_results.parquet")
    assert df["n_closed"].to_list() == [4] and df["closed_overall"][0] == pytest.approx(50.0)  # answers B, B, C, A


def test_holdout_falls_back_to_split_rule(home):
    from mmoral_pipeline.defs.evaluation import benchmark_items

    tmp, _ = home
    (tmp / "instruction_samples.parquet").unlink()
    cfg = {"ops": {"benchmark_items": {"config": {"holdout_fraction": 0.5}}}}
    res = _materialize([benchmark_items], [], cfg)
    [mat] = res.asset_materializations_for_node("benchmark_items")
    want = [f"img{s:03d}" for s in range(12) if is_holdout(f"img{s:03d}", 0.5)]
    assert mat.metadata["held_out_images"].value == len(want) > 0
    assert set(pl.read_parquet(tmp / "benchmark_items.parquet")["image_id"]) == set(want)


def test_sft_worse_than_base_warns():
    from mmoral_pipeline.defs.evaluation import sft_not_worse_than_base

    df = pl.DataFrame({"model": ["sft", "base", "random"], "avg": [None, None, None], "closed_overall": [30.0, 40.0, 25.0]})
    r = sft_not_worse_than_base(df)
    assert not r.passed and r.severity == dg.AssetCheckSeverity.WARN and r.metadata["delta"].value == pytest.approx(-10.0)
    df2 = df.with_columns(pl.Series("avg", [45.0, 41.0, None]))
    assert sft_not_worse_than_base(df2).passed  # Avg is preferred over closed accuracy when present
    assert "not both" in sft_not_worse_than_base(df.filter(pl.col("model") != "base")).description


def test_sft_beats_baselines_check():
    from mmoral_pipeline.defs.evaluation import sft_beats_baselines_on_closed

    df = pl.DataFrame({"model": ["random", "most_frequent", "sft", "sft-text-only", "sft-other-image", "base"],
                       "closed_overall": [24.0, 25.4, 38.0, 10.0, 37.0, 0.0]})
    r = sft_beats_baselines_on_closed(df)
    assert r.passed and r.severity == dg.AssetCheckSeverity.WARN
    assert r.metadata["closed_sft_other_image"].value == pytest.approx(37.0) and r.metadata["uses_image_content"].value is True
    worse = df.with_columns(pl.when(pl.col("model") == "sft").then(25.0).otherwise(pl.col("closed_overall")).alias("closed_overall"))
    assert not sft_beats_baselines_on_closed(worse).passed  # not above the most-frequent letter
    assert "not all evaluated" in sft_beats_baselines_on_closed(df.filter(pl.col("model") != "base")).description
