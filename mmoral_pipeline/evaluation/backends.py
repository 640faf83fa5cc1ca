"""OpenAI-compatible chat backend for the benchmark runners and the LLM judge.

One construction for both: the generation package's `OpenAIBackend` (official `openai` client,
AIMD concurrency, retries honouring Retry-After) behind its `CachedBackend` (SQLite
`ResponseCache`), so the benchmark and the judge share the project's single cache mechanism.
"""

from __future__ import annotations

import os
from pathlib import Path

from mmoral_pipeline.generation.backends import CachedBackend
from mmoral_pipeline.generation.cache import ResponseCache
from mmoral_pipeline.generation.openai_backend import OpenAIBackend

CACHE_FILE = "llm_cache.sqlite"


def openai_backend(base_url: str, model: str, api_key_env: str = "OPENAI_API_KEY", cache_dir: str | Path | None = None,
                   max_concurrency: int = 8, cache_path: str | Path | None = None, **backend_kwargs) -> CachedBackend:
    """`CachedBackend(OpenAIBackend(...), ResponseCache(...))`.

    The cache file is `cache_path`, else `<cache_dir>/llm_cache.sqlite`, else the project default
    (`$MMORAL_HOME/llm_cache.sqlite`). `backend_kwargs` go to `OpenAIBackend` (max_retries, timeout_s, ...).
    """
    api_key = os.environ.get(api_key_env) or "EMPTY"  # local servers accept any key; never logged
    inner = OpenAIBackend(
        model=model, base_url=base_url, api_key=api_key, max_concurrency=max_concurrency, **backend_kwargs
    )
    path = cache_path or (Path(cache_dir) / CACHE_FILE if cache_dir else None)
    return CachedBackend(inner, ResponseCache(path))
