"""The knobs of the post-processing rules: one pydantic model, defaults from the MMOral paper.

The Dagster asset exposes the same fields as run config (launchpad), so a user can change a
threshold without touching code; `settings_hash()` goes on every output row so a changed
threshold is visible in the data.
"""

from __future__ import annotations

import hashlib
import json

from pydantic import BaseModel, Field

from mmoral_pipeline.domain.taxonomy import Category


class AttributeSettings(BaseModel):
    """Confidence thresholds and overlap limits of the attribute rules (MMOral defaults)."""

    finding_threshold: float = Field(
        0.4, ge=0.0, le=1.0, description="Minimum score of any finding without its own threshold."
    )
    periapical_lesion_threshold: float = Field(0.7, ge=0.0, le=1.0)
    impacted_threshold: float = Field(0.55, ge=0.0, le=1.0)
    bone_loss_threshold: float = Field(0.6, ge=0.0, le=1.0)
    tooth_threshold: float = Field(
        0.0, ge=0.0, le=1.0, description="Minimum score of a tooth box (MMOral keeps low-score teeth, so 0 by default)."
    )
    class_thresholds: dict[str, float] = Field(
        default_factory=dict,
        description="Extra per-category thresholds by unified name (e.g. {'caries': 0.5}); win over the fields above.",
    )
    unscored_score: float = Field(
        1.0, ge=0.0, le=1.0, description="Score given to annotations without one (human labels)."
    )
    duplicate_tooth_iou: float = Field(
        0.95, ge=0.0, le=1.0, description="Tooth boxes overlapping above this IoU are one tooth."
    )
    reassign_iou: float = Field(
        0.5, ge=0.0, le=1.0, description="An unknown-tooth finding joins a tooth above this IoU."
    )
    crown_filling_iou: float = Field(
        0.9, ge=0.0, le=1.0, description="Crown and filling above this IoU: keep the higher score."
    )
    copy_finding_iou: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="One X-ray from several sources: findings of one category from two copies above this IoU "
        "are one finding.",
    )

    def threshold_for(self, category: Category) -> tuple[str, float]:
        """(threshold name, value) that applies to a category; the name is what accounting reports."""
        if category.value in self.class_thresholds:
            return f"class_thresholds.{category.value}", float(self.class_thresholds[category.value])
        if category == Category.TOOTH:
            return "tooth_threshold", self.tooth_threshold
        if category == Category.PERIAPICAL_LESION:
            return "periapical_lesion_threshold", self.periapical_lesion_threshold
        if category == Category.IMPACTED_TOOTH:
            return "impacted_threshold", self.impacted_threshold
        if category == Category.BONE_LOSS:
            return "bone_loss_threshold", self.bone_loss_threshold
        return "finding_threshold", self.finding_threshold

    def settings_hash(self) -> str:
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:12]
