"""LLM judge and endpoint runner over real HTTP: the generation package's OpenAIBackend (official
`openai` client) behind its CachedBackend, against its LocalChatServer on 127.0.0.1."""

from __future__ import annotations

import base64
import socket
import threading

import pytest

from mmoral_pipeline.evaluation.backends import openai_backend
from mmoral_pipeline.evaluation.bench import ModelRun, make_judge, score_run
from mmoral_pipeline.evaluation.items import ClosedItem, OpenItem
from mmoral_pipeline.evaluation.judge import LLMJudge, load_judge_template, parse_judge_score
from mmoral_pipeline.evaluation.runners import ChatRunner
from mmoral_pipeline.generation.backends import CachedBackend
from mmoral_pipeline.generation.cache import ResponseCache
from mmoral_pipeline.generation.local_server import LocalChatServer, Reply
from mmoral_pipeline.generation.openai_backend import OpenAIBackend
from mmoral_pipeline.generation.types import ChatRequest

from .conftest import bodies, scripted_reply

OPEN = [
    OpenItem(index="1", question="Which tooth has caries?", answer="Caries on tooth 36.", category="Teeth,Patho"),
    OpenItem(index="2", question="Describe the jaw.", answer="No bone loss.", category="Jaw"),
    OpenItem(index="3", question="Write the report.", answer="1) ... 2) ... 3) ...", category="Report"),
]
FAST = {"backoff_base_s": 0.01, "backoff_cap_s": 0.05}  # keep retry waits short in tests


def test_openai_backend_is_the_generation_backend_behind_the_sqlite_cache(tmp_path):
    b = openai_backend("http://127.0.0.1:1/v1", "m", cache_dir=tmp_path)
    assert isinstance(b, CachedBackend) and isinstance(b.inner, OpenAIBackend)
    assert isinstance(b.cache, ResponseCache) and b.cache.path == tmp_path / "llm_cache.sqlite"
    assert (b.name, b.model) == ("openai", "m")


def test_llm_judge_caches_scores_and_records_version(endpoint, tmp_path):
    server, url = endpoint
    cache = tmp_path / "llm_cache.sqlite"
    judge = LLMJudge(openai_backend(url, "judge-model", cache_path=cache))
    run = ModelRun(model="m", open_outputs=["Caries on tooth 36.", "Bone loss.", ""])
    first = score_run(run, [], OPEN, judge)
    assert server.count() == 3 and judge.requests_sent == 3
    assert [p.score for p in first.open] == [1.0, 0.4, 0.4]
    assert first.scores.judge == "openai:judge-model"
    assert first.scores.judge_prompt_version == load_judge_template()[1]
    assert all(b["temperature"] == 0.0 and b["model"] == "judge-model" for b in bodies(server))
    assert len(ResponseCache(cache)) == 3  # the project's one cache, not a judge-private file
    # second scoring (fresh judge and backend, same cache file): zero HTTP requests, same result
    again_judge = LLMJudge(openai_backend(url, "judge-model", cache_path=cache))
    again = score_run(run, [], OPEN, again_judge)
    assert server.count() == 3 and again_judge.requests_sent == 0
    assert again.scores == first.scores and all(p.cache_hit for p in again.open)
    # a bare backend is wrapped in the same cache: still nothing sent
    bare = LLMJudge(OpenAIBackend(model="judge-model", base_url=url), cache_path=cache)
    assert [s.score for s in bare.score([o.question for o in OPEN], [o.answer for o in OPEN], run.open_outputs)] == [
        1.0,
        0.4,
        0.4,
    ]
    assert server.count() == 3
    with pytest.raises(ValueError):
        LLMJudge(openai_backend(url, "judge-model", cache_path=cache), cache_path=tmp_path / "other.sqlite")


def test_llm_judge_spread_over_repeats_uses_distinct_requests(endpoint, tmp_path):
    server, url = endpoint
    cache = tmp_path / "c.sqlite"
    judge = LLMJudge(openai_backend(url, "judge-model", cache_path=cache), temperature=0.7)
    run = ModelRun(model="m", open_outputs=["x", "y", "z"])
    res = score_run(run, [], OPEN, judge, repeats=3)
    # each repeat reached the server (not served repeat 0's cached answer): 0.4, 0.5, 0.6 per item
    assert res.scores.open_spread == pytest.approx([40.0, 50.0, 60.0])
    assert server.count() == 9 and {b.get("seed") for b in bodies(server)} == {None, 1, 2}
    assert len(ResponseCache(cache)) == 9
    again = score_run(
        run, [], OPEN, LLMJudge(openai_backend(url, "judge-model", cache_path=cache), temperature=0.7), repeats=3
    )
    assert server.count() == 9 and again.scores.open_spread == res.scores.open_spread


def test_judge_rubric_renders_inputs():
    text, version = load_judge_template()
    assert "{{ prediction }}" in text and version.startswith("judge_open@")
    assert parse_judge_score("reasoning...\nScore: 0.7") == 0.7
    assert parse_judge_score("Score: 0.73") == 0.7
    assert parse_judge_score("no number here") is None


