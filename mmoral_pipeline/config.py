"""The configuration contract: where sources are declared and where outputs go.

- Sources: a YAML file, default `assets/sources.yaml`, overridable with `MMORAL_SOURCES`.
- Outputs: `$MMORAL_HOME/<asset_name>/<partition>.parquet`, default `MMORAL_HOME=./.mmoral`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, field_validator

PACKAGE_ROOT = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_ROOT.parent
DEFAULT_SOURCES = REPO_ROOT / "assets" / "sources.yaml"
PROMPTS_DIR = REPO_ROOT / "prompts"
SHARD_SEPARATOR = "__"


class SourceSpec(BaseModel):
    """One raw-data source: a folder in one public format."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    format: str  # coco | dentex | labelme | yolo | ufba_masks | dc1000_masks | tufts | mmoral_json | manifest
    root: str  # folder; relative paths are relative to the sources file
    images: str | None = None  # image folder relative to root (format default when None)
    annotations: str | None = None  # annotation file or folder relative to root
    shard_size: int | None = Field(default=None, ge=1)  # images per partition; None = one partition
    options: dict[str, Any] = Field(default_factory=dict)  # class_map, box_order, score_field, ...

    @field_validator("name")
    @classmethod
    def _no_separator(cls, v: str) -> str:
        if SHARD_SEPARATOR in v:
            raise ValueError(f"source names may not contain {SHARD_SEPARATOR!r}")
        return v

    def root_path(self, base: Path) -> Path:
        p = Path(self.root)
        return (p if p.is_absolute() else base / p).resolve()


class SourcesFile(BaseModel):
    sources: list[SourceSpec]
    max_image_pixels: int = 120_000_000  # decompression-bomb guard
    side_consistency_max_wrong: float = 0.05  # share of tooth boxes on the wrong half allowed per source
    midline_tolerance: float = 0.04  # share of image width around the midline ignored for incisors
    base_dir: str = ""  # folder of the file; filled in by load_sources

    def source(self, name: str) -> SourceSpec:
        for s in self.sources:
            if s.name == name:
                return s
        raise KeyError(f"no source named {name!r} in {self.base_dir}; known: {[s.name for s in self.sources]}")

    def root_of(self, spec: SourceSpec) -> Path:
        return spec.root_path(Path(self.base_dir))


def sources_path() -> Path:
    return Path(os.environ.get("MMORAL_SOURCES") or DEFAULT_SOURCES).resolve()


def load_sources(path: str | Path | None = None) -> SourcesFile:
    p = Path(path).resolve() if path else sources_path()
    with open(p) as fh:
        doc = yaml.safe_load(fh) or {}
    doc["base_dir"] = str(p.parent)
    names = [s.get("name") for s in doc.get("sources", [])]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise ValueError(f"{p}: duplicate source names {sorted(dupes)}")
    return SourcesFile.model_validate(doc)


def mmoral_home() -> str:
    """Root of all Parquet outputs; a local folder or any fsspec URL (s3://...)."""
    home = os.environ.get("MMORAL_HOME") or str(REPO_ROOT / ".mmoral")
    if "://" in home:
        return home
    return str(Path(home).resolve())


def partition_key(source: str, shard: int | None) -> str:
    return source if shard is None else f"{source}{SHARD_SEPARATOR}{shard:04d}"


def split_partition_key(key: str) -> tuple[str, int | None]:
    if SHARD_SEPARATOR in key:
        source, shard = key.rsplit(SHARD_SEPARATOR, 1)
        return source, int(shard)
    return key, None
