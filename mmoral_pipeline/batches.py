"""Cutting sources into batches: one partition per source, or per shard of `shard_size` items."""

from __future__ import annotations

import re
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
        for shard, shard_items_ in enumerate(shard_items(items, spec.shard_size)):
            batches.append(Batch(partition_key(spec.name, shard), spec, tuple(shard_items_)))
    return batches


def collision_key(item: str) -> str:
    """Items whose image ids could collide share this key: the letters and digits of the item without
    its suffix (an image id keeps letters, digits and '._-' and turns any other run into '_', so
    `a/b.png`, `a_b.png` and `a b.jpg` all give 'ab'). Coarser than the id on purpose."""
    stem = item.rsplit(".", 1)[0] if "." in item.rsplit("/", 1)[-1] else item
    return re.sub(r"[^A-Za-z0-9]", "", stem)


def shard_items(items: list[str], shard_size: int) -> list[list[str]]:
    """Cut sorted items into shards of `shard_size`, keeping items that could share an image id in the
    shard of the first of them, so the reader sees them together and quarantines the later ones as
    `id_collision` (ids are checked within a batch). Without such items: plain slices of the list."""
    shards: list[list[str]] = []
    home: dict[str, int] = {}
    filled = 0  # items placed in the shard being filled, counting only its own
    for item in items:
        key = collision_key(item)
        if key in home:
            shards[home[key]].append(item)
            continue
        if not shards or filled == shard_size:
            shards.append([])
            filled = 0
        shards[-1].append(item)
        home[key] = len(shards) - 1
        filled += 1
    return shards or [[]]


def batch_for_partition(sources: SourcesFile, key: str) -> Batch:
    source_name, shard = split_partition_key(key)
    spec = sources.source(source_name)
    if shard is None:
        if spec.shard_size:
            raise KeyError(
                f"source {source_name!r} is sharded; partition keys look like {partition_key(source_name, 0)}"
            )
        return Batch(key, spec, None)
    if not spec.shard_size:
        raise KeyError(f"partition {key!r}: source {source_name!r} has no shard_size")
    shards = shard_items(get_reader(spec.format).list_items(spec, sources), spec.shard_size)
    return Batch(key, spec, tuple(shards[shard]) if shard < len(shards) else ())
