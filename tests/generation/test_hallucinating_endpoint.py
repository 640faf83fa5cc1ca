"""End to end: `mmoral materialize` with the `openai` backend against a local endpoint that corrupts a
fixed share of its replies. Every corrupted item must land in rejected_generations with its reason,
none may reach instruction_samples, and the counts must add up."""

import json
import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import dagster as dg
import polars as pl
import pytest

from mmoral_pipeline.defs.io_manager import read_table
from mmoral_pipeline.domain.attributes import ImageAttributes
from mmoral_pipeline.generation.local_server import HallucinatingLLM, LocalChatServer

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "assets" / "sample"


def _sources(tmp_path: Path) -> Path:
    path = tmp_path / "sources.yaml"
    path.write_text(f"""sources:
  - name: synth_coco
    format: coco
    root: {SAMPLE / 'coco'}
    images: images
    annotations: annotations.json
    shard_size: 12
    options:
      score_field: score
  - name: synth_labelme
    format: labelme
    root: {SAMPLE / 'labelme'}
    options:
      group_id_is_fdi: true
""")
    return path


def _materialize(select: str, env: dict) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "mmoral_pipeline.cli", "materialize", "--select", select, "--quiet"],
                          check=False, capture_output=True, text=True, env=env, timeout=900, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hallucinating")
    home = tmp / "home"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MMORAL_HOME": str(home), "DAGSTER_HOME": str(tmp / "dagster_home"),
           "MMORAL_SOURCES": str(_sources(tmp))}
    for k in ("MMORAL_LLM_BACKEND", "MMORAL_LLM_BASE_URL", "MMORAL_LLM_MODEL", "MMORAL_LLM_API_KEY"):
        env.pop(k, None)
    _materialize("group:ingest or group:attributes", env)
    captions = read_table("location_captions", base_dir=str(home), partitions="all")
    docs = {
        r["image_id"]: ImageAttributes.model_validate_json(r["document"])
        for r in read_table("image_attributes", base_dir=str(home), partitions="all").to_dicts()
    }
    llm = HallucinatingLLM({r["caption"]: docs[r["image_id"]] for r in captions.to_dicts()}, share=0.35, seed=1)
    with LocalChatServer(llm) as server:
        env = {
            **env,
            "MMORAL_LLM_BACKEND": "openai",
            "MMORAL_LLM_BASE_URL": server.url,
            "MMORAL_LLM_MODEL": "hallucinating-local",
            "MMORAL_LLM_API_KEY": "sk-local-test",
        }
        _materialize("group:generation or key:instruction_samples", env)
        requests = server.count()
    tables = {name: read_table(name, base_dir=str(home), partitions="all") for name in
              ("reports", "vqa_items", "dialogues", "attribute_tasks", "rejected_generations", "instruction_samples")}
    return llm, tables, tmp / "dagster_home", requests


def test_every_corruption_is_rejected_with_its_reason_and_none_is_trained_on(run):
    llm, tables, _proc, requests = run
    assert requests > 0
    kinds = {c.kind.removeprefix("repair_") for c in llm.corruptions}
    assert kinds == {"report", "vqa", "dialogue"}, kinds  # every kind of reply was corrupted at least once
    assert len({c.how for c in llm.corruptions}) >= 6
    rejected = tables["rejected_generations"]
    rejected_text = [
        json.dumps(r, default=str) for r in rejected.select("question", "answer", "turns", "options").to_dicts()
    ]
    # what a model would be trained on (rows' `extra` may quote a repaired original's findings: not content)
    content_columns = ("question", "answer", "turns", "options", "messages")
    accepted_text = "\n".join(tables[t].select([c for c in content_columns if c in tables[t].columns]).write_json()
                              for t in ("reports", "vqa_items", "dialogues", "instruction_samples"))
    content = {"grounded_teeth", "grounding", "contradiction", "option_truth"}
    for c in llm.corruptions:
        hits = [i for i, text in enumerate(rejected_text) if c.marker in text]
        assert hits, f"corrupted {c.kind} ({c.how}) not in rejected_generations: {c.marker}"
        reasons = {rejected["rejected_by"][i] for i in hits}
        assert reasons & content, (c, reasons)
        assert all(rejected["reject_reason"][i] for i in hits)
        assert c.marker not in accepted_text, f"corrupted {c.kind} ({c.how}) reached an accepted table: {c.marker}"
    # and the faithful replies pass: every rejected row is a corrupted one
    markers = [c.marker for c in llm.corruptions]
    false_rejections = [
        (rejected["rejected_by"][i], rejected["reject_reason"][i])
        for i, text in enumerate(rejected_text)
        if not any(m in text for m in markers)
    ]
    assert not false_rejections, false_rejections


