"""A small OpenAI-compatible chat server on 127.0.0.1, for tests and the throughput benchmark.

`LocalChatServer(responder)` answers POST /v1/chat/completions with whatever `responder(body, n)`
returns (a `Reply`: status, text, headers, delay), so a test can script hallucinations, invalid
JSON, 429s with Retry-After, 500s and slow replies. Thread per connection, HTTP/1.1 keep-alive.
`HallucinatingLLM` is a ready responder: a faithful writer that corrupts a fixed share of replies.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    text: str = ""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Received:
    n: int
    at: float
    body: dict[str, Any]
    status: int = 0


Responder = Callable[[dict[str, Any], int], Reply]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    allow_reuse_address = True


class LocalChatServer:
    def __init__(self, responder: Responder, host: str = "127.0.0.1", port: int = 0):
        self.responder = responder
        self.received: list[Received] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in two writes: avoid the 40 ms delayed-ACK stall

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                with outer._lock:
                    rec = Received(n=len(outer.received), at=time.monotonic(), body=body)
                    outer.received.append(rec)
                reply = outer.responder(body, rec.n)
                rec.status = reply.status
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.status == 200:
                    payload = {
                        "id": f"chatcmpl-{rec.n}",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": body.get("model", "local"),
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": reply.text},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": {
                            "prompt_tokens": sum(len(str(m.get("content", ""))) for m in body.get("messages", [])) // 4,
                            "completion_tokens": len(reply.text) // 4,
                            "total_tokens": 0,
                        },
                    }
                else:
                    payload = {
                        "error": {
                            "message": reply.text or f"status {reply.status}",
                            "type": "test",
                            "code": reply.status,
                        }
                    }
                data = json.dumps(payload).encode()
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                    pass

        self._server = _Server((host, port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> LocalChatServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def count(self) -> int:
        with self._lock:
            return len(self.received)


# --- a faithful writer that hallucinates ---------------------------------------------------------

_PROMPT_KINDS = {
    "Below is the location caption": "report",
    "You are auditing": "audit",
    "From the location caption": "vqa",
    "Write a conversation": "dialogue",
}


@dataclass
class Corruption:
    kind: str  # "report" / "vqa" / "dialogue" (and "repair_*" for a corrupted send-back reply)
    image_id: str
    how: str  # which of the ways below
    marker: str  # text that appears only in the corrupted item


class HallucinatingLLM:
    """A responder for `LocalChatServer` that answers like a careful LLM (the offline writer, from the
    attributes behind each caption) and corrupts a fixed share of its replies the ways a real LLM
    does: a finding on a tooth without it ("Deep caries is visible on 22"), a tooth named instead of
    numbered ("the upper left lateral incisor is carious"), a keyed answer on the wrong tooth, a
    negation that contradicts ("16 is unrestored"), a wrong treatment ("a root canal treatment and a
    crown"), a lesion below a healthy tooth in a dialogue, and a negated clause beside a hallucinated
    one and a hallucinated summary in a report. Its audit never revises. Which replies are corrupted
    is decided by a hash of the request, so a cached re-run sees the same replies. Every corruption is
    recorded in `corruptions` with a marker text found only in the corrupted item."""

    def __init__(self, documents_by_caption: dict[str, Any], share: float = 0.3, seed: int = 0):
        from mmoral_pipeline.generation.facts import facts_of

        self.docs = documents_by_caption  # caption -> ImageAttributes
        self.facts = {c: facts_of(d) for c, d in documents_by_caption.items()}
        self.share = share
        self.seed = seed
        self.corruptions: list[Corruption] = []
        self._lock = threading.Lock()

    # which image and which prompt
    def _classify(self, body: dict[str, Any]) -> tuple[str, str]:
        users = [m["content"] for m in body.get("messages", []) if m.get("role") == "user"]
        kind = next(k for prefix, k in _PROMPT_KINDS.items() if users[0].startswith(prefix))
        if len(users) > 1 and "was checked against the location caption" in users[-1]:
            kind = f"repair_{kind}"
        caption = max((c for c in self.docs if c in users[0]), key=len)
        return kind, caption

    def _hash(self, body: dict[str, Any]) -> int:
        import hashlib

        blob = json.dumps(body.get("messages"), sort_keys=True) + f"|{self.seed}"
        return int(hashlib.sha256(blob.encode()).hexdigest()[:12], 16)

    def _corrupt(self, body: dict[str, Any]) -> bool:
        return self._hash(body) % 1000 < self.share * 1000

    def __call__(self, body: dict[str, Any], n: int) -> Reply:
        import random

        from mmoral_pipeline.generation import offline

        kind, caption = self._classify(body)
        f, doc = self.facts[caption], self.docs[caption]
        rng = random.Random(self._hash(body))  # the same request always gets the same reply (order of arrival aside)
        if kind == "audit":
            return Reply(text=json.dumps({"verdict": "no revision needed", "revised_report": None, "revision_log": []}))
        base = kind.removeprefix("repair_")
        if base == "report":
            text = offline.write_report(f, rng)
        elif base == "vqa":
            if kind == "repair_vqa":
                last = body["messages"][-1]["content"]
                items = [{"kind": k} for k in re.findall(r"^\d+\. \[(closed|open)\]", last, re.MULTILINE)]
                reply = offline.repair_vqa(f, rng, items, [])
            else:
                reply = offline.write_vqa(f, rng, 6, 4)
            text = json.dumps(reply)
        else:
            text = json.dumps(offline.write_dialogue(f, rng, 10))
        if self._corrupt(body):
            text = self._corrupted(kind, base, text, f, doc.image_id, rng)
        return Reply(text=text)

    # the corruptions
    def _pick(self, f: Any, rng: Any, without: Any) -> int | None:
        teeth = sorted(t for t in f.teeth if not (f.categories_by_tooth().get(t, {}).keys() & set(without)))
        return rng.choice(teeth) if teeth else None

    def _record(self, kind: str, image_id: str, how: str, marker: str) -> None:
        with self._lock:
            self.corruptions.append(Corruption(kind, image_id, how, marker))

    def _corrupted(self, kind: str, base: str, text: str, f: Any, image_id: str, rng: Any) -> str:
        from mmoral_pipeline.domain import fdi
        from mmoral_pipeline.domain.taxonomy import Category as Cat

        caries = (Cat.CARIES, Cat.DEEP_CARIES)
        if base == "report":
            ways = []
            a, b = self._pick(f, rng, caries), self._pick(f, rng, (Cat.PERIAPICAL_LESION,))
            if a and b and a != b:
                ways.append(
                    ("negation_clause", "Pathological Findings: ", f"No caries on {a} but a periapical lesion on {b}. ")
                )
            c, d = self._pick(f, rng, caries + (Cat.PERIAPICAL_LESION,)), self._pick(f, rng, (Cat.IMPLANT,))
            if c and d and c != d:
                ways.append(("summary", "3. Clinical Summary & Recommendations\n",
                             f"In summary: deep caries with a periapical abscess on {c} and an implant at {d}. "))
            filled = sorted({x.tooth_id for x in f.of(Cat.FILLING) if x.tooth_id is not None})
            if filled:
                t = rng.choice(filled)
                ways.append(
                    ("negated_treatment", "Historical Interventions: ", f"Tooth {t} is unrestored and intact. ")
                )
            how, anchor, insert = rng.choice(ways)
            self._record(kind, image_id, how, insert.strip())
            return text.replace(anchor, anchor + insert, 1)
        reply = json.loads(text)
        if base == "vqa":
            closed = [q for q in reply.get("closed", []) if q["answer_text"].startswith("#")]
            ways = (["deep_caries_open", "tooth_name_open", "treatment_open"] if reply.get("open") else []) + (
                ["keyed_wrong_tooth"] if closed else []
            )
            if not ways:
                return text
            how = rng.choice(ways)
            if how == "keyed_wrong_tooth":
                q = rng.choice(closed)
                asked = {"caries": caries}.get(q["question"].split()[-1].rstrip("?"), ())
                right = int(q["answer_text"][1:])
                wrong = self._pick(
                    f,
                    rng,
                    tuple(asked)
                    or (
                        Cat.CARIES,
                        Cat.DEEP_CARIES,
                        Cat.PERIAPICAL_LESION,
                        Cat.RETAINED_ROOT,
                        Cat.FILLING,
                        Cat.CROWN,
                        Cat.ROOT_CANAL_TREATMENT,
                        Cat.IMPLANT,
                    ),
                )
                if wrong is None or wrong == right:
                    return text
                else:
                    q["question"] = q["question"].rstrip("?") + " on this radiograph?"
                    q["options"] = [f"#{wrong}" if o == q["answer_text"] else o for o in q["options"]]
                    if len(set(q["options"])) < 4:  # the wrong tooth was a distractor already: swap it out
                        q["options"] = [f"#{right}" if o == f"#{wrong}" and i != q["options"].index(f"#{wrong}") else o
                                        for i, o in enumerate(q["options"])]
                    q["answer_text"] = f"#{wrong}"
                    q["answer"] = "ABCD"[q["options"].index(f"#{wrong}")]
                    self._record(kind, image_id, how, q["question"])
                    return json.dumps(reply)
            t = self._pick(f, rng, caries)
            if how == "tooth_name_open" and t:
                answer = f"The {fdi.tooth_name(t)} is carious."
            elif how == "treatment_open":
                t = self._pick(f, rng, (Cat.ROOT_CANAL_TREATMENT, Cat.CROWN))
                answer = f"Tooth {t} has a root canal treatment and a crown."
            else:
                answer = f"Deep caries is visible on {t}."
            if t is None:
                return text
            reply["open"][0] = {
                "question": f"Which finding stands out on this X-ray ({how})?",
                "answer": answer,
                "dimensions": ["Teeth", "Patho"],
            }
            self._record(kind, image_id, how, answer)
            return json.dumps(reply)
        # dialogue: a radiologist turn gains a lesion below a tooth without one
        t = self._pick(f, rng, (Cat.PERIAPICAL_LESION,))
        turns = reply["turns"]
        if t is None or len(turns) < 4:
            return text
        line = f"There is also a cyst below {t}."
        turns[3]["content"] = f"{turns[3]['content']} {line}"
        self._record(kind, image_id, "cyst_in_dialogue", line)
        return json.dumps(reply)
