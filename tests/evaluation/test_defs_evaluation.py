"""benchmark_items / benchmark_results and their checks, materialised in process on a temporary MMORAL_HOME.

The upstream tables are on disk as the IO manager writes them (one batch partition, `demo`); stand-in assets
declare them, so only the evaluation stage runs, reading them through its declared inputs.
"""

from __future__ import annotations

import json
import random
import sys

import dagster as dg
import polars as pl
import pytest
from PIL import Image

from mmoral_pipeline.evaluation.build import attribute_report
from mmoral_pipeline.evaluation.runners import closed_prompt, parse_closed_prompt
from mmoral_pipeline.evaluation.tsv import decode_image, read_closed_tsv, read_open_tsv
from mmoral_pipeline.generation.facts import facts_of
from mmoral_pipeline.generation.local_server import LocalChatServer, Reply
from mmoral_pipeline.generation.location_vqa import build_rule_items
from mmoral_pipeline.generation.offline import vqa_candidates

from .factories import make_attributes
from .tiny_vlm import build_tiny_vlm

N_IMAGES = 48
BENCH = {f"img{s:03d}" for s in range(N_IMAGES) if s % 4 == 1}  # 12 held-out images
PARTITIONED = ("image_attributes", "reports", "vqa_items")


def _stub(name: str, partitioned: bool = True) -> dg.AssetsDefinition:
    """Stand-in for an upstream table already on disk."""
    from mmoral_pipeline.defs.partitions import batch_partitions

    @dg.asset(name=name, partitions_def=batch_partitions if partitioned else None, group_name="upstream")
    def _table() -> pl.DataFrame:
        raise AssertionError("upstream stubs are never materialised here")

    return _table


STUBS = [*(_stub(n) for n in PARTITIONED), _stub("instruction_samples", partitioned=False)]


def _closed_sample(image_id: str, split: str, question: str, options: list[str], answer: str) -> dict:
    return {
        "image_id": image_id,
        "split": split,
        "task_type": "vqa_closed",
        "question_stem": question,
        "options": options,
        "answer_letter": "ABCD"[options.index(answer)],
        "answer": "ABCD"[options.index(answer)],
        "n_turns": 2,
    }


@pytest.fixture()
def home(tmp_path, monkeypatch):
    """48 images (12 held out): attributes, offline reports and closed VQA, instruction_samples with their split."""
    monkeypatch.setenv("MMORAL_HOME", str(tmp_path))
    attrs = [make_attributes(s, width=400, height=200) for s in range(N_IMAGES)]
    images, reports, vqa, samples = [], [], [], []
    for a in attrs:
        img = tmp_path / "img" / a.file_name
        img.parent.mkdir(exist_ok=True)
        Image.new("RGB", (400, 200), (40 + int(a.image_id[3:]) * 3, 60, 60)).save(img)
        images.append(
            {
                "image_id": a.image_id,
                "path": str(img),
                "file_name": a.file_name,
                "source": "demo",
                "partition": "demo",
                "document": json.dumps(a.to_mmoral_json()),
            }
        )
        split = "bench" if a.image_id in BENCH else "train"
        reports.append(
            {
                "item_id": f"rep-{a.image_id}",
                "image_id": a.image_id,
                "task_type": "report",
                "partition": "demo",
                "answer": attribute_report(a).replace("1) Teeth", "1) Generated teeth"),
                "rejected_by": None,
            }
        )
        facts = facts_of(a)
        for i, c in enumerate(vqa_candidates(facts, random.Random(a.image_id))[0]):
            vqa.append(
                {
                    "item_id": f"{a.image_id}-{i}",
                    "image_id": a.image_id,
                    "task_type": "vqa_closed",
                    "partition": "demo",
                    "question": c["question"],
                    "answer": c["answer_text"],
                    "options": c["options"],
                    "dimensions": c["dimensions"],
                    "rejected_by": None,
                }
            )
            samples.append(_closed_sample(a.image_id, split, c["question"], c["options"], c["answer_text"]))
        for r in build_rule_items(facts, random.Random(a.image_id), max_loc_closed=4, max_loc_open=0):
            if r.options:
                samples.append(_closed_sample(a.image_id, split, r.question, r.options, r.answer))
    for name, rows in (("image_attributes", images), ("reports", reports), ("vqa_items", vqa)):
        (tmp_path / name).mkdir()
        pl.DataFrame(rows).write_parquet(tmp_path / name / "demo.parquet")
    pl.DataFrame(samples).write_parquet(tmp_path / "instruction_samples.parquet")
    return tmp_path


