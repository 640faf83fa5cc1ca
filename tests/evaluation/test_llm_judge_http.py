"""LLM judge and endpoint runner against a real local OpenAI-compatible HTTP server (real `openai` client)."""

from __future__ import annotations

import pytest

from mmoral_pipeline.evaluation.backends import MinimalOpenAIBackend
from mmoral_pipeline.evaluation.bench import ModelRun, score_run
from mmoral_pipeline.evaluation.items import ClosedItem, OpenItem
from mmoral_pipeline.evaluation.judge import LLMJudge, load_judge_template, parse_judge_score
from mmoral_pipeline.evaluation.runners import ChatRunner


OPEN = [
    OpenItem(index="1", question="Which tooth has caries?", answer="Caries on tooth 36.", category="Teeth,Patho"),
    OpenItem(index="2", question="Describe the jaw.", answer="No bone loss.", category="Jaw"),
    OpenItem(index="3", question="Write the report.", answer="1) ... 2) ... 3) ...", category="Report"),
]


def test_llm_judge_caches_scores_and_records_version(endpoint, tmp_path):
    server, url = endpoint
    backend = MinimalOpenAIBackend(base_url=url, model="judge-model", api_key="k")
    cache = tmp_path / "judge.jsonl"
    judge = LLMJudge(backend, cache_path=cache)
    run = ModelRun(model="m", open_outputs=["Caries on tooth 36.", "Bone loss.", ""])
    first = score_run(run, [], OPEN, judge)
    assert len(server.requests) == 3
    assert [p.score for p in first.open] == [1.0, 0.4, 0.4]
    assert first.scores.judge == "openai:judge-model"
    assert first.scores.judge_prompt_version == load_judge_template()[1]
    assert all(r["temperature"] == 0.0 for r in server.requests)
    # second scoring (fresh judge object, same cache file): zero requests, same result
    again = score_run(run, [], OPEN, LLMJudge(MinimalOpenAIBackend(base_url=url, model="judge-model"), cache_path=cache))
    assert len(server.requests) == 3
    assert again.scores == first.scores and all(p.cache_hit for p in again.open)


def test_llm_judge_spread_over_repeats(endpoint, tmp_path):
    server, url = endpoint
    judge = LLMJudge(MinimalOpenAIBackend(base_url=url, model="judge-model"), cache_path=tmp_path / "c.jsonl", temperature=0.7)
    run = ModelRun(model="m", open_outputs=["x", "y", "z"])
    res = score_run(run, [], OPEN, judge, repeats=3)
    assert res.scores.open_spread == pytest.approx([40.0, 50.0, 60.0])
    assert len(server.requests) == 9 and {r.get("seed") for r in server.requests} == {None, 1, 2}


def test_judge_rubric_renders_inputs():
    text, version = load_judge_template()
    assert "{{ prediction }}" in text and version.startswith("judge_open@")
    assert parse_judge_score("reasoning...\nScore: 0.7") == 0.7
    assert parse_judge_score("Score: 0.73") == 0.7
    assert parse_judge_score("no number here") is None


def test_chat_runner_sends_base64_data_urls_and_text_only(endpoint, closed_sample_tsv):
    from mmoral_pipeline.evaluation.tsv import read_closed_tsv

    server, url = endpoint
    items: list[ClosedItem] = read_closed_tsv(closed_sample_tsv)
    backend = MinimalOpenAIBackend(base_url=url, model="vlm")
    outs = ChatRunner(backend).answer_closed(items)
    assert outs == ["(B)"] * 4
    contents = [r["messages"][0]["content"] for r in server.requests]  # arrival order varies (concurrent)
    assert all(c[0]["image_url"]["url"].startswith("data:image/jpeg;base64,/9j/") for c in contents)
    assert any("Options:\nA. 28\nB. 31\nC. 32\nD. 34" in c[1]["text"] for c in contents)
    n = len(server.requests)
    text_only = ChatRunner(backend, use_images=False)
    assert text_only.name == "vlm-text-only"
    res = score_run(ModelRun(model=text_only.name, closed_outputs=text_only.answer_closed(items)), items, [])
    assert all(isinstance(r["messages"][0]["content"], str) for r in server.requests[n:])
    assert res.scores.extraction_methods == {"letter": 4}


def test_endpoint_errors_become_failed_extractions(tmp_path):
    backend = MinimalOpenAIBackend(base_url="http://127.0.0.1:9/v1", model="down", max_retries=0, timeout_s=2)
    items = [ClosedItem(index="1", question="q", options=["a", "b", "c", "d"], answer="A", category="Teeth")]
    runner = ChatRunner(backend)
    res = score_run(ModelRun(model="down", closed_outputs=runner.answer_closed(items)), items, [])
    assert runner.errors == 1 and res.scores.extraction_failure_rate == 100.0
