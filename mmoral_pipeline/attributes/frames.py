"""The attribute tables as polars frames: `image_attributes` (one document per image) and
`tooth_attributes` (one row per tooth, conditions as a list of structs)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

import polars as pl

from mmoral_pipeline.attributes.gcpause import paused_gc
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
    "path": pl.String,  # the image the model sees (raw_images.model_image_path)
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
    "assessed": pl.List(pl.String),  # label coverage: the categories looked for (the document's `assessed`)
    "sources": pl.List(pl.String),  # every source that labelled this X-ray (several when copies were merged)
    "copies": pl.List(pl.String),  # image ids of the other copies (same sha256) merged into this document
}


def document_json(doc: ImageAttributes) -> tuple[str, str]:
    """(document JSON string, content hash): the hash equals `doc.content_hash()`, computed once.

    Same bytes as `content_hash` hashes (sorted keys, compact), but through pydantic's Rust
    serialiser, which is ~10x faster than `model_dump(mode="json")`; tests pin the equality.
    """
    blob = json.dumps(json.loads(doc.model_dump_json()), sort_keys=True, separators=(",", ":"))
    return blob, hashlib.sha256(blob.encode()).hexdigest()[:16]


def _image_lookup(images: pl.DataFrame) -> dict[str, tuple]:
    """image id -> (source, partition, path, sources, copies); `merged_sources` / `merged_copies`
    columns (set when copies of the X-ray were merged) default to [source] and []."""
    if "model_image_path" in images.columns:  # the pixels the model sees (the source file when not normalised)
        images = images.with_columns(pl.coalesce("model_image_path", "path").alias("path"))
    cols = [
        c if c in images.columns else None for c in ("source", "partition", "path", "merged_sources", "merged_copies")
    ]
    n = images.height
    values = [images[c].to_list() if c else [None] * n for c in cols]
    return {
        iid: (s, p, path, sources or ([s] if s else []), copies or [])
        for iid, s, p, path, sources, copies in zip(images["image_id"].to_list(), *values, strict=True)
    }


def attribute_frames(
    documents: Sequence[ImageAttributes], images: pl.DataFrame, *, rules_version: str, settings_hash: str
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(`image_attributes`, `tooth_attributes`) for the documents; `images` supplies source/partition/path."""
    with paused_gc():
        return _frames(documents, images, rules_version, settings_hash)


_TOOTH_FIELDS = {
    k: v
    for k, v in TOOTH_ATTRIBUTES.items()
    if k not in ("image_id", "partition", "attribute_row_hash", "n_conditions")
}
# The part of the document JSON the tooth table is cut from (other keys are ignored when decoding).
_DOCUMENT_TEETH = pl.Struct({"teeth": pl.List(pl.Struct(_TOOTH_FIELDS))})


def _frames(
    documents: Sequence[ImageAttributes], images: pl.DataFrame, rules_version: str, settings_hash: str
) -> tuple[pl.DataFrame, pl.DataFrame]:
    lookup = _image_lookup(images)
    img_rows: list[tuple] = []
    for doc in documents:
        blob, row_hash = document_json(doc)
        source, partition, path, sources, copies = lookup.get(doc.image_id, (None, None, None, [], []))
        jaw = doc.jaw
        img_rows.append(
            (
                doc.image_id, source, partition, doc.file_name, path, doc.width, doc.height, row_hash, blob,
                len(doc.teeth), sum(len(t.conditions) for t in doc.teeth),
                len(jaw.bone_loss) + len(jaw.mandibular_canal) + len(jaw.maxillary_sinus),
                len(doc.missing_teeth), len(doc.unknown_tooth_findings), len(doc.recommendations),
                rules_version, settings_hash, [c.value for c in doc.assessed], sources, copies,
            )
        )
    if not img_rows:
        return pl.DataFrame(schema=IMAGE_ATTRIBUTES), pl.DataFrame(schema=TOOTH_ATTRIBUTES)
    image_frame = pl.DataFrame(img_rows, schema=IMAGE_ATTRIBUTES, orient="row")
    # The tooth table is decoded from the document JSON by polars (Rust): one source of truth,
    # and ~10x faster than building nested struct columns from Python objects.
    tooth_frame = (
        image_frame.select(
            "image_id", "partition", "attribute_row_hash",
            pl.col("document").str.json_decode(_DOCUMENT_TEETH).struct.field("teeth").alias("tooth"),
        )
        .explode("tooth")
        .drop_nulls("tooth")
        .unnest("tooth")
        .with_columns(pl.col("conditions").list.len().cast(pl.Int64).alias("n_conditions"))
        .select(list(TOOTH_ATTRIBUTES))
        .cast(TOOTH_ATTRIBUTES)  # type: ignore[arg-type]
    )
    return image_frame, tooth_frame


def documents_from_frame(image_attributes: pl.DataFrame) -> list[ImageAttributes]:
    """The documents back from an `image_attributes` frame (its `document` column)."""
    return [ImageAttributes.model_validate_json(s) for s in image_attributes["document"].to_list()]
