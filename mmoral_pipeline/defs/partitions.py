"""One dynamic partition per source batch (a whole source, or a shard of a large one)."""

import dagster as dg

BATCHES = "batches"
batch_partitions = dg.DynamicPartitionsDefinition(name=BATCHES)
