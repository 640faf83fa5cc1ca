"""Secrets stay put: an OpenAI-compatible server on 127.0.0.1 that echoes the key it was sent (in replies,
in 401 bodies, in 500 bodies) behind generation and benchmark_results; afterwards the key is in no Parquet
cell, no export file, no cache row, no event (metadata, log message) and no captured log line."""

import json
import logging
import sqlite3
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from mmoral_pipeline.defs.evaluation import benchmark_results, items_frame
from mmoral_pipeline.defs.generation import LLMResource, generation_assets, generation_checks
from mmoral_pipeline.defs.io_manager import ParquetIOManager
from mmoral_pipeline.defs.resources import ModelEndpoint, ModelEndpoints, endpoints_from_env
from mmoral_pipeline.evaluation.items import ClosedItem, OpenItem
from mmoral_pipeline.generation.openai_backend import redact

from .test_defs_generation import stub_image_attributes, stub_location_captions

KEY = "sk-test-0123456789abcdefSECRET"
KEY_ENV = "MMORAL_TEST_ECHO_KEY"


class EchoServer:
    """Answers chat completions by echoing the Authorization header: as a reply (n % 3 == 0), in a 401 body
    (n % 3 == 1) or in a 500 body (n % 3 == 2). Records every key it was sent."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                auth = self.headers.get("Authorization", "")
                outer.keys.append(auth.removeprefix("Bearer "))
                n = len(outer.keys) - 1
                if n % 3 == 0:
                    status = 200
                    payload = {
                        "id": f"c{n}",
                        "object": "chat.completion",
                        "created": 0,
                        "model": body.get("model", "m"),
                        "choices": [
                            {
                                "index": 0,
                                "finish_reason": "stop",
                                "message": {"role": "assistant", "content": f"You sent {auth}. Key {auth[7:]} ok."},
                            }
                        ],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                    }
                else:
                    status = 401 if n % 3 == 1 else 500
                    payload = {
                        "error": {"message": f"Incorrect API key provided: {auth[7:]} (header {auth})", "type": "auth"}
                    }
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("X-Echo-Key", auth[7:])
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> "EchoServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()


def _strings_in_parquet(root: Path) -> list[str]:
    """Every cell of every Parquet file under root, as text (the files are compressed: bytes would hide it)."""
    out = []
    for path in root.rglob("*.parquet"):
        df = pl.read_parquet(path)
        out.append(df.write_ndjson())
    return out


def test_an_echoed_key_reaches_no_table_cache_metadata_or_log(tmp_path: Path, monkeypatch, caplog, capfd):
    monkeypatch.setenv(KEY_ENV, KEY)
    home = tmp_path / "home"
    monkeypatch.setenv("MMORAL_HOME", str(home))
    caplog.set_level(logging.DEBUG)  # every Python logger, the openai client's and httpx's included
    cache = tmp_path / "llm_cache.sqlite"
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("batches", ["b1"])
    with EchoServer() as server:
        llm = LLMResource(
            backend="openai",
            base_url=server.url,
            model="echo",
            api_key=dg.EnvVar(KEY_ENV),
            max_retries=0,
            json_retries=1,
            cache_path=str(cache),
        )
        gen = dg.materialize(
            [stub_image_attributes, stub_location_captions, *generation_assets, *generation_checks],
            partition_key="b1",
            instance=instance,
            raise_on_error=False,
            resources={"io_manager": ParquetIOManager(str(home)), "llm": llm},
        )
        items = [
            ClosedItem(
                index="1", question="Which jaw?", options=["Upper", "Lower", "Both", "None"], answer="B", category="Jaw"
            ),
            ClosedItem(
                index="2",
                question="Which side?",
                options=["Left", "Right", "Both", "None"],
                answer="A",
                category="Teeth",
            ),
            OpenItem(index="3", question="Describe the teeth.", answer="Caries on 36.", category="Teeth"),
        ]
        home.mkdir(parents=True, exist_ok=True)
        items_frame(
            [i for i in items if isinstance(i, ClosedItem)], [i for i in items if isinstance(i, OpenItem)], {}
        ).write_parquet(home / "benchmark_items.parquet")
        # benchmark_results fits its question-wording prior on the train split: none here, so no prior answers
        pl.DataFrame({"split": [], "image_id": []}, schema={"split": pl.Utf8, "image_id": pl.Utf8}).write_parquet(
            home / "instruction_samples.parquet"
        )
        endpoints = ModelEndpoints(
            endpoints=[ModelEndpoint(name="echo", base_url=server.url, model="echo", api_key=dg.EnvVar(KEY_ENV))]
        )
        bench = dg.materialize(
            [benchmark_results, dg.AssetSpec("benchmark_items"), dg.AssetSpec("instruction_samples")],
            instance=instance,
            resources={"io_manager": ParquetIOManager(str(home)), "endpoints": endpoints},
            run_config={
                "ops": {
                    "benchmark_results": {
                        "config": {
                            "models": [],
                            "endpoints": ["echo"],
                            "judge_endpoint": "echo",
                            "controls": ["text_only"],
                        }
                    }
                }
            },
        )
    assert gen.success is not None and bench.success
    # the key really went out, and the server really echoed it back
    assert len(server.keys) >= 6 and set(server.keys) == {KEY}

    stored = _strings_in_parquet(home)
    assert stored and not any(KEY in s for s in stored)
    assert any("[REDACTED]" in s for s in stored), "the echo reached the tables only in redacted form"
    for path in home.rglob("*"):
        if path.is_file() and path.suffix not in (".parquet", ".sqlite"):
            assert KEY.encode() not in path.read_bytes(), path
    for db in (cache, home / "llm_cache.sqlite"):
        assert db.exists()
        rows = sqlite3.connect(db).execute("SELECT * FROM responses").fetchall()
        assert rows and not any(KEY in str(r) for r in rows)
        assert any("[REDACTED]" in str(r) for r in rows)
    from dagster._serdes import serialize_value

    for run in instance.get_runs():
        assert KEY not in serialize_value(run)  # run config, tags
        for entry in instance.all_logs(run.run_id):
            assert KEY not in serialize_value(entry)  # messages, metadata, check results
    out, err = capfd.readouterr()
    assert KEY not in out and KEY not in err
    assert KEY not in caplog.text


def test_run_config_can_only_name_an_endpoint(monkeypatch):
    from mmoral_pipeline.defs.evaluation import BenchmarkResultsConfig

    fields = set(BenchmarkResultsConfig.model_fields)
    assert not {f for f in fields if "url" in f or "key" in f}, fields  # no URL, no key variable in run config
    with pytest.raises(KeyError, match="no endpoint named 'other'"):
        ModelEndpoints().get("other")
    monkeypatch.setenv(
        "MMORAL_BENCH_ENDPOINTS",
        json.dumps([{"name": "vllm", "base_url": "http://gpu:8000/v1", "model": "qwen", "api_key_env": KEY_ENV}]),
    )
    resource = endpoints_from_env()
    assert resource.get("vllm").api_key == KEY_ENV  # an EnvVar reference: the value is read only when a run starts
    assert KEY not in repr(resource)


def test_redaction_rules():
    assert (
        redact(f'key {KEY} and Bearer abcdefghijkl and sk-zzzzzzzzzz1 and api_key="qwertyuiop"', [KEY]).count(
            "[REDACTED]"
        )
        == 4
    )
    assert redact("200 tokens, EMPTY reply, skipping", []) == "200 tokens, EMPTY reply, skipping"
