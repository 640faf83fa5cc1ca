"""The `openai` backend against a scripted OpenAI-compatible server on 127.0.0.1."""

import json
import random
import subprocess
import sys
import threading
import time

from mmoral_pipeline.domain.fdi import PERMANENT_TEETH, PRIMARY_TEETH
from mmoral_pipeline.generation.backends import CachedBackend
from mmoral_pipeline.generation.cache import ResponseCache
from mmoral_pipeline.generation.facts import facts_of
from mmoral_pipeline.generation.local_server import LocalChatServer, Reply
from mmoral_pipeline.generation.offline import write_dialogue, write_report, write_vqa
from mmoral_pipeline.generation.openai_backend import OpenAIBackend, parse_retry_after
from mmoral_pipeline.generation.pipeline import GenerationSettings, generate
from mmoral_pipeline.generation.types import ChatRequest

KINDS = {
    "Below is the location caption": "report",
    "You are auditing": "audit",
    "From the location caption": "vqa",
    "Write a conversation": "dialogue",
}


class ScriptedLLM:
    """Answers like a decent LLM from the attributes behind each caption, with scripted faults."""

    def __init__(self, images):
        self.images = images
        self.attempts: dict[tuple[str, int], int] = {}
        self.lock = threading.Lock()
        self.log: list[tuple[float, str, int, int]] = []  # (time, kind, image, status)
        known = set().union(*(facts_of(img.attributes).known_teeth() for img in images))
        self.ghost = next(t for t in PERMANENT_TEETH + PRIMARY_TEETH if t not in known)  # a tooth no image has

    def classify(self, body):
        first_user = next(m["content"] for m in body["messages"] if m["role"] == "user")
        kind = next(k for prefix, k in KINDS.items() if first_user.startswith(prefix))
        if "was checked against the location caption" in body["messages"][-1]["content"]:
            kind = f"repair_{kind}"  # the audit send-back
        idx = next(i for i, img in enumerate(self.images) if img.caption in first_user)
        return kind, idx

    def good_report(self, idx):
        return write_report(facts_of(self.images[idx].attributes), random.Random(idx))

    def hallucinated(self, idx):
        return self.good_report(idx).replace(
            "Pathological Findings: ", f"Pathological Findings: Tooth {self.ghost} shows deep caries. "
        )

    def __call__(self, body, n):
        kind, idx = self.classify(body)
        if n == 0:  # the very first request is rate limited
            self.log.append((time.monotonic(), kind, idx, 429))
            return Reply(status=429, text="slow down", headers={"Retry-After": "1"})
        with self.lock:
            k = self.attempts[(kind, idx)] = self.attempts.get((kind, idx), 0) + 1
        reply = self.reply(kind, idx, k)
        self.log.append((time.monotonic(), kind, idx, reply.status))
        return reply

    def reply(self, kind, idx, attempt):
        f = facts_of(self.images[idx].attributes)
        rng = random.Random(idx)
        if kind == "repair_report":  # told what was wrong, this model fixes it
            return Reply(text=self.good_report(idx))
        if kind == "repair_vqa":
            return Reply(
                text=json.dumps(
                    {
                        "closed": [],
                        "open": [
                            {
                                "question": "What is seen on the image?",
                                "answer": "Tooth 99 has a crown.",
                                "dimensions": ["Teeth"],
                            }
                        ],
                    }
                )
            )
        if kind == "report":
            if idx == 2 and attempt <= 2:
                return Reply(status=500, text="upstream exploded")
            if idx == 3 and attempt == 1:
                return Reply(text=self.good_report(idx), delay=2.5)  # slower than the 1 s timeout
            return Reply(text=self.hallucinated(idx) if idx in (0, 1) else self.good_report(idx))
        if kind == "audit":
            if idx == 1:  # this auditor catches the hallucination and revises
                return Reply(text=json.dumps({"verdict": "revised", "revised_report": self.good_report(idx),
                                              "revision_log": [f"removed tooth {self.ghost}: not in the caption"]}))
            return Reply(text=json.dumps({"verdict": "no revision needed", "revised_report": None, "revision_log": []}))
        if kind == "vqa":
            if idx == 2 and attempt == 1:
                return Reply(text='Sure! Here are the questions: {"closed": [{"question": "Which tooth')
            vqa = write_vqa(f, rng, 4, 3)
            if idx == 3:
                vqa["open"].append(
                    {
                        "question": f"What is seen on tooth {self.ghost}?",
                        "answer": f"Tooth {self.ghost} has a crown.",
                        "dimensions": ["Teeth"],
                    }
                )
            return Reply(text="```json\n" + json.dumps(vqa) + "\n```")
        return Reply(text=json.dumps(write_dialogue(f, rng, 10)))


