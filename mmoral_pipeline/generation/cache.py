"""Persistent response cache: SQLite under `$MMORAL_HOME/llm_cache.sqlite`, keyed by request hash.

Each response is written (and committed) as soon as it arrives, so a run killed half-way resumes
without re-sending completed requests; WAL mode and a busy timeout make it safe for several
processes (Dagster's multiprocess executor) at once. Only answered requests are stored: a
transport failure (every retry failed) is not, so the next run tries again.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from mmoral_pipeline.config import mmoral_home
from mmoral_pipeline.generation.types import ChatResponse

_DDL = """
CREATE TABLE IF NOT EXISTS responses (
    request_hash TEXT PRIMARY KEY,
    backend TEXT NOT NULL,
    model TEXT NOT NULL,
    response_json TEXT NOT NULL,
    created_at REAL NOT NULL
)
"""


def default_cache_path() -> Path:
    home = mmoral_home()
    if "://" in home:  # object storage cannot host SQLite: keep the cache local
        return Path.home() / ".cache" / "mmoral" / "llm_cache.sqlite"
    return Path(home) / "llm_cache.sqlite"


class ResponseCache:
    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else default_cache_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._conn() as conn:
            conn.execute(_DDL)

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=60000")
            self._local.conn = conn
        return conn

    def get_many(self, hashes: Iterable[str]) -> dict[str, ChatResponse]:
        hashes = list(dict.fromkeys(hashes))
        out: dict[str, ChatResponse] = {}
        conn = self._conn()
        for i in range(0, len(hashes), 500):
            chunk = hashes[i : i + 500]
            marks = ",".join("?" * len(chunk))
            q = f"SELECT request_hash, response_json FROM responses WHERE request_hash IN ({marks})"
            for h, blob in conn.execute(q, chunk):
                out[h] = ChatResponse.model_validate_json(blob)
        return out

    def get(self, request_hash: str) -> ChatResponse | None:
        return self.get_many([request_hash]).get(request_hash)

    def put(self, response: ChatResponse) -> None:
        self.put_many([response])

    def put_many(self, responses: Iterable[ChatResponse]) -> None:
        rows = [(r.request_hash, r.backend, r.model, r.model_dump_json(), time.time()) for r in responses]
        if not rows:
            return
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany("INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?)", rows)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def __len__(self) -> int:
        return self._conn().execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
