"""Cutting sources into batches: one partition per source, or per shard of `shard_size` items."""

from __future__ import annotations

from dataclasses import dataclass

from mmoral_pipeline.config import SourcesFile, SourceSpec, partition_key, split_partition_key
from mmoral_pipeline.sources import get_reader


@dataclass(frozen=True)
class Batch:
    key: str
    source: SourceSpec
    items: tuple[str, ...] | None  # None = the whole source


def plan_batches(sources: SourcesFile) -> list[Batch]:
    batches: list[Batch] = []
    for spec in sources.sources:
        if not spec.shard_size:
            batches.append(Batch(partition_key(spec.name, None), spec, None))
            continue
        items = get_reader(spec.format).list_items(spec, sources)
        for i in range(0, max(len(items), 1), spec.shard_size):
            batches.append(Batch(partition_key(spec.name, i // spec.shard_size), spec, tuple(items[i : i + spec.shard_size])))
    return batches


def batch_for_partition(sources: SourcesFile, key: str) -> Batch:
    source_name, shard = split_partition_key(key)
    spec = sources.source(source_name)
    if shard is None:
        if spec.shard_size:
            raise KeyError(f"source {source_name!r} is sharded; partition keys look like {partition_key(source_name, 0)}")
        return Batch(key, spec, None)
    if not spec.shard_size:
        raise KeyError(f"partition {key!r}: source {source_name!r} has no shard_size")
    items = get_reader(spec.format).list_items(spec, sources)
    start = shard * spec.shard_size
    return Batch(key, spec, tuple(items[start : start + spec.shard_size]))
