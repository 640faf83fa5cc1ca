"""The generation multi-asset end to end through `dg.materialize` (offline, then an OpenAI-compatible server)."""

import json
import random

import dagster as dg
import polars as pl

from mmoral_pipeline.defs.generation import OUTPUTS, LLMResource, generation_assets, generation_checks
from mmoral_pipeline.defs.io_manager import ParquetIOManager, read_table
from mmoral_pipeline.defs.partitions import batch_partitions
from mmoral_pipeline.generation.facts import facts_of
from mmoral_pipeline.generation.local_server import LocalChatServer, Reply
from mmoral_pipeline.generation.offline import write_dialogue, write_report, write_vqa
from mmoral_pipeline.generation.pipeline import fallback_caption
from mmoral_pipeline.generation.samples import random_attributes

N_IMAGES = 6
DOCS = [random_attributes(random.Random(100 + i), f"dg{i}") for i in range(N_IMAGES)]


@dg.asset(partitions_def=batch_partitions, name="image_attributes")
def stub_image_attributes(context: dg.AssetExecutionContext) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {
                "image_id": d.image_id,
                "source": "synthetic",
                "partition": context.partition_key,
                "file_name": d.file_name,
                "path": "",
                "width": d.width,
                "height": d.height,
                "attribute_row_hash": d.content_hash(),
                "document": d.model_dump_json(),
            }
            for d in DOCS
        ]
    )


@dg.asset(partitions_def=batch_partitions, name="location_captions")
def stub_location_captions(context: dg.AssetExecutionContext, image_attributes: pl.DataFrame) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {
                "image_id": d.image_id,
                "partition": context.partition_key,
                "attribute_row_hash": d.content_hash(),
                "caption": fallback_caption(d),
                "caption_version": "test",
            }
            for d in DOCS
        ]
    )


def _run(tmp_path, llm: LLMResource, instance) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [stub_image_attributes, stub_location_captions, *generation_assets, *generation_checks],
        partition_key="b1",
        resources={"io_manager": ParquetIOManager(str(tmp_path / "home")), "llm": llm},
        instance=instance,
    )


def _meta(result, key: str) -> dict:
    mats = result.asset_materializations_for_node("generate_instructions")
    return next(m.metadata for m in mats if m.asset_key.path[-1] == key)


def test_offline_materialize_twice_second_sends_nothing(tmp_path):
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("batches", ["b1"])
    llm = LLMResource(backend="offline", cache_path=str(tmp_path / "llm_cache.sqlite"))
    first = _run(tmp_path, llm, instance)
    assert first.success
    home = str(tmp_path / "home")
    tables = {name: read_table(name, "b1", base_dir=home) for name in OUTPUTS}
    assert tables["reports"].height == N_IMAGES and tables["dialogues"].height == N_IMAGES
    assert tables["rejected_generations"].height == 0
    assert set(tables["vqa_items"]["task_type"].unique().to_list()) == {
        "vqa_closed",
        "vqa_open",
        "loc_closed",
        "loc_open",
        "count_closed",
    }
    # one schema for every table
    assert len({tuple(t.schema.items()) for t in tables.values()}) == 1
    reports = tables["reports"]
    assert set(reports["backend"].to_list()) == {"offline"} and (reports["run_id"] == first.run_id).all()
    assert not reports["cache_hit"].any()
    assert (
        _meta(first, "reports")["requests_sent"].value == N_IMAGES * 4
    )  # report, audit, vqa, dialogue (nothing sent back)
    assert _meta(first, "reports")["repairs"].value == {}
    checks = {e.check_name: e for e in first.get_asset_check_evaluations()}
    assert checks["rejection_rate"].passed and checks["reports_provenance"].passed and checks["vqa_items_unique"].passed

    second = _run(tmp_path, llm, instance)
    assert second.success
    assert _meta(second, "reports")["requests_sent"].value == 0
    assert _meta(second, "reports")["cache_hits"].value == N_IMAGES * 4
    again = read_table("reports", "b1", base_dir=home)
    assert again["cache_hit"].all() and again["item_id"].to_list() == reports["item_id"].to_list()


