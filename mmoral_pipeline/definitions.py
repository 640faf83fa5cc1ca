"""The one Definitions object that `workspace.yaml`, `dagster dev` and `mmoral materialize` load.

Importing this module must stay cheap: no torch, transformers, trl or datasets at import time
(tests/test_definitions_load.py guards it).
"""

import os

import dagster as dg

from mmoral_pipeline.defs.attributes import attributes_assets, attributes_checks
from mmoral_pipeline.defs.automation import automation_jobs, automation_schedules, automation_sensors
from mmoral_pipeline.defs.dataset import benchmark_checks, dataset_assets, dataset_checks, dataset_jobs
from mmoral_pipeline.defs.evaluation import evaluation_assets, evaluation_checks
from mmoral_pipeline.defs.experts import experts_defs
from mmoral_pipeline.defs.generation import LLMResource, generation_assets, generation_checks
from mmoral_pipeline.defs.ingest import ingest_assets, ingest_checks
from mmoral_pipeline.defs.io_manager import ParquetIOManager
from mmoral_pipeline.defs.resources import SourcesResource, endpoints_from_env
from mmoral_pipeline.defs.training import training_defs


def llm_from_env() -> LLMResource:
    """Offline unless MMORAL_LLM_BACKEND=openai; the key stays an EnvVar reference, never a value."""
    return LLMResource(
        backend=os.environ.get("MMORAL_LLM_BACKEND", "offline"),
        base_url=os.environ.get("MMORAL_LLM_BASE_URL") or None,
        model=os.environ.get("MMORAL_LLM_MODEL", ""),
        api_key=dg.EnvVar("MMORAL_LLM_API_KEY") if os.environ.get("MMORAL_LLM_API_KEY") else None,
        max_concurrency=int(os.environ.get("MMORAL_LLM_CONCURRENCY", "16")),
    )


core_defs = dg.Definitions(
    assets=[*ingest_assets, *attributes_assets, *generation_assets, *dataset_assets, *evaluation_assets],
    asset_checks=[
        *ingest_checks,
        *attributes_checks,
        *generation_checks,
        *dataset_checks,
        *evaluation_checks,
        *benchmark_checks,
    ],
    jobs=[*dataset_jobs, *automation_jobs],
    schedules=automation_schedules,
    sensors=automation_sensors,
    resources={
        "io_manager": ParquetIOManager(),
        "sources": SourcesResource(),
        "llm": llm_from_env(),
        "endpoints": endpoints_from_env(),
    },
)

defs = dg.Definitions.merge(core_defs, experts_defs, training_defs)
