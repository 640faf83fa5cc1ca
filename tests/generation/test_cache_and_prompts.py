import shutil
import subprocess
import sys

from mmoral_pipeline.config import PROMPTS_DIR
from mmoral_pipeline.generation.cache import ResponseCache
from mmoral_pipeline.generation.pipeline import TEMPLATES, output_code_version
from mmoral_pipeline.generation.prompts import prompt_version, render
from mmoral_pipeline.generation.types import ChatRequest, ChatResponse


def _resp(h: str, text: str = "x") -> ChatResponse:
    return ChatResponse(text=text, request_hash=h, backend="offline", model="m")


def test_cache_persists_and_uses_wal(tmp_path):
    path = tmp_path / "c.sqlite"
    c = ResponseCache(path)
    c.put(_resp("a", "hello"))
    c.put_many([_resp("b"), _resp("c")])
    c.close()
    c2 = ResponseCache(path)
    assert len(c2) == 3 and c2.get("a").text == "hello" and c2.get("zz") is None
    assert set(c2.get_many(["a", "b", "nope"])) == {"a", "b"}
    assert c2._conn().execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_cache_is_safe_with_several_processes(tmp_path):
    path = tmp_path / "c.sqlite"
    ResponseCache(path)
    code = (
        "import sys; from mmoral_pipeline.generation.cache import ResponseCache; "
        "from mmoral_pipeline.generation.types import ChatResponse; c = ResponseCache(sys.argv[1]); "
        "[c.put(ChatResponse(text='t', request_hash=f'{sys.argv[2]}{i}', backend='b', model='m')) for i in range(150)]"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path), f"p{k}-"]) for k in range(3)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    assert len(ResponseCache(path)) == 450


def test_request_hash_ignores_context_but_not_messages():
    a = ChatRequest(messages=[{"role": "user", "content": "x"}], context={"attributes": 1})
    b = ChatRequest(messages=[{"role": "user", "content": "x"}], context={"attributes": 2})
    c = ChatRequest(messages=[{"role": "user", "content": "y"}])
    assert a.request_hash("o", "m") == b.request_hash("o", "m") != c.request_hash("o", "m")
    assert "context" not in a.model_dump()


def test_prompt_version_is_the_content_hash_and_only_dependants_change(tmp_path, monkeypatch):
    root = tmp_path / "prompts"
    shutil.copytree(PROMPTS_DIR, root)
    before = {t: prompt_version(t, root) for t in ("report", "dialogue", "vqa_report", "attribute_extraction")}
    assert before["report"] == prompt_version("report")
    (root / "dialogue.j2").write_text((root / "dialogue.j2").read_text() + "\nBe brief.\n")
    after = {t: prompt_version(t, root) for t in before}
    assert after["dialogue"] != before["dialogue"]
    assert {t: v for t, v in after.items() if t != "dialogue"} == {t: v for t, v in before.items() if t != "dialogue"}
    # asset code versions: only outputs whose templates include dialogue change
    import mmoral_pipeline.generation.pipeline as pipeline

    old = {o: output_code_version(o) for o in TEMPLATES}
    monkeypatch.setattr(pipeline, "prompt_version", lambda t: prompt_version(t, root))
    new = {o: output_code_version(o) for o in TEMPLATES}
    assert [o for o in TEMPLATES if old[o] != new[o]] == ["dialogue" + "s"]


def test_attribute_phrasings_vary():
    texts = {render("attribute_extraction", scope="full", variant=v, quadrant=None) for v in range(5)}
    assert len(texts) == 5
    assert "quadrant 3" in render("attribute_extraction", scope="quadrant", variant=0, quadrant=3)


def test_cached_backend_wraps_a_bare_contract_backend(tmp_path):
    """Any ChatBackend (complete(requests) only) gets the cache: the second call sends nothing."""
    from mmoral_pipeline.generation.backends import CachedBackend

    class Echo:
        name, model = "echo", "echo-1"

        def __init__(self):
            self.seen = 0

        def complete(self, requests):
            self.seen += len(requests)
            return [
                ChatResponse(
                    text=r.messages[-1]["content"].upper(),
                    request_hash=r.request_hash(self.name, self.model),
                    backend=self.name,
                    model=self.model,
                )
                for r in requests
            ]

    inner = Echo()
    reqs = [ChatRequest(messages=[{"role": "user", "content": c}]) for c in ("a", "b", "a")]
    first = CachedBackend(inner, ResponseCache(tmp_path / "c.sqlite")).complete(reqs)
    assert [r.text for r in first] == ["A", "B", "A"] and inner.seen == 2  # duplicate sent once
    second = CachedBackend(inner, ResponseCache(tmp_path / "c.sqlite")).complete(reqs)
    assert inner.seen == 2 and all(r.cache_hit for r in second)