def test_openai_backend_faults_validation_and_cache(tmp_path, make_images):
    images = make_images(4, seed=11)
    llm = ScriptedLLM(images)
    cache_path = tmp_path / "llm_cache.sqlite"
    settings = GenerationSettings(n_vqa_closed=4, n_vqa_open=3, params={"temperature": 0.2, "max_tokens": 800})
    with LocalChatServer(llm) as server:
        backend = OpenAIBackend(model="local-test", base_url=server.url, api_key="sk-never-stored", max_concurrency=8,
                                timeout_s=1.0, max_retries=4, backoff_base_s=0.05, seed=0)
        cached = CachedBackend(backend, ResponseCache(cache_path))
        out = generate(images, cached, settings, run_id="run-a")
        sent_first = server.count()

        # hallucinations: image 0's report (the audit missed it) is rejected and sent back once with the
        # validator's findings; the repaired report is kept and says which row it repairs. Image 1's was revised by
        # the audit.
        rejected_reports = [r for r in out.rejected if r.task_type == "report"]
        assert [r.image_id for r in rejected_reports] == [images[0].image_id]
        assert (
            rejected_reports[0].rejected_by == "grounded_teeth" and str(llm.ghost) in rejected_reports[0].reject_reason
        )
        assert json.loads(rejected_reports[0].extra)["repair"] == "requested"
        kept = {r.image_id: r for r in out.reports}
        assert set(kept) == {img.image_id for img in images}
        repaired = json.loads(kept[images[0].image_id].extra)
        assert repaired["repair_of"] == rejected_reports[0].item_id and any(
            str(llm.ghost) in f for f in repaired["repair_findings"]
        )
        assert str(llm.ghost) not in kept[images[0].image_id].answer
        extra1 = json.loads(kept[images[1].image_id].extra)
        assert (
            extra1["audit_verdict"] == "revised"
            and extra1["revision_log"]
            and str(llm.ghost) not in kept[images[1].image_id].answer
        )
        # the hallucinated open VQA answer is rejected, the rest of that reply kept; its repair hallucinates again:
        # rejected too
        ghost_rows = [r for r in out.rejected if r.task_type == "vqa_open"]
        assert len(ghost_rows) == 2 and {r.rejected_by for r in ghost_rows} == {"grounded_teeth"}
        assert json.loads(ghost_rows[1].extra)["repair_of"] == [ghost_rows[0].item_id]
        assert any(r.image_id == images[3].image_id and r.task_type == "vqa_open" for r in out.vqa_items)
        assert not [r for r in out.rejected if r.rejected_by in ("backend_error", "json_schema")]
        assert dict(out.repairs) == {
            "reports_requested": 1,
            "reports_accepted": 1,
            "vqa_items_requested": 1,
            "vqa_items_rejected": 1,
        }

        # retries and back-off were observed
        s = backend.stats
        assert s["rate_limited"] == 1 and s["server_errors"] == 2 and s["timeouts"] == 1 and s["json_retries"] == 1
        assert s["retries"] == 4 and s["limiter_decreases"] >= 1 and s["prompt_tokens"] > 0
        t429, kind429, idx429, _ = next(e for e in llm.log if e[3] == 429)
        retry_at = min(t for t, k, i, st in llm.log if (k, i) == (kind429, idx429) and t > t429)
        assert retry_at - t429 >= 0.95, "Retry-After: 1 was not honoured"
        # an LLM row carries full provenance, and never the key
        row = kept[images[2].image_id]
        assert row.backend == "openai" and row.model == "local-test" and row.request_hash and not row.cache_hit
        assert json.loads(row.params) == {"temperature": 0.2, "max_tokens": 800}
        assert all("sk-never-stored" not in r.model_dump_json() for r in out.reports + out.vqa_items + out.dialogues)
        assert "sk-never-stored" not in repr(backend)

        # second run: everything from the cache, nothing sent
        backend2 = OpenAIBackend(model="local-test", base_url=server.url, max_concurrency=8, timeout_s=1.0)
        cached2 = CachedBackend(backend2, ResponseCache(cache_path))
        out2 = generate(images, cached2, settings, run_id="run-b")
        assert server.count() == sent_first
        assert cached2.stats["sent"] == 0 and backend2.stats["http_requests"] == 0
        assert all(r.cache_hit for r in out2.reports + out2.dialogues)
        assert sorted(r.item_id for r in out2.vqa_items) == sorted(r.item_id for r in out.vqa_items)


