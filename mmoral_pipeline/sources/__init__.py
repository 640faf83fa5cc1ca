"""One reader per on-disk format. `get_reader(format)` is the only lookup the pipeline uses."""

from __future__ import annotations

import importlib

from mmoral_pipeline.sources.base import SourceReader

# format name -> "module:ReaderClass"
READERS: dict[str, str] = {}


def get_reader(fmt: str) -> SourceReader:
    if fmt not in READERS:
        raise ValueError(f"unknown source format {fmt!r}; supported: {sorted(READERS)}")
    module, cls = READERS[fmt].split(":")
    return getattr(importlib.import_module(module), cls)()
