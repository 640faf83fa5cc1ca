from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def realdata_dir() -> Path:
    return Path(os.environ.get("MMORAL_REALDATA") or REPO.parent / "shared" / "realdata")


@pytest.fixture(scope="session")
def closed_sample_tsv() -> Path:
    p = realdata_dir() / "mmoral_opg_bench" / "closed_ended_sample.tsv"
    if not p.exists():
        pytest.skip(f"real MMOral-OPG-Bench sample not found at {p} (set MMORAL_REALDATA)")
    return p


@pytest.fixture(scope="session")
def official_questions_json() -> Path:
    p = realdata_dir() / "mmoral_opg_bench" / "closed_ended_questions_no_images.json"
    if not p.exists():
        pytest.skip(f"official question list not found at {p} (set MMORAL_REALDATA)")
    return p


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        server = self.server
        with server.lock:
            server.requests.append(body)
        msg = body["messages"][-1]["content"]
        if isinstance(msg, list):  # a benchmark question with an image
            text = next(p["text"] for p in msg if p["type"] == "text")
            reply = "(B)"
        elif "Ground truth:" in msg:  # the judge: 1.0 when prediction == ground truth, else 0.4, +0.1 on re-scorings
            gt = msg.rsplit("Ground truth: ", 1)[1].split("\nPrediction:")[0]
            pred = msg.rsplit("Prediction: ", 1)[1].strip()
            seed = body.get("seed") or 0
            reply = f"Compared the facts.\nScore: {1.0 if gt == pred else min(1.0, 0.4 + 0.1 * seed):.1f}"
        else:  # text-only benchmark question
            text = msg
            reply = "I cannot see the image, maybe C" if "Options:" in text else "no image"
        out = {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
               "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}],
               "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}}
        data = json.dumps(out).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture()
def endpoint():
    """A local OpenAI-compatible server: (server with .requests, base_url)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.requests = []
    server.lock = threading.Lock()
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield server, f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()
