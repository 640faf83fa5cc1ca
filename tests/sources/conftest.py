"""Helpers for the reader tests: build a one-source SourcesFile and ingest it with balance checks."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mmoral_pipeline.config import PanoramicLimits, SourcesFile, SourceSpec
from mmoral_pipeline.domain.records import IngestBatch
from mmoral_pipeline.sources import list_source_items, read_source


@pytest.fixture(autouse=True)
def _private_home(mmoral_home: Path) -> Path:
    """Readers may write (embedded labelme images): never into the real MMORAL_HOME."""
    return mmoral_home


# Reader tests use toy images of any shape; the OPG-shape rule (`not_panoramic`) has tests of its own
# (test_quarantine.py, and the real-data suite runs with the production defaults).
ANY_SHAPE = PanoramicLimits(min_aspect=0.1, max_aspect=10.0)


def make_sources(
    root: Path, fmt: str, *, name: str = "src", max_image_pixels: int = 120_000_000,
    panoramic: PanoramicLimits = ANY_SHAPE, **spec: Any,
) -> tuple[SourceSpec, SourcesFile]:
    s = SourceSpec(name=name, format=fmt, root=str(root), **spec)
    return s, SourcesFile(sources=[s], max_image_pixels=max_image_pixels, panoramic=panoramic, base_dir=str(root))


def balanced(batch: IngestBatch) -> dict[str, int]:
    ok, counts = batch.counts_balance()
    assert ok, f"counts do not balance: {counts}"
    return counts


def reasons(batch: IngestBatch, kind: str | None = None) -> Counter:
    return Counter(r.reason.value for r in batch.rejections if kind is None or r.kind == kind)


@pytest.fixture()
def ingest() -> Callable[..., IngestBatch]:
    """Factory: ingest(root, fmt, **spec) -> balanced IngestBatch (also checks every shard split)."""

    def _ingest(
        root: Path,
        fmt: str,
        *,
        items: list[str] | None = None,
        max_image_pixels: int = 120_000_000,
        check_shards: bool = True,
        panoramic: PanoramicLimits = ANY_SHAPE,
        **spec: Any,
    ) -> IngestBatch:
        s, sf = make_sources(root, fmt, max_image_pixels=max_image_pixels, panoramic=panoramic, **spec)
        batch = read_source(s, sf, items)
        balanced(batch)
        if items is None and check_shards:
            # reading item by item gives the same records: nothing lost or doubled by sharding
            keys = list_source_items(s, sf)
            assert keys == sorted(keys) and len(keys) == len(set(keys))
            parts = IngestBatch()
            for k in keys:
                part = read_source(s, sf, [k])
                balanced(part)
                parts.extend(part)
            assert sorted(a.annotation_id for a in parts.annotations) == sorted(
                a.annotation_id for a in batch.annotations
            )
            assert sorted(i.image_id for i in parts.images) == sorted(i.image_id for i in batch.images)
            assert reasons(parts) == reasons(batch)
        return batch

    return _ingest
