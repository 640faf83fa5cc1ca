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
TRAINED_EXPERT = "expert_model"  # in a source's `experts:`: the expert the pipeline trains


class PanoramicLimits(BaseModel):
    """The shape of a panoramic X-ray (OPG): images outside it are quarantined as `not_panoramic`.

    Defaults from the real sources (README "Not a panoramic X-ray"): OPGs measure 1.60-2.33
    width/height (DENTEX, AKUDENTAL, DC1000, the xray-yolo set, MMOral-Bench); periapical and
    bitewing films are about 4:3 (1.33, e.g. a 604x444 film), cephalograms ~1.25, CBCT slices 1.0.
    No minimum size by default: public OPGs ship downscaled (MMOral-Bench 1100 px wide).
    """

    min_aspect: float = Field(default=1.5, gt=0)  # width / height
    max_aspect: float = Field(default=3.0, gt=0)
    min_width: int = Field(default=0, ge=0)  # pixels
    min_height: int = Field(default=0, ge=0)


# Formats whose public release changed the X-rays' shape: UFBA-425's instance-segmentation subset
# (Instance_seg_teeth) resized every OPG to a 512x512 square.
FORMAT_PANORAMIC: dict[str, dict[str, float]] = {"ufba_masks": {"min_aspect": 0.9}}


class SourceSpec(BaseModel):
    """One raw-data source: a folder in one public format."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    format: str  # coco | dentex | labelme | yolo | ufba_masks | dc1000_masks | tufts | mmoral_json | manifest | images
    root: str  # folder; relative paths are relative to the sources file
    images: str | None = None  # image folder relative to root (format default when None)
    annotations: str | None = None  # annotation file or folder relative to root
    shard_size: int | None = Field(default=None, ge=1)  # images per partition; None = one partition
    options: dict[str, Any] = Field(default_factory=dict)  # class_map, box_order, score_field, ...
    # Categories this source labels completely ('all' or names/synonyms); None = the format's
    # default (sources/coverage.py). Nothing is said about a category outside it.
    covers: list[str] | str | None = None
    # Per-source override of the file-level `panoramic` limits (e.g. a source of resized square OPGs).
    panoramic: dict[str, float] | None = None
    # Visual experts run over this source's images: checkpoint folders (relative to the sources file) or
    # `expert_model` (the newest checkpoint the `expert_model` asset trained). Their boxes complete the
    # categories the source's own labels do not cover.
    experts: list[str] = Field(default_factory=list)

    @field_validator("covers")
    @classmethod
    def _known_categories(cls, v: list[str] | str | None) -> list[str] | str | None:
        if v is not None:
            from mmoral_pipeline.domain.coverage import parse_coverage

            parse_coverage(v)  # raises with the list of known categories
        return v

    @field_validator("panoramic")
    @classmethod
    def _known_limits(cls, v: dict[str, float] | None) -> dict[str, float] | None:
        unknown = sorted(set(v or {}) - set(PanoramicLimits.model_fields))
        if unknown:
            raise ValueError(f"panoramic: unknown keys {unknown}; known: {sorted(PanoramicLimits.model_fields)}")
        return v

    @field_validator("name")
    @classmethod
    def _no_separator(cls, v: str) -> str:
        if SHARD_SEPARATOR in v:
            raise ValueError(f"source names may not contain {SHARD_SEPARATOR!r}")
        return v

    def expert_paths(self, base: Path) -> list[Path]:
        """The checkpoint folders of `experts`, `expert_model` resolved to `$MMORAL_HOME/expert_model/latest`."""
        out = []
        for entry in self.experts:
            if entry == TRAINED_EXPERT:
                out.append(Path(mmoral_home()) / "expert_model" / "latest")
                continue
            p = Path(entry).expanduser()
            out.append((p if p.is_absolute() else base / p).resolve())
        return out

    def root_path(self, base: Path) -> Path:
        p = Path(self.root)
        return (p if p.is_absolute() else base / p).resolve()


class SourcesFile(BaseModel):
    sources: list[SourceSpec]
    max_image_pixels: int = 120_000_000  # decompression-bomb guard
    side_consistency_max_wrong: float = 0.05  # share of tooth boxes on the wrong half allowed per source
    midline_tolerance: float = 0.04  # share of image width around the midline ignored for incisors
    panoramic: PanoramicLimits = Field(default_factory=PanoramicLimits)  # not_panoramic quarantine
    base_dir: str = ""  # folder of the file; filled in by load_sources

    def source(self, name: str) -> SourceSpec:
        for s in self.sources:
            if s.name == name:
                return s
        raise KeyError(f"no source named {name!r} in {self.base_dir}; known: {[s.name for s in self.sources]}")

    def root_of(self, spec: SourceSpec) -> Path:
        return spec.root_path(Path(self.base_dir))

    def panoramic_limits(self, spec: SourceSpec) -> PanoramicLimits:
        """The file-level limits, then the format's (`FORMAT_PANORAMIC`), then the source's own `panoramic:`."""
        return PanoramicLimits.model_validate(
            {**self.panoramic.model_dump(), **FORMAT_PANORAMIC.get(spec.format, {}), **(spec.panoramic or {})}
        )


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
    # Image ids are '<source>-<cleaned path>': source 'a' with file 'b-c.png' and source 'a-b' with
    # 'c.png' would both give 'a-b-c'. Unique ids by construction: no name may extend another by '-'.
    clashes = sorted(
        (a, b) for a in names for b in names if isinstance(a, str) and isinstance(b, str) and b.startswith(f"{a}-")
    )
    if clashes:
        a, b = clashes[0]
        raise ValueError(
            f"{p}: source names {a!r} and {b!r} would give colliding image ids ('{a}-...'); rename {b!r} (e.g. "
            f"{b.replace('-', '_')!r})"
        )
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
