"""Backend construction and the cache in front of every backend.

`CachedBackend` answers from the persistent cache first and sends only the misses (each
distinct request once per batch); `stats` says how many were sent, so "re-materialising with
nothing changed sends zero requests" is observable. Every answered request (from the cache or
the endpoint) ticks the progress of the calling context (`mmoral_pipeline.progress`).
"""

from __future__ import annotations

import inspect
from collections import defaultdict
from collections.abc import Callable

from mmoral_pipeline import progress
from mmoral_pipeline.generation.cache import ResponseCache
from mmoral_pipeline.generation.types import ChatBackend, ChatRequest, ChatResponse


class CachedBackend:
    def __init__(self, inner: ChatBackend, cache: ResponseCache | None):
        self.inner = inner
        self.cache = cache
        self.name = inner.name
        self.model = inner.model
        self.stats: dict[str, float] = defaultdict(float)

    def complete(
        self, requests: list[ChatRequest], on_result: Callable[[int, ChatResponse], None] | None = None
    ) -> list[ChatResponse]:
        hashes = [r.request_hash(self.name, self.model) for r in requests]
        hits = self.cache.get_many(hashes) if self.cache is not None else {}
        out: list[ChatResponse | None] = [None] * len(requests)
        first: dict[str, int] = {}
        todo: list[int] = []
        for i, h in enumerate(hashes):
            if h in hits:
                out[i] = hits[h].model_copy(update={"cache_hit": True})
            elif h in first:
                continue
            else:
                first[h] = i
                todo.append(i)
        n_hits = sum(1 for o in out if o is not None)
        self.stats["requests"] += len(requests)
        self.stats["cache_hits"] += n_hits
        self.stats["sent"] += len(todo)
        tracker = progress.current()  # captured here: backends may call back from another thread
        if tracker is not None:
            tracker.advance(len(requests) - len(todo), cache_hits=n_hits)  # hits and in-batch repeats: answered now
        if todo:
            stored: set[int] = set()

            def store(j: int, resp: ChatResponse) -> None:
                if self.cache is not None:
                    self.cache.put(resp)
                if on_result is not None:
                    on_result(todo[j], resp)
                stored.add(j)
                if tracker is not None:
                    tracker.advance(1, sent=1)

            batch = [requests[i] for i in todo]
            if "on_result" in inspect.signature(self.inner.complete).parameters:
                results = self.inner.complete(batch, on_result=store)  # type: ignore[call-arg]
            else:  # a backend that only speaks the bare contract: store when the batch returns
                results = self.inner.complete(batch)
                for j, r in enumerate(results):
                    if r.error is None:
                        store(j, r)
            failed = len(todo) - len(stored)  # every retry failed: not stored, the next run asks again
            if tracker is not None and failed:
                tracker.advance(failed, sent=failed, failed=failed)
            for i, r in zip(todo, results, strict=True):
                out[i] = r
        for i, h in enumerate(hashes):
            if out[i] is None:
                out[i] = out[first[h]]
        return out  # type: ignore[return-value]