def test_retries_on_500_and_429_are_observed_at_the_server(tmp_path):
    tries: dict[str, int] = {}
    lock = threading.Lock()

    def flaky(body: dict, n: int) -> Reply:  # each distinct request: 500, then 429, then the answer
        key = str(body["messages"])
        with lock:
            k = tries[key] = tries.get(key, 0) + 1
        if k == 1:
            return Reply(status=500, text="boom", headers={"Retry-After": "0"})
        if k == 2:
            return Reply(status=429, text="slow down", headers={"Retry-After": "0"})
        return scripted_reply(body, n)

    with LocalChatServer(flaky) as server:
        backend = openai_backend(server.url, "judge-model", cache_path=tmp_path / "c.sqlite", **FAST)
        scores = LLMJudge(backend).score(["q1", "q2"], ["a", "b"], ["a", "c"])
        assert [s.score for s in scores] == [1.0, 0.4] and not any(s.parse_failed for s in scores)
        statuses = sorted(r.status for r in server.received)
        assert statuses == [200, 200, 429, 429, 500, 500]
        assert backend.inner.stats["retries"] == 4 and backend.inner.stats["rate_limited"] == 2
        assert backend.inner.stats["server_errors"] == 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again: nothing listens there


def test_unreachable_endpoint_gives_a_clear_error_not_a_crash(tmp_path):
    url = f"http://127.0.0.1:{_free_port()}/v1"
    cache = tmp_path / "c.sqlite"
    backend = openai_backend(url, "down", cache_path=cache, max_retries=1, timeout_s=2, **FAST)
    items = [ClosedItem(index="1", question="q", options=["a", "b", "c", "d"], answer="A", category="Teeth")]
    runner = ChatRunner(backend)
    res = score_run(ModelRun(model="down", closed_outputs=runner.answer_closed(items)), items, [])
    assert runner.errors == 1 and res.scores.extraction_failure_rate == 100.0
    [resp] = backend.complete([ChatRequest(messages=[{"role": "user", "content": "hi"}])])
    assert resp.error is not None and resp.error.startswith("failed after 2 attempts: connection error")
    judged = make_judge(url, "down", cache_path=str(cache))
    judged.backend.inner.max_retries, judged.backend.inner.backoff_base_s = 0, 0.01
    [s] = judged.score(["q"], ["a"], ["a"])
    assert s.parse_failed and s.score == 0.0 and "connection error" in s.rationale
    assert len(ResponseCache(cache)) == 0  # failures are never cached: the next run tries again


def _jpeg_b64() -> str:
    from PIL import Image

    from mmoral_pipeline.evaluation.tsv import encode_image_jpeg

    return encode_image_jpeg(Image.new("RGB", (64, 32), (90, 120, 150)))


def test_chat_runner_sends_images_as_base64_jpeg_data_urls(endpoint, tmp_path):
    server, url = endpoint
    img = _jpeg_b64()
    items = [ClosedItem(index=str(i), question=f"Which tooth {i}?", options=["#11", "#21", "#31", "#41"], answer="B",
                        category="Teeth", image=img) for i in range(3)]
    backend = openai_backend(url, "vlm", cache_path=tmp_path / "c.sqlite")
    assert ChatRunner(backend).answer_closed(items) == ["(B)"] * 3
    for body in bodies(server):
        parts = body["messages"][0]["content"]
        [image_part] = [p for p in parts if p["type"] == "image_url"]
        data_url = image_part["image_url"]["url"]
        assert data_url.startswith("data:image/jpeg;base64,")
        assert base64.b64decode(data_url.split(",", 1)[1])[:3] == b"\xff\xd8\xff"  # a JPEG
        assert any(p["type"] == "text" and "Options:\nA. #11\nB. #21" in p["text"] for p in parts)
    n = server.count()
    text_only = ChatRunner(backend, use_images=False)
    assert text_only.name == "vlm-text-only"
    text_only.answer_closed(items)
    assert server.count() == n + 3 and all(isinstance(b["messages"][0]["content"], str) for b in bodies(server)[n:])


def test_chat_runner_on_the_official_sample(endpoint, closed_sample_tsv, tmp_path):
    from mmoral_pipeline.evaluation.tsv import read_closed_tsv

    server, url = endpoint
    items: list[ClosedItem] = read_closed_tsv(closed_sample_tsv)
    backend = openai_backend(url, "vlm", cache_path=tmp_path / "c.sqlite")
    outs = ChatRunner(backend).answer_closed(items)
    assert outs == ["(B)"] * 4
    contents = [b["messages"][0]["content"] for b in bodies(server)]  # arrival order varies (concurrent)
    assert all(c[0]["image_url"]["url"].startswith("data:image/jpeg;base64,/9j/") for c in contents)
    assert any("Options:\nA. 28\nB. 31\nC. 32\nD. 34" in c[1]["text"] for c in contents)
    text_only = ChatRunner(backend, use_images=False)
    res = score_run(ModelRun(model=text_only.name, closed_outputs=text_only.answer_closed(items)), items, [])
    assert res.scores.extraction_methods == {"letter": 4}