def test_openai_resource_materialize_and_rejection_check(tmp_path, monkeypatch):
    """Through LLMResource(backend='openai'): rows say openai, the key never lands anywhere, a model
    that hallucinates in four of six reports fails a strict rejection-rate check, and each rejected
    report is sent back once with the validator's findings (the model then fixes it)."""
    by_caption = {fallback_caption(d): d for d in DOCS}

    def responder(body, n):
        user = body["messages"][1]["content"]
        doc = next(d for c, d in by_caption.items() if c in user)
        f, rng = facts_of(doc), random.Random(n)
        if "was checked against the location caption" in body["messages"][-1]["content"]:
            assert "55" in body["messages"][-1]["content"]  # the findings name the hallucinated tooth
            return Reply(text=write_report(f, rng))
        if user.startswith("Below is the location caption"):
            report = write_report(f, rng)
            if doc.image_id in ("dg0", "dg1", "dg2", "dg3"):  # four of six reports hallucinate a primary tooth
                report = report.replace(
                    "Historical Interventions: ", "Historical Interventions: Tooth 55 has a crown. "
                )
            return Reply(text=report)
        if user.startswith("You are auditing"):
            return Reply(text=json.dumps({"verdict": "no revision needed", "revised_report": None, "revision_log": []}))
        if user.startswith("From the location caption"):
            return Reply(text=json.dumps(write_vqa(f, rng, 3, 2)))
        return Reply(text=json.dumps(write_dialogue(f, rng, 8)))

    monkeypatch.setenv("MMORAL_LLM_API_KEY", "sk-test-secret-123")
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("batches", ["b1"])
    with LocalChatServer(responder) as server:
        llm = LLMResource(
            backend="openai",
            base_url=server.url,
            api_key=dg.EnvVar("MMORAL_LLM_API_KEY"),
            model="local-model",
            cache_path=str(tmp_path / "llm_cache.sqlite"),
            max_concurrency=4,
            timeout_s=10,
            price_prompt_per_1k=0.001,
            price_completion_per_1k=0.002,
        )
        result = dg.materialize(
            [stub_image_attributes, stub_location_captions, *generation_assets, *generation_checks],
            partition_key="b1",
            resources={"io_manager": ParquetIOManager(str(tmp_path / "home")), "llm": llm},
            instance=instance,
            run_config={"ops": {"generate_instructions": {"config": {"max_rejection_rate": 0.005}}}},
            raise_on_error=False,
        )
    home = str(tmp_path / "home")
    rejected = read_table("rejected_generations", "b1", base_dir=home)
    assert sorted(rejected.filter(pl.col("task_type") == "report")["image_id"].to_list()) == [
        "dg0",
        "dg1",
        "dg2",
        "dg3",
    ]
    assert set(rejected["rejected_by"].to_list()) == {"grounded_teeth"}
    assert all("[55]" in r for r in rejected["reject_reason"].to_list())
    assert {json.loads(e)["repair"] for e in rejected["extra"].to_list()} == {"requested"}
    reports = read_table("reports", "b1", base_dir=home)
    assert sorted(reports["image_id"].to_list()) == [f"dg{i}" for i in range(6)] and set(
        reports["backend"].to_list()
    ) == {"openai"}
    repaired = {json.loads(e).get("repair_of") for e in reports["extra"].to_list()} - {None}
    assert repaired == set(rejected["item_id"].to_list())
    meta = _meta(result, "reports")
    assert meta["prompt_tokens"].value > 0 and meta["cost_usd"].value > 0
    assert meta["repairs"].value == {"reports_accepted": 4, "reports_requested": 4}
    check = next(e for e in result.get_asset_check_evaluations() if e.check_name == "rejection_rate")
    rate = check.metadata["rate"].value
    assert 0.005 < rate < 0.2 and not check.passed  # above the configured 0.5 % (the default 20 % would pass)
    assert check.metadata["by_validator_json"].value == {"grounded_teeth": 4}
    # the key is nowhere: not in Parquet, not in metadata, not in the event log
    blobs = [read_table(name, "b1", base_dir=home).write_json() for name in OUTPUTS]
    blobs += [str(e) for e in instance.all_logs(result.run_id)]
    assert all("sk-test-secret-123" not in b for b in blobs)
