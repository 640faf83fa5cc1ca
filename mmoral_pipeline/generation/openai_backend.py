"""The `openai` backend: any OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, LM Studio).

asyncio with a concurrency window that grows by one request per window of successes and halves
on 429 (AIMD); per-request timeout; retries with exponential backoff and jitter that honour
`Retry-After` (and `retry-after-ms`) on 429 and 5xx; JSON replies validated against the named
pydantic schema with a bounded corrective retry. Each finished response is handed to
`on_result` immediately (the cache writes it), so a killed run loses at most the requests in flight.
Provider text (error bodies and replies) is redacted (`redact`) before it leaves the backend, so a
gateway that echoes the key cannot put it into the cache, a table, metadata or a log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import random
import re
import threading
import time
import urllib.parse
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from mmoral_pipeline.generation.schemas import schema_error
from mmoral_pipeline.generation.types import ChatRequest, ChatResponse, Usage

API_PARAMS = ("temperature", "top_p", "max_tokens", "seed", "presence_penalty", "frequency_penalty", "stop")
REDACTED = "[REDACTED]"
# What a credential looks like when a gateway echoes one back: a bearer token, an OpenAI-style key, a
# key=... / api_key: ... pair. Applied on top of the backend's own key, which is removed verbatim.
_CREDENTIAL = re.compile(
    r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"
    r"|\bsk-[A-Za-z0-9_-]{8,}"
    r"|((?:api[_-]?key|access[_-]?token|authorization|x-api-key)[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]{8,}"
)


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """`text` without the given secrets (verbatim) and without anything shaped like a credential.

    Everything a provider sends back (error bodies, and replies: some gateways echo the request) passes
    through here before it is stored (response cache, Parquet, metadata) or logged.
    """
    for secret in secrets:
        if secret and len(secret) >= 4 and secret in text:
            text = text.replace(secret, REDACTED)
    return _CREDENTIAL.sub(lambda m: (m.group(1) or m.group(2) or "") + REDACTED, text)


_SECRETS_IN_USE: set[str] = set()
_TRANSPORT_LOGGERS = ("openai", "httpx", "httpcore")  # (and their vendored forks, e.g. httpcore2)


def _guard_transport_logs(secret: str | None) -> None:
    """Redact `secret` from every record of the HTTP stack's loggers, created now or later: at DEBUG,
    httpcore prints response headers, where a gateway may echo the key. Installed once per process,
    as a log-record factory (it runs only for records that are emitted)."""
    if secret and len(secret) >= 4:
        _SECRETS_IN_USE.add(secret)
    previous = logging.getLogRecordFactory()
    if getattr(previous, "mmoral_redacting", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if _SECRETS_IN_USE and str(record.name).split(".")[0].rstrip("0123456789") in _TRANSPORT_LOGGERS:
            message = record.getMessage()
            clean = redact(message, _SECRETS_IN_USE)
            if clean != message:
                record.msg, record.args = clean, ()
        return record

    factory.mmoral_redacting = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


def redact_url(url: str | None) -> str | None:
    """A base URL fit for metadata: no user:password@ and no query string (either may carry a key)."""
    if not url:
        return url
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class AIMDLimiter:
    """Concurrency window: +1/limit per success (about +1 per window), x0.5 on a 429 (at most once per
    `refractory_s`)."""

    def __init__(self, max_limit: int, min_limit: float = 1.0, refractory_s: float = 0.5):
        self.max_limit = float(max_limit)
        self.min_limit = min_limit
        self.limit = float(max_limit)
        self.in_flight = 0
        self.refractory_s = refractory_s
        self.blocked_until = 0.0
        self.decreases = 0
        self.min_seen = self.limit
        self._last_decrease = -1e9
        self._cond: asyncio.Condition | None = None

    @property
    def cond(self) -> asyncio.Condition:
        if self._cond is None:
            self._cond = asyncio.Condition()
        return self._cond

    async def acquire(self) -> None:
        async with self.cond:
            while True:
                wait = self.blocked_until - time.monotonic()
                if wait > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.cond.wait(), timeout=wait)
                    continue
                if self.in_flight < max(1, int(self.limit)):
                    break
                await self.cond.wait()
            self.in_flight += 1

    async def release(self, outcome: str, retry_after: float | None = None) -> None:
        async with self.cond:
            self.in_flight -= 1
            now = time.monotonic()
            if outcome == "ok":
                self.limit = min(self.max_limit, self.limit + 1.0 / max(self.limit, 1.0))
            elif outcome == "rate_limited":
                if now - self._last_decrease >= self.refractory_s:
                    self.limit = max(self.min_limit, self.limit / 2)
                    self.decreases += 1
                    self._last_decrease = now
                    self.min_seen = min(self.min_seen, self.limit)
                if retry_after:
                    self.blocked_until = max(self.blocked_until, now + retry_after)
            # wake only as many waiters as there are free slots (notify_all would wake every queued
            # request on every release: quadratic with thousands of queued requests)
            free = max(1, int(self.limit)) - self.in_flight
            if free > 0:
                self.cond.notify(free)


def parse_retry_after(headers: Any) -> float | None:
    """Seconds to wait from `retry-after-ms` or `retry-after` (seconds or HTTP date); None when absent."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    ra = headers.get("retry-after")
    if not ra:
        return None
    try:
        return max(0.0, float(ra))
    except ValueError:
        when = email.utils.parsedate_to_datetime(ra)
        return max(0.0, when.timestamp() - time.time()) if when else None


