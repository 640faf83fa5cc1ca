"""Knobs of the dataset stage (the Dagster launchpad config mirrors these fields)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from mmoral_pipeline.config import mmoral_home
from mmoral_pipeline.dataset.split import DEFAULT_HOLDOUT_FRACTION, DEFAULT_VAL_FRACTION
from mmoral_pipeline.domain.near_duplicates import NEAR_DUPLICATE_MAX_DISTANCE


class DatasetSettings(BaseModel):
    """How instruction_samples is split and filtered."""

    val_fraction: float = Field(default=DEFAULT_VAL_FRACTION, ge=0.0, le=1.0)
    holdout_fraction: float = Field(default=DEFAULT_HOLDOUT_FRACTION, ge=0.0, le=1.0)
    holdout_image_ids: list[str] = Field(default_factory=list)  # explicit hold-out; replaces the hash rule
    holdout_file: str = ""  # a text file with one image id per line, added to holdout_image_ids
    require_validated: bool = True  # drop rows whose validator verdicts say they failed
    # Perceptual-hash bits within which two images are one X-ray for the split (measured: 24). Lower it
    # and `split_disjoint`, which always compares at the measured distance, fails on any copy it separates.
    near_duplicate_max_distance: int = Field(default=NEAR_DUPLICATE_MAX_DISTANCE, ge=0, le=256)

    def explicit_holdout(self) -> set[str] | None:
        """The configured hold-out set, or None when the hash rule applies."""
        ids = set(self.holdout_image_ids)
        if self.holdout_file:
            text = Path(self.holdout_file).read_text(encoding="utf-8")
            ids |= {line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")}
        return ids or None


def exports_dir() -> Path:
    """`$MMORAL_HOME/exports` (exports are local files: trainers and TSV readers want paths)."""
    home = mmoral_home()
    if "://" in home:
        raise ValueError(f"exports need a local MMORAL_HOME, got {home!r}")
    return Path(home) / "exports"

