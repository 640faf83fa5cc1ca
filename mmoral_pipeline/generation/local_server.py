"""A small OpenAI-compatible chat server on 127.0.0.1, for tests and the throughput benchmark.

`LocalChatServer(responder)` answers POST /v1/chat/completions with whatever `responder(body, n)`
returns (a `Reply`: status, text, headers, delay), so a test can script hallucinations, invalid
JSON, 429s with Retry-After, 500s and slow replies. Thread per connection, HTTP/1.1 keep-alive.
"""

from __future__ import annotations

import json
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

            def do_POST(self) -> None:  # noqa: N802 - http.server API
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
                        "id": f"chatcmpl-{rec.n}", "object": "chat.completion", "created": int(time.time()),
                        "model": body.get("model", "local"),
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": reply.text}, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": sum(len(str(m.get("content", ""))) for m in body.get("messages", [])) // 4,
                                  "completion_tokens": len(reply.text) // 4,
                                  "total_tokens": 0},
                    }
                else:
                    payload = {"error": {"message": reply.text or f"status {reply.status}", "type": "test", "code": reply.status}}
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

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()

    def count(self) -> int:
        with self._lock:
            return len(self.received)
