"""Resources shared by every asset group."""

import json
import os

import dagster as dg

from mmoral_pipeline.config import SourcesFile, load_sources


class SourcesResource(dg.ConfigurableResource):
    """The sources file: `MMORAL_SOURCES` or `assets/sources.yaml` unless a path is configured."""

    path: str | None = None

    def load(self) -> SourcesFile:
        return load_sources(self.path)


class ModelEndpoint(dg.Config):
    """One OpenAI-compatible endpoint: a model to benchmark, or an LLM judge."""

    name: str
    base_url: str
    model: str
    api_key: str | None = None  # a dg.EnvVar in the definitions: resolved at run time, never shown or stored
    text_only: bool = False


class ModelEndpoints(dg.ConfigurableResource):
    """The endpoints a run may call, by name. Configured where the code is deployed (definitions.py reads
    `MMORAL_BENCH_ENDPOINTS`), never in run config: whoever launches a run picks an endpoint by name and
    cannot send a key of the code server to another URL."""

    endpoints: list[ModelEndpoint] = []

    def get(self, name: str) -> ModelEndpoint:
        for endpoint in self.endpoints:
            if endpoint.name == name:
                return endpoint
        known = [e.name for e in self.endpoints] or "none (set MMORAL_BENCH_ENDPOINTS where the code runs)"
        raise KeyError(f"no endpoint named {name!r}; configured: {known}")

    def backend(self, name: str, max_concurrency: int = 8):
        """The endpoint's chat backend: the generation package's OpenAI client behind the response cache."""
        from mmoral_pipeline.generation.backends import CachedBackend
        from mmoral_pipeline.generation.cache import ResponseCache
        from mmoral_pipeline.generation.openai_backend import OpenAIBackend

        e = self.get(name)
        return CachedBackend(
            OpenAIBackend(model=e.model, base_url=e.base_url, api_key=e.api_key, max_concurrency=max_concurrency),
            ResponseCache(),
        )


def endpoints_from_env(variable: str = "MMORAL_BENCH_ENDPOINTS") -> ModelEndpoints:
    """`MMORAL_BENCH_ENDPOINTS`: a JSON list of {name, base_url, model, api_key_env?, text_only?}. The key is
    referenced as `dg.EnvVar(api_key_env)`: its value is read when a run starts, and only from there."""
    raw = os.environ.get(variable, "").strip()
    rows = json.loads(raw) if raw else []
    endpoints = []
    for row in rows:
        key_env = row.get("api_key_env")
        endpoints.append(ModelEndpoint(
            name=row["name"], base_url=row["base_url"], model=row["model"], text_only=bool(row.get("text_only", False)),
            api_key=dg.EnvVar(key_env) if key_env else None,
        ))
    return ModelEndpoints(endpoints=endpoints)