class OpenAIBackend:
    name = "openai"

    def __init__(
        self,
        *,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        max_concurrency: int = 16,
        timeout_s: float = 120.0,
        max_retries: int = 6,
        json_retries: int = 2,
        json_mode: bool = True,
        backoff_base_s: float = 0.5,
        backoff_cap_s: float = 60.0,
        seed: int | None = None,
    ):
        self.model = model
        self.base_url = base_url
        self._api_key = api_key or "EMPTY"  # local servers accept any key; never logged or stored
        _guard_transport_logs(api_key)
        self.max_concurrency = max_concurrency
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.json_retries = json_retries
        self.json_mode = json_mode
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self._rng = random.Random(seed)
        self.stats: dict[str, float] = defaultdict(float)
        self.limiter: AIMDLimiter | None = None

    def __repr__(self) -> str:  # no key in any repr
        return f"OpenAIBackend(model={self.model!r}, base_url={redact_url(self.base_url)!r})"

    def _clean(self, text: str) -> str:
        """Provider text without this backend's key (or any credential) in it."""
        return redact(text, [self._api_key if self._api_key != "EMPTY" else None])

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return retry_after + self._rng.uniform(0, 0.1 * max(retry_after, 0.1))
        exp = min(self.backoff_cap_s, self.backoff_base_s * 2 ** (attempt - 1))
        return self._rng.uniform(exp / 2, exp)  # equal jitter

    def complete(
        self, requests: list[ChatRequest], on_result: Callable[[int, ChatResponse], None] | None = None
    ) -> list[ChatResponse]:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.acomplete(requests, on_result))
        box: dict[str, Any] = {}

        def runner() -> None:
            try:
                box["out"] = asyncio.run(self.acomplete(requests, on_result))
            except BaseException as exc:
                box["exc"] = exc

        t = threading.Thread(target=runner)
        t.start()
        t.join()
        if "exc" in box:
            raise box["exc"]
        return box["out"]

    async def acomplete(
        self, requests: list[ChatRequest], on_result: Callable[[int, ChatResponse], None] | None = None
    ) -> list[ChatResponse]:
        import openai

        if self.limiter is None:
            self.limiter = AIMDLimiter(self.max_concurrency)
        else:  # keep the learned window across batches; asyncio primitives belong to this new loop
            self.limiter._cond = None
            self.limiter.in_flight = 0
        # The client's own retries are off: ours honour Retry-After and drive the AIMD window.
        # Several clients of <= 16 connections each: the HTTP pool scans all its connections for
        # every request, which costs more than the request itself at 64 connections in one pool.
        n_clients = max(1, -(-self.max_concurrency // 16))
        clients = [
            openai.AsyncOpenAI(base_url=self.base_url, api_key=self._api_key, max_retries=0, timeout=self.timeout_s)
            for _ in range(n_clients)
        ]
        try:
            return list(
                await asyncio.gather(
                    *(self._one(clients[i % n_clients], i, r, on_result) for i, r in enumerate(requests))
                )
            )
        finally:
            for client in clients:
                await client.close()
            self.stats["limiter_min"] = self.limiter.min_seen
            self.stats["limiter_final"] = self.limiter.limit
            self.stats["limiter_decreases"] = self.limiter.decreases

    async def _one(
        self, client: Any, index: int, req: ChatRequest, on_result: Callable[[int, ChatResponse], None] | None
    ) -> ChatResponse:
        import openai

        assert self.limiter is not None
        h = req.request_hash(self.name, self.model)
        messages = list(req.messages)
        api = {k: v for k, v in req.params.items() if k in API_PARAMS}
        if req.json_schema and self.json_mode:
            api["response_format"] = {"type": "json_object"}
        usage = Usage()
        t0 = time.monotonic()
        calls = failures = json_tries = 0
        last_error = ""
        while failures <= self.max_retries:
            calls += 1
            self.stats["http_requests"] += 1
            retry_after: float | None = None
            outcome = "error"
            resp = None
            await self.limiter.acquire()
            try:
                resp = await client.chat.completions.create(
                    model=self.model, messages=messages, timeout=self.timeout_s, **api
                )
                outcome = "ok"
            except openai.RateLimitError as exc:
                outcome, retry_after, last_error = (
                    "rate_limited",
                    parse_retry_after(exc.response.headers),
                    "429 rate limited",
                )
                self.stats["rate_limited"] += 1
            except openai.APIStatusError as exc:
                last_error = f"HTTP {exc.status_code}"
                if exc.status_code >= 500 or exc.status_code in (408, 409):
                    retry_after = parse_retry_after(exc.response.headers)
                    self.stats["server_errors"] += 1
                else:  # 4xx other than 429: retrying cannot help
                    await self.limiter.release("error")
                    self.stats["failed"] += 1
                    return ChatResponse(
                        text="",
                        request_hash=h,
                        backend=self.name,
                        model=self.model,
                        attempts=calls,
                        latency_s=time.monotonic() - t0,
                        error=self._clean(f"{last_error}: {exc}")[:300],
                    )
            except openai.APITimeoutError:
                last_error = f"timeout after {self.timeout_s}s"
                self.stats["timeouts"] += 1
            except openai.APIConnectionError as exc:
                last_error = self._clean(f"connection error: {exc}")[:200]
                self.stats["connection_errors"] += 1
            await self.limiter.release(outcome, retry_after)
            if outcome != "ok":
                failures += 1
                if failures > self.max_retries:
                    break
                delay = self._backoff(failures, retry_after)
                self.stats["retries"] += 1
                self.stats["backoff_s"] += delay
                await asyncio.sleep(delay)
                continue
            assert resp is not None
            text = self._clean((resp.choices[0].message.content or "") if resp.choices else "")
            if resp.usage is not None:
                usage.prompt_tokens += resp.usage.prompt_tokens or 0
                usage.completion_tokens += resp.usage.completion_tokens or 0
            err = schema_error(req.json_schema, text)
            if err and json_tries < self.json_retries:
                json_tries += 1
                self.stats["json_retries"] += 1
                messages = messages + [
                    {"role": "assistant", "content": text},
                    {
                        "role": "user",
                        "content": f"That reply was not valid ({err}). Reply again with only the corrected JSON.",
                    },
                ]
                continue
            self.stats["succeeded"] += 1
            self.stats["prompt_tokens"] += usage.prompt_tokens
            self.stats["completion_tokens"] += usage.completion_tokens
            out = ChatResponse(
                text=text,
                request_hash=h,
                backend=self.name,
                model=self.model,
                usage=usage,
                attempts=calls,
                latency_s=time.monotonic() - t0,
                error=self._clean(f"invalid_json: {err}") if err else None,
            )
            if on_result is not None:
                on_result(index, out)
            return out
        self.stats["failed"] += 1
        return ChatResponse(text="", request_hash=h, backend=self.name, model=self.model, usage=usage, attempts=calls,
                            latency_s=time.monotonic() - t0, error=f"failed after {calls} attempts: {last_error}")
