"""Resources shared by every asset group."""


import dagster as dg

from mmoral_pipeline.config import SourcesFile, load_sources


class SourcesResource(dg.ConfigurableResource):
    """The sources file: `MMORAL_SOURCES` or `assets/sources.yaml` unless a path is configured."""

    path: str | None = None

    def load(self) -> SourcesFile:
        return load_sources(self.path)