def _materialize(selection, config=None, instance=None, endpoints=None):
    from mmoral_pipeline.defs.evaluation import evaluation_assets, evaluation_checks
    from mmoral_pipeline.defs.io_manager import ParquetIOManager
    from mmoral_pipeline.defs.resources import ModelEndpoints

    instance = instance or dg.DagsterInstance.ephemeral()
    if "demo" not in instance.get_dynamic_partitions("batches"):
        instance.add_dynamic_partitions("batches", ["demo"])
        for name in PARTITIONED:  # the tables on disk were materialised (the IO manager's gate reads only those)
            instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=name, partition="demo"))
    keys = [dg.AssetKey(k) for k in selection]
    sel = dg.AssetSelection.assets(*keys) | dg.AssetSelection.checks_for_assets(*keys)
    result = dg.materialize([*STUBS, *evaluation_assets, *evaluation_checks], selection=sel,
                            resources={"io_manager": ParquetIOManager(), "endpoints": endpoints or ModelEndpoints()},
                            run_config=config, instance=instance)
    return result, instance


def _checks(result) -> dict:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def test_defs_import_without_torch():
    import mmoral_pipeline.defs.evaluation as ev

    keys = sorted(k.to_user_string() for a in ev.evaluation_assets for k in a.keys)
    assert keys == ["benchmark_holdout_pool", "benchmark_items", "benchmark_results"]
    checks = sorted(k.name for c in ev.evaluation_checks for k in c.check_keys)
    assert checks == ["closed_set_not_answerable_from_text", "sft_beats_baselines_on_closed", "sft_not_worse_than_base"]
    items = ev.evaluation_assets[0]
    deps = {k.to_user_string() for k in items.asset_deps[dg.AssetKey("benchmark_items")]}
    assert deps == {"image_attributes", "reports", "vqa_items", "instruction_samples"}  # declared inputs, no side reads
    results = ev.evaluation_assets[1]
    assert {k.to_user_string() for k in results.asset_deps[results.key]} == {
        "benchmark_items",
        "instruction_samples",
        "sft_model",
    }
    import subprocess

    code = (
        "import sys, mmoral_pipeline.defs.evaluation; "
        "print(any(m.startswith(('torch', 'transformers')) for m in sys.modules))"
    )
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
        == "False"
    )


def test_benchmark_items_from_declared_inputs(home):
    res, _ = _materialize(["benchmark_items", "benchmark_holdout_pool"])
    mats = {m.asset_key.to_user_string(): m for m in res.asset_materializations_for_node("benchmark_items")}
    md = mats["benchmark_items"].metadata
    assert md["held_out_images"].value == 12 and md["reserve_images"].value == 0
    assert md["holdout_rule"].value == "instruction_samples.split == 'bench'"
    assert md["rejected_by_validator"].value == {}
    assert md["report_answers"].value == {"generated_report": 12, "composed_from_attributes": 0}
    items = pl.read_parquet(home / "benchmark_items.parquet")
    write = items.filter(pl.col("open_kind") == "write_report")
    assert write.height == 12 and all(
        a.startswith("1) Generated teeth") for a in write["answer"]
    )  # the reports table's text
    assert set(write["source"]) == {f"report:rep-{i}" for i in BENCH}
    closed = read_closed_tsv(home / "exports" / "bench" / "closed_ended.tsv")
    assert len(closed) == 60 and len(read_open_tsv(home / "exports" / "bench" / "open_ended.tsv")) == 72
    assert {it.image_id for it in closed} == BENCH and decode_image(closed[0].image).size == (400, 200)
    sel = md["closed_selection"].value
    assert sel["balanced"] and sel["prior_right"] == 15 and md["question_prior"].value["closed_accuracy"] == 25.0
    check = _checks(res)["closed_set_not_answerable_from_text"]
    assert check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["question_prior"].value == 25.0 and check.metadata["most_frequent_letter"].value == 25.0
    pool = pl.read_parquet(home / "benchmark_holdout_pool.parquet")
    assert pool.height == 12 and pool["in_benchmark"].all() and set(pool["closed_items"]) == {5}