def test_parse_retry_after():
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after-ms": "250"}) == 0.25
    assert parse_retry_after({}) is None
    in_two = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 2))
    assert 0.5 < parse_retry_after({"retry-after": in_two}) <= 2.5


KILL_SCRIPT = """
import sys
from mmoral_pipeline.generation.backends import CachedBackend
from mmoral_pipeline.generation.cache import ResponseCache
from mmoral_pipeline.generation.openai_backend import OpenAIBackend
from mmoral_pipeline.generation.types import ChatRequest
reqs = [ChatRequest(messages=[{"role": "user", "content": f"q{i}"}], params={"temperature": 0}) for i in range(12)]
backend = OpenAIBackend(model="m", base_url=sys.argv[1], max_concurrency=4, timeout_s=120)
CachedBackend(backend, ResponseCache(sys.argv[2])).complete(reqs)
"""


def test_killed_run_resumes_without_resending(tmp_path):
    cache_path = tmp_path / "c.sqlite"

    def slow_after_six(body, n):
        i = int(body["messages"][0]["content"][1:])
        return Reply(text=f"answer {i}", delay=0.0 if i < 6 else 60.0)

    with LocalChatServer(slow_after_six) as server:
        proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, server.url, str(cache_path)])
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if cache_path.exists() and len(ResponseCache(cache_path)) >= 6:
                    break
                time.sleep(0.1)
        finally:
            proc.kill()  # killed in the middle: q6.. are still in flight
            proc.wait()
    assert len(ResponseCache(cache_path)) == 6

    with LocalChatServer(lambda body, n: Reply(text="answer " + body["messages"][0]["content"][1:])) as server:
        reqs = [
            ChatRequest(messages=[{"role": "user", "content": f"q{i}"}], params={"temperature": 0}) for i in range(12)
        ]
        cached = CachedBackend(
            OpenAIBackend(model="m", base_url=server.url, max_concurrency=4), ResponseCache(cache_path)
        )
        out = cached.complete(reqs)
        resent = sorted(int(r.body["messages"][0]["content"][1:]) for r in server.received)
    assert resent == list(range(6, 12))
    assert [r.text for r in out] == [f"answer {i}" for i in range(12)]
    assert [r.cache_hit for r in out] == [True] * 6 + [False] * 6


def test_aimd_limiter_halves_on_429_and_grows_back():
    import asyncio

    from mmoral_pipeline.generation.openai_backend import AIMDLimiter

    async def scenario():
        lim = AIMDLimiter(16, refractory_s=0.0)
        for _ in range(3):
            await lim.acquire()
        await lim.release("rate_limited", retry_after=0.2)
        assert lim.limit == 8 and lim.blocked_until > time.monotonic()
        await lim.release("rate_limited")
        assert lim.limit == 4 and lim.decreases == 2
        t0 = time.monotonic()
        await lim.acquire()  # waits out the Retry-After pause
        assert time.monotonic() - t0 >= 0.15
        for _ in range(40):
            await lim.release("ok")
            await lim.acquire()
        assert 8 < lim.limit <= 16  # additive increase: about +1 per window of successes

    asyncio.run(scenario())
