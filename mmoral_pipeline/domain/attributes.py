"""Structured per-image attributes: this project's form of the MMOral per-image attribute JSON.

MMOral's released JSON holds, per image, the teeth with their conditions, jaw-level findings and
image-level regions. Our `ImageAttributes` is that document; `to_mmoral_json()` writes it in the
layout below and `sources/mmoral_json.py` reads it back (round-trip tested).

    {
      "image_id": "...", "file_name": "...", "width": 2744, "height": 1316,
      "acquisition_time": null,
      "teeth": [
        {"tooth_id": 36, "quadrant": 3, "is_wisdom": false, "side": "lower left",
         "bbox": [x1, y1, x2, y2], "center": [cx, cy], "score": 0.93,
         "conditions": [{"category": "caries", "bbox": [...], "score": 0.82, "type": null}]}
      ],
      "jaw": {"bone_loss": [{"category": "bone_loss", "region": "lower", "bbox": [...], "score": 0.7}],
              "mandibular_canal": [...], "maxillary_sinus": [...]},
      "missing_teeth": [{"category": "missing_tooth", "bbox": [...], "score": 0.9, "teeth": [36]}],
      "unknown_tooth_findings": [{"category": "caries", "bbox": [...], "score": 0.6, "side": "upper left"}],
      "recommendations": [{"kind": "extraction", "tooth_id": 18, "reason": "..."}],
      "assessed": ["tooth", "caries", ...]
    }

`assessed` is the label coverage: the categories that were looked for on this image (the union of
its sources' `covers`). A category outside it was not assessed: nothing may be said about it,
neither present nor absent. A document without the key (MMOral's own JSON, whose visual experts
label every category) assesses everything.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel, Field

from mmoral_pipeline.domain.taxonomy import Category


class Condition(BaseModel):
    """One finding with its own box and confidence."""

    category: Category
    bbox: list[float] = Field(min_length=4, max_length=4)
    score: float = 1.0
    type: str | None = None  # periapical lesion type: granuloma / cyst / abscess
    region: str | None = None  # jaw findings: "upper" / "lower"; unknown-tooth findings: side
    side: str | None = None
    teeth: list[int] = Field(default_factory=list)  # missing-tooth regions: the teeth it spans
    annotation_ids: list[str] = Field(default_factory=list)  # lineage back to raw_annotations


class ToothAttributes(BaseModel):
    tooth_id: int  # FDI
    quadrant: int
    is_wisdom: bool
    side: str  # "upper right" etc. (patient's side)
    bbox: list[float] = Field(min_length=4, max_length=4)
    center: list[float] = Field(min_length=2, max_length=2)
    score: float = 1.0
    wisdom_status: str | None = None  # "impacted" / "erupted" for wisdom teeth
    conditions: list[Condition] = Field(default_factory=list)
    annotation_ids: list[str] = Field(default_factory=list)


class JawAttributes(BaseModel):
    bone_loss: list[Condition] = Field(default_factory=list)
    mandibular_canal: list[Condition] = Field(default_factory=list)
    maxillary_sinus: list[Condition] = Field(default_factory=list)


class Recommendation(BaseModel):
    kind: str  # "extraction"
    tooth_id: int
    reason: str


class ImageAttributes(BaseModel):
    image_id: str
    file_name: str = ""
    width: int
    height: int
    acquisition_time: str | None = None
    teeth: list[ToothAttributes] = Field(default_factory=list)
    jaw: JawAttributes = Field(default_factory=JawAttributes)
    missing_teeth: list[Condition] = Field(default_factory=list)
    unknown_tooth_findings: list[Condition] = Field(default_factory=list)
    recommendations: list[Recommendation] = Field(default_factory=list)
    assessed: list[Category] = Field(default_factory=lambda: list(Category))  # label coverage (see module docstring)

    def is_assessed(self, category: Category) -> bool:
        return category in self.assessed

    def to_mmoral_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @classmethod
    def from_mmoral_json(cls, doc: dict[str, Any]) -> ImageAttributes:
        return cls.model_validate(doc)

    def content_hash(self) -> str:
        """Hash of the document; the `attribute_row_hash` every generated row carries."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]