def _latest_check_metadata(dagster_home: Path) -> dict[str, dict]:
    """partition -> metadata of the latest rejection_rate evaluation, as the run recorded it."""
    from dagster._core.definitions.asset_checks.asset_check_evaluation import AssetCheckEvaluation

    key = dg.AssetCheckKey(dg.AssetKey("rejected_generations"), "rejection_rate")
    out: dict[str, dict] = {}
    with mock.patch.dict(os.environ, {"DAGSTER_HOME": str(dagster_home)}):  # dagster.yaml reads it
        instance = dg.DagsterInstance.from_config(str(dagster_home))
        for record in instance.event_log_storage.get_asset_check_execution_history(key, limit=100):  # newest first
            ev = record.event.dagster_event.event_specific_data if record.event and record.event.dagster_event else None
            partition = ev.partition if isinstance(ev, AssetCheckEvaluation) else None
            partition = partition or instance.get_run_by_id(record.run_id).tags.get("dagster/partition")
            if isinstance(ev, AssetCheckEvaluation) and partition not in out:
                out[partition] = {k: v.value for k, v in ev.metadata.items()}
    return out


def test_rejected_llm_units_are_sent_back_once_and_counts_add_up(run):
    llm, tables, dagster_home, _requests = run
    rejected = tables["rejected_generations"]
    llm_rejected = rejected.filter(pl.col("backend") == "openai")
    extras = [json.loads(e) for e in llm_rejected["extra"].to_list()]
    requested = sum(1 for e in extras if e.get("repair") == "requested")
    assert requested >= len({(c.image_id, c.kind) for c in llm.corruptions if not c.kind.startswith("repair_")})
    repairs = [
        json.loads(e)
        for t in ("reports", "vqa_items", "dialogues", "rejected_generations")
        for e in tables[t]["extra"].to_list()
    ]
    repair_rows = [e for e in repairs if "repair_of" in e]
    assert repair_rows, "no send-back reply became a candidate"
    # a repair is never repaired again: bounded to one round
    repaired_ids = {
        x for e in repair_rows for x in (e["repair_of"] if isinstance(e["repair_of"], list) else [e["repair_of"]])
    }
    assert not any(e.get("repair") == "requested" and "repair_of" in e for e in extras)
    assert repaired_ids <= set(rejected["item_id"].to_list())
    # per partition, as recorded by the run: candidates = accepted + rejected, and the send-back counts match the rows
    recorded = _latest_check_metadata(dagster_home)
    assert set(recorded) == set(tables["reports"]["partition"].unique().to_list())
    figures = {
        "corruptions": len(llm.corruptions),
        "rejected": rejected.height,
        "sent_back": requested,
        "repair_candidates": len(repair_rows),
    }
    for part, meta in recorded.items():
        accepted = sum(
            tables[t].filter(pl.col("partition") == part).height
            for t in ("reports", "vqa_items", "dialogues", "attribute_tasks")
        )
        bad = rejected.filter(pl.col("partition") == part)
        assert meta["candidates"] == accepted + bad.height and meta["rejected"] == bad.height, (part, meta)
        part_extras = [json.loads(e) for e in bad["extra"].to_list()]
        assert sum(v for k, v in meta["repairs"].items() if k.endswith("_requested")) == sum(
            1 for e in part_extras if e.get("repair") == "requested"
        )
        rejected_repairs = sum(1 for e in part_extras if "repair_of" in e)
        assert sum(v for k, v in meta["repairs"].items() if k.endswith("_rejected")) == rejected_repairs
        figures[part] = {"candidates": meta["candidates"], "rejected": meta["rejected"], **meta["repairs"]}
    print("hallucinating endpoint:", json.dumps(figures, sort_keys=True))
    samples = tables["instruction_samples"]
    assert not set(samples["item_id"].to_list()) & set(rejected["item_id"].to_list())
    assert set(samples["backend"].unique().to_list()) <= {"openai", "rules"}
