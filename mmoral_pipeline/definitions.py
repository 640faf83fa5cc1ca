"""The one Definitions object that `workspace.yaml`, `dagster dev` and `mmoral materialize` load.

Importing this module must stay cheap: no torch, transformers, trl or datasets at import time.
"""

import dagster as dg

from mmoral_pipeline.defs.ingest import ingest_assets, ingest_checks
from mmoral_pipeline.defs.io_manager import ParquetIOManager
from mmoral_pipeline.defs.resources import SourcesResource

defs = dg.Definitions(
    assets=[*ingest_assets],
    asset_checks=[*ingest_checks],
    resources={
        "io_manager": ParquetIOManager(),
        "sources": SourcesResource(),
    },
)
