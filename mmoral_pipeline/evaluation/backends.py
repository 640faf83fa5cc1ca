"""OpenAI-compatible chat backends for the benchmark runners and the LLM judge.

`openai_backend()` builds the generation package's backend (concurrency, retries, response
cache); `MinimalOpenAIBackend` is a small stand-in with a thread pool and retries, used only when
that package cannot be imported, and in tests that need a backend with no cache at all.
"""

from __future__ import annotations

import importlib.util
import os
import time
from collections.abc import Callable
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

    def complete(self, requests: list[ChatRequest], on_result: Callable[[int, ChatResponse], None] | None = None) -> list[ChatResponse]:
        if not requests:
            return []
        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(requests))) as pool:
            out = list(pool.map(self._one, requests))
        if on_result is not None:  # the CachedBackend stores each response through this hook
            for i, r in enumerate(out):
                on_result(i, r)
        return out


def openai_backend(base_url: str, model: str, api_key_env: str = "OPENAI_API_KEY", cache_dir: str | None = None,
                   max_concurrency: int = 8, use_cache: bool = True):
    """The generation package's OpenAIBackend (AIMD concurrency, retries with Retry-After) behind its
    CachedBackend (SQLite response cache); `MinimalOpenAIBackend` only if that package is unavailable."""
    api_key = os.environ.get(api_key_env) or "EMPTY"
    try:
        from mmoral_pipeline.generation.backends import CachedBackend
        from mmoral_pipeline.generation.cache import ResponseCache
        from mmoral_pipeline.generation.openai_backend import OpenAIBackend
    except ImportError:
        return MinimalOpenAIBackend(base_url=base_url, model=model, api_key=api_key, max_concurrency=max_concurrency)
    if importlib.util.find_spec("httpx") is not None:
        inner = OpenAIBackend(model=model, base_url=base_url, api_key=api_key, max_concurrency=max_concurrency)
    else:  # OpenAIBackend builds an httpx client; openai 3.x ships httpx2 instead, so keep its cache, swap the transport
        inner = MinimalOpenAIBackend(base_url=base_url, model=model, api_key=api_key, max_concurrency=max_concurrency)
    cache = ResponseCache(os.path.join(cache_dir, "llm_cache.sqlite") if cache_dir else None) if use_cache else None
    return CachedBackend(inner, cache)
