from __future__ import annotations

import os
from pathlib import Path

import pytest

from mmoral_pipeline.generation.local_server import LocalChatServer, Reply

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


def scripted_reply(body: dict, n: int) -> Reply:
    """Replies of a fake benchmark model / judge, decided by the request alone (order-independent)."""
    msg = body["messages"][-1]["content"]
    if isinstance(msg, list):  # a benchmark question with an image
        return Reply(text="(B)")
    if "Ground truth:" in msg:  # the judge: 1.0 when prediction == ground truth, else 0.4, +0.1 on re-scorings
        gt = msg.rsplit("Ground truth: ", 1)[1].split("\nPrediction:")[0]
        pred = msg.rsplit("Prediction: ", 1)[1].strip()
        seed = body.get("seed") or 0
        return Reply(text=f"Compared the facts.\nScore: {1.0 if gt == pred else min(1.0, 0.4 + 0.1 * seed):.1f}")
    return Reply(text="I cannot see the image, maybe C" if "Options:" in msg else "no image")  # text-only question


def bodies(server: LocalChatServer) -> list[dict]:
    """The JSON bodies the server received, in arrival order."""
    with server._lock:
        return [r.body for r in server.received]


@pytest.fixture()
def endpoint():
    """The generation package's local OpenAI-compatible server with `scripted_reply`: (server, base_url)."""
    with LocalChatServer(scripted_reply) as server:
        yield server, server.url
