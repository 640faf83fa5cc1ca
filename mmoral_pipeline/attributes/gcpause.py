"""Pause Python's cyclic garbage collector around the stage's object-heavy loops.

A full MMOral-size run creates millions of short-lived, acyclic objects (findings, models,
dicts); each GC pass rescans everything still alive, which costs about half the stage's time.
Reference counting still frees memory while the collector is paused.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused_gc() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
