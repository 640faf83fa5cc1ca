"""One dynamic partition per source batch (a whole source, or a shard of a large one)."""

import dagster as dg

BATCHES = "batches"
batch_partitions = dg.DynamicPartitionsDefinition(name=BATCHES)

# Partitioned asset checks (`partitions_def=` on a check) are "preview" in Dagster 1.13; we rely
# on them deliberately, so the warning is noise in every run log.
import warnings  # noqa: E402

warnings.filterwarnings(
    "ignore", message="Specifying a partitions_def on an AssetCheckSpec", category=dg.PreviewWarning
)
