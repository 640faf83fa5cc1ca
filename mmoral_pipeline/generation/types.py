"""The request/response contract every chat backend speaks (generation, benchmark runners, judges).

A backend takes a batch of `ChatRequest`s and returns one `ChatResponse` each, in order. The
`request_hash` is the cache key: backend, model, messages and parameters, nothing else.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Protocol

from pydantic import BaseModel, Field


class ChatRequest(BaseModel):
    messages: list[dict[str, Any]]  # OpenAI chat format; image parts as {"type": "image_url", ...}
    params: dict[str, Any] = Field(default_factory=dict)  # temperature, max_tokens, seed, ...
    json_schema: str | None = None  # name of a pydantic schema the reply must validate against
    tag: str = ""  # free label for metrics (e.g. the prompt template id)
    # Side data a non-LLM backend may read (the offline backend reads the attribute document and
    # the report it is asked about). Not sent to any endpoint, not part of the request hash (the
    # messages already carry everything an LLM sees), never serialised.
    context: dict[str, Any] = Field(default_factory=dict, exclude=True, repr=False)

    def request_hash(self, backend: str, model: str) -> str:
        blob = json.dumps(
            {
                "backend": backend,
                "model": model,
                "messages": self.messages,
                "params": self.params,
                "schema": self.json_schema,
            },
            sort_keys=True,
            separators=(",", ":"),
            default=str,
        )
        return hashlib.sha256(blob.encode()).hexdigest()


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class ChatResponse(BaseModel):
    text: str
    request_hash: str
    backend: str
    model: str
    cache_hit: bool = False
    usage: Usage = Field(default_factory=Usage)
    attempts: int = 1
    latency_s: float = 0.0
    error: str | None = None  # set when every attempt failed; text is then ""


class ChatBackend(Protocol):
    name: str  # "openai" / "offline" / ...
    model: str

    def complete(self, requests: list[ChatRequest]) -> list[ChatResponse]: ...
