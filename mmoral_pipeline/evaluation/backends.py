"""OpenAI-compatible chat backends for the benchmark runners and the LLM judge.

`openai_backend()` prefers the generation package's backend (concurrency, retries, response
cache); `MinimalOpenAIBackend` is a small stand-in with a thread pool and retries, used only when
that backend cannot be imported (or constructed).
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from mmoral_pipeline.generation.types import ChatRequest, ChatResponse, Usage


class MinimalOpenAIBackend:
    """ChatBackend over the `openai` client: concurrent requests, exponential-backoff retries, no cache."""

    name = "openai"

    def __init__(self, base_url: str, model: str, api_key: str | None = None, max_concurrency: int = 8,
                 max_retries: int = 3, timeout_s: float = 120.0):
        from openai import OpenAI

        self.model = model
        self.base_url = base_url
        self.client = OpenAI(base_url=base_url, api_key=api_key or "EMPTY", timeout=timeout_s, max_retries=0)
        self.max_concurrency = max_concurrency
        self.max_retries = max_retries

    def _one(self, req: ChatRequest) -> ChatResponse:
        h = req.request_hash(self.name, self.model)
        start = time.perf_counter()
        err = None
        for attempt in range(1, self.max_retries + 2):
            try:
                kwargs: dict[str, Any] = {k: v for k, v in req.params.items() if k in ("temperature", "max_tokens", "seed", "top_p")}
                r = self.client.chat.completions.create(model=self.model, messages=req.messages, **kwargs)
                usage = Usage(prompt_tokens=getattr(r.usage, "prompt_tokens", 0) or 0,
                              completion_tokens=getattr(r.usage, "completion_tokens", 0) or 0) if r.usage else Usage()
                return ChatResponse(text=r.choices[0].message.content or "", request_hash=h, backend=self.name, model=self.model,
                                    usage=usage, attempts=attempt, latency_s=time.perf_counter() - start)
            except Exception as e:  # noqa: BLE001 - every transport error is retried, then reported
                err = f"{type(e).__name__}: {e}"
                if attempt <= self.max_retries:
                    time.sleep(min(8.0, 0.2 * 2 ** (attempt - 1)))
        return ChatResponse(text="", request_hash=h, backend=self.name, model=self.model, attempts=self.max_retries + 1,
                            latency_s=time.perf_counter() - start, error=err)

    def complete(self, requests: list[ChatRequest]) -> list[ChatResponse]:
        if not requests:
            return []
        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(requests))) as pool:
            return list(pool.map(self._one, requests))


def openai_backend(base_url: str, model: str, api_key_env: str = "OPENAI_API_KEY", cache_dir: str | None = None,
                   max_concurrency: int = 8):
    """The generation package's OpenAI-compatible backend when available, else `MinimalOpenAIBackend`."""
    api_key = os.environ.get(api_key_env) or "EMPTY"
    try:
        from mmoral_pipeline.generation import openai_backend as gen  # type: ignore[attr-defined]

        factory = getattr(gen, "make_backend", None) or getattr(gen, "OpenAIBackend", None)
        if factory is not None:
            try:
                return factory(base_url=base_url, model=model, api_key=api_key, cache_dir=cache_dir, max_concurrency=max_concurrency)
            except TypeError:
                pass
    except ImportError:
        pass
    return MinimalOpenAIBackend(base_url=base_url, model=model, api_key=api_key, max_concurrency=max_concurrency)
