"""The attribute tables as polars frames: `image_attributes` (one document per image) and
`tooth_attributes` (one row per tooth, conditions as a list of structs)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

import polars as pl
import pyarrow as pa

from mmoral_pipeline.domain.attributes import ImageAttributes

CONDITION_STRUCT = pl.Struct(
    {
        "category": pl.String,
        "bbox": pl.List(pl.Float64),
        "score": pl.Float64,
        "type": pl.String,
        "annotation_ids": pl.List(pl.String),
    }
)
TOOTH_ATTRIBUTES = {
    "image_id": pl.String,
    "partition": pl.String,
    "attribute_row_hash": pl.String,
    "tooth_id": pl.Int64,
    "quadrant": pl.Int64,
    "is_wisdom": pl.Boolean,
    "side": pl.String,
    "wisdom_status": pl.String,
    "bbox": pl.List(pl.Float64),
    "center": pl.List(pl.Float64),
    "score": pl.Float64,
    "n_conditions": pl.Int64,
    "conditions": pl.List(CONDITION_STRUCT),
    "annotation_ids": pl.List(pl.String),
}
IMAGE_ATTRIBUTES = {
    "image_id": pl.String,
    "source": pl.String,
    "partition": pl.String,
    "file_name": pl.String,
    "path": pl.String,
    "width": pl.Int64,
    "height": pl.Int64,
    "attribute_row_hash": pl.String,
    "document": pl.String,
    "n_teeth": pl.Int64,
    "n_conditions": pl.Int64,
    "n_jaw_findings": pl.Int64,
    "n_missing_regions": pl.Int64,
    "n_unknown_tooth_findings": pl.Int64,
    "n_recommendations": pl.Int64,
    "rules_version": pl.String,
    "settings_hash": pl.String,
}


def document_json(doc: ImageAttributes) -> tuple[str, str]:
    """(document JSON string, content hash): the hash equals `doc.content_hash()`, computed once."""
    blob = json.dumps(doc.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return blob, hashlib.sha256(blob.encode()).hexdigest()[:16]


def _image_lookup(images: pl.DataFrame) -> dict[str, tuple[str | None, str | None, str | None]]:
    cols = [c if c in images.columns else None for c in ("source", "partition", "path")]
    n = images.height
    values = [images[c].to_list() if c else [None] * n for c in cols]
    return {iid: (s, p, path) for iid, s, p, path in zip(images["image_id"].to_list(), *values, strict=True)}


def attribute_frames(
    documents: Sequence[ImageAttributes], images: pl.DataFrame, *, rules_version: str, settings_hash: str
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(`image_attributes`, `tooth_attributes`) for the documents; `images` supplies source/partition/path."""
    lookup = _image_lookup(images)
    img_rows: list[tuple] = []
    tooth_cols: dict[str, list] = {k: [] for k in TOOTH_ATTRIBUTES}
    for doc in documents:
        blob, row_hash = document_json(doc)
        source, partition, path = lookup.get(doc.image_id, (None, None, None))
        n_cond = sum(len(t.conditions) for t in doc.teeth)
        jaw = doc.jaw
        img_rows.append(
            (
                doc.image_id, source, partition, doc.file_name, path, doc.width, doc.height, row_hash, blob,
                len(doc.teeth), n_cond, len(jaw.bone_loss) + len(jaw.mandibular_canal) + len(jaw.maxillary_sinus),
                len(doc.missing_teeth), len(doc.unknown_tooth_findings), len(doc.recommendations),
                rules_version, settings_hash,
            )
        )
        for t in doc.teeth:
            tooth_cols["image_id"].append(doc.image_id)
            tooth_cols["partition"].append(partition)
            tooth_cols["attribute_row_hash"].append(row_hash)
            tooth_cols["tooth_id"].append(t.tooth_id)
            tooth_cols["quadrant"].append(t.quadrant)
            tooth_cols["is_wisdom"].append(t.is_wisdom)
            tooth_cols["side"].append(t.side)
            tooth_cols["wisdom_status"].append(t.wisdom_status)
            tooth_cols["bbox"].append(t.bbox)
            tooth_cols["center"].append(t.center)
            tooth_cols["score"].append(t.score)
            tooth_cols["n_conditions"].append(len(t.conditions))
            tooth_cols["conditions"].append(
                [
                    {"category": c.category.value, "bbox": c.bbox, "score": c.score, "type": c.type, "annotation_ids": c.annotation_ids}
                    for c in t.conditions
                ]
            )
            tooth_cols["annotation_ids"].append(t.annotation_ids)
    image_frame = pl.DataFrame(img_rows, schema=IMAGE_ATTRIBUTES, orient="row") if img_rows else pl.DataFrame(schema=IMAGE_ATTRIBUTES)
    # pyarrow builds nested list/struct columns ~20x faster than polars does from Python objects.
    arrow_schema = pl.DataFrame(schema=TOOTH_ATTRIBUTES).to_arrow().schema
    table = pa.table({name: pa.array(tooth_cols[name], type=arrow_schema.field(name).type) for name in TOOTH_ATTRIBUTES})
    tooth_frame = pl.from_arrow(table)
    assert isinstance(tooth_frame, pl.DataFrame)
    tooth_frame = tooth_frame.cast(TOOTH_ATTRIBUTES)  # type: ignore[arg-type]
    return image_frame, tooth_frame


def documents_from_frame(image_attributes: pl.DataFrame) -> list[ImageAttributes]:
    """The documents back from an `image_attributes` frame (its `document` column)."""
    return [ImageAttributes.model_validate_json(s) for s in image_attributes["document"].to_list()]