def test_text_check_fails_on_a_closed_set_the_prior_passes(home):
    res, _ = _materialize(["benchmark_items"], {"ops": {"benchmark_items": {"config": {"balance_closed": False}}}})
    check = _checks(res)["closed_set_not_answerable_from_text"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["question_prior"].value > 30.0
    assert check.description.startswith("question-wording prior ") and "chance band 20-30 %" in check.description


def test_the_rest_of_the_held_out_pool_is_recorded_as_reserve(home):
    res, _ = _materialize(
        ["benchmark_items", "benchmark_holdout_pool"], {"ops": {"benchmark_items": {"config": {"max_images": 5}}}}
    )
    pool = pl.read_parquet(home / "benchmark_holdout_pool.parquet")
    assert pool.height == 12 and set(pool["image_id"]) == BENCH
    assert dict(pool.group_by("status").len().iter_rows()) == {"benchmark": 5, "reserve: over the image cap": 7}
    assert set(pl.read_parquet(home / "benchmark_items.parquet")["image_id"]) == set(
        pool.filter("in_benchmark")["image_id"]
    )
    mat = res.asset_materializations_for_node("benchmark_items")
    md = next(m for m in mat if m.asset_key == dg.AssetKey("benchmark_items")).metadata
    assert md["reserve_images"].value == 7 and md["held_out_pool"].value == 12


def test_holdout_falls_back_to_split_rule(home):
    from mmoral_pipeline.dataset.split import is_holdout

    pl.DataFrame({"image_id": ["img000"]}).write_parquet(home / "instruction_samples.parquet")  # no split column
    res, _ = _materialize(["benchmark_items"], {"ops": {"benchmark_items": {"config": {"holdout_fraction": 0.5}}}})
    want = {f"img{s:03d}" for s in range(N_IMAGES) if is_holdout(f"img{s:03d}", 0.5)}
    assert set(pl.read_parquet(home / "benchmark_items.parquet")["image_id"]) == want
    assert "closed_set_not_answerable_from_text" not in _checks(res)  # no training split: nothing to judge, skipped


def _check_status(instance, name: str):
    key = dg.AssetCheckKey(dg.AssetKey("benchmark_results"), name)
    return instance.event_log_storage.get_latest_asset_check_execution_by_key([key])[key].status


def test_model_checks_are_skipped_not_passed_when_no_model_ran(home):
    from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

    _, instance = _materialize(["benchmark_items"])
    cfg = {"ops": {"benchmark_results": {"config": {"models": ["random", "most_frequent", "question_prior"]}}}}
    res, instance = _materialize(["benchmark_results"], cfg, instance)
    assert res.success and _checks(res) == {}
    for name in ("sft_beats_baselines_on_closed", "sft_not_worse_than_base"):  # planned, never evaluated: shown skipped
        assert _check_status(instance, name) == AssetCheckExecutionRecordStatus.PLANNED
    df = pl.read_parquet(home / "benchmark_results.parquet")
    prior = df.filter(pl.col("model") == "question_prior")
    assert prior["n_open"][0] == 72 and abs(prior["closed_overall"][0] - 25.0) < 1e-9  # the balanced set: chance


def _reader_server(home, reads_the_xray: dict[str, bool]):
    """A scripted vision model per endpoint model name: it answers right exactly when it is shown the question's own
    X-ray (`reads_the_xray[name]`) or always wrongly / with a non-answer."""
    from mmoral_pipeline.evaluation.frames import items_from_frame

    closed, open_ = items_from_frame(pl.read_parquet(home / "benchmark_items.parquet"))
    gold = {(closed_prompt(it), it.image): it.answer for it in closed}
    truth = {(it.question, it.image): it.answer for it in open_}

    def reply(body: dict, n: int) -> Reply:
        content = body["messages"][-1]["content"]
        if isinstance(content, str):
            return Reply(text="I need the image.")
        image = content[0]["image_url"]["url"].split(",", 1)[1]
        text = content[1]["text"]
        if not reads_the_xray[body["model"]]:
            return Reply(text="I don't know.")
        if parse_closed_prompt(text):
            letter = gold.get((text, image))
            return Reply(text=f"({letter})" if letter else "(A)" if gold else "")
        return Reply(text=truth.get((text, image), "I don't know."))

    return LocalChatServer(reply)


def test_model_checks_through_endpoints(home):
    """Endpoint models named sft / base: one that reads the X-ray passes; one that answers without it fails both."""
    _, instance = _materialize(["benchmark_items"])
    with _reader_server(home, {"reader": True, "guesser": False}) as server:
        from mmoral_pipeline.defs.resources import ModelEndpoint, ModelEndpoints

        cfg = {"ops": {"benchmark_results": {"config": {"models": ["question_prior", "most_frequent"],
                                                        "endpoints": ["sft", "base"]}}}}  # run config only names them

        def endpoints(sft: str, base: str) -> ModelEndpoints:
            return ModelEndpoints(endpoints=[ModelEndpoint(name="sft", base_url=server.url, model=sft),
                                             ModelEndpoint(name="base", base_url=server.url, model=base)])

        res, instance = _materialize(["benchmark_results"], cfg, instance, endpoints("reader", "guesser"))
        checks = _checks(res)
        assert checks["sft_beats_baselines_on_closed"].passed and checks["sft_not_worse_than_base"].passed
        md = checks["sft_beats_baselines_on_closed"].metadata
        assert md["sft"].value == 100.0 and md["sft_other_image"].value < 30.0 and md["question_prior"].value == 25.0
        res, instance = _materialize(["benchmark_results"], cfg, instance, endpoints("guesser", "reader"))
        checks = _checks(res)
        assert not checks["sft_beats_baselines_on_closed"].passed and not checks["sft_not_worse_than_base"].passed
        assert (
            "not 5 points above the question-wording prior (25.0)"
            in checks["sft_beats_baselines_on_closed"].description
        )
        assert checks["sft_not_worse_than_base"].severity == dg.AssetCheckSeverity.WARN
        df = pl.read_parquet(home / "benchmark_results.parquet")
        assert df["model"].to_list() == ["question_prior", "most_frequent", "sft", "sft-text-only", "sft-other-image",
                                         "base", "base-text-only", "base-other-image"]


def test_results_with_tiny_checkpoints(home):
    """The default models on tiny checkpoints where the trainer leaves them: baselines, the constant floor, sft and
    base each with its text-only and other-image runs."""
    import shutil

    _, instance = _materialize(["benchmark_items"])
    closed = read_closed_tsv(home / "exports" / "bench" / "closed_ended.tsv")
    texts = [closed_prompt(it) for it in closed] + ["A", "B", "C", "D"] * 5
    build_tiny_vlm(texts, home / "sft_model" / "latest")
    shutil.copytree(home / "sft_model" / "latest", home / "sft_model" / "latest_base")  # same weights: sft == base
    cfg = {"ops": {"benchmark_results": {"config": {"limit": 8, "max_new_tokens_open": 8, "max_pixels": 64 * 28 * 28}}}}
    res, _ = _materialize(["benchmark_results"], cfg, instance)
    df = pl.read_parquet(home / "benchmark_results.parquet")
    assert df["model"].to_list() == [
        "random",
        "most_frequent",
        "question_prior",
        "constant:I don't know.",
        "sft",
        "sft-text-only",
        "sft-other-image",
        "base",
        "base-text-only",
        "base-other-image",
    ]
    assert df.filter(pl.col("model") == "random")["open_overall"][0] is None
    assert df.filter(pl.col("model") == "sft")["n_open"][0] == 8
    floor = df.filter(pl.col("model") == "constant:I don't know.")
    assert floor["open_overall"][0] == 0.0 and floor["closed_overall"][0] == 0.0  # a non-answer earns nothing
    checks = _checks(res)
    assert checks["sft_not_worse_than_base"].passed  # identical weights score identically
    assert not checks["sft_beats_baselines_on_closed"].passed  # and so not 5 points above its base
    table = res.asset_materializations_for_node("benchmark_results")[0].metadata["results_table"].value
    assert "| sft-other-image |" in table and "| question_prior |" in table
    lines = (home / "benchmark_results" / "predictions_closed.jsonl").read_text().splitlines()
    assert len(lines) == 80 and all("method" in json.loads(x) for x in lines)


def test_benchmark_results_on_official_sample(home, closed_sample_tsv):
    _, instance = _materialize(["benchmark_items"])
    cfg = {
        "ops": {
            "benchmark_results": {"config": {"models": ["most_frequent", "sft"], "tsv_paths": [str(closed_sample_tsv)]}}
        }
    }
    res, _ = _materialize(["benchmark_results"], cfg, instance)
    [mat] = res.asset_materializations_for_node("benchmark_results")
    assert mat.metadata["skipped_models"].value == {"sft": f"no checkpoint at {home / 'sft_model' / 'latest'}"}
    df = pl.read_parquet(home / "benchmark_results.parquet")
    assert df["n_closed"].to_list() == [4] and df["closed_overall"][0] == pytest.approx(50.0)  # answers B, B, C, A
    assert _checks(res) == {}  # the fine-tuned model did not run: its checks are skipped
