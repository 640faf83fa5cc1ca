"""Polars schemas of the ingest tables: one home, so empty partitions still have typed columns."""

from __future__ import annotations

from collections.abc import Iterable

import polars as pl
from pydantic import BaseModel

RAW_IMAGES = {
    "image_id": pl.String,
    "source": pl.String,
    "partition": pl.String,
    "path": pl.String,
    "file_name": pl.String,
    "sha256": pl.String,
    "width": pl.Int64,
    "height": pl.Int64,
    "mode": pl.String,
    "bytes": pl.Int64,
    "patient_key": pl.String,
    "model_image_path": pl.String,
    "normalisation": pl.String,
    "covers": pl.List(pl.String),  # label coverage (categories labelled completely)
    "phash": pl.String,
}
RAW_ANNOTATIONS = {
    "annotation_id": pl.String,
    "image_id": pl.String,
    "source": pl.String,
    "partition": pl.String,
    "source_file": pl.String,
    "record": pl.String,
    "source_category": pl.String,
    "category": pl.String,
    "lesion_type": pl.String,
    "fdi": pl.Int64,
    "box": pl.List(pl.Float64),
    "polygon": pl.List(pl.Float64),
    "score": pl.Float64,
    "extra": pl.String,
}
REJECTED_INPUTS = {
    "source": pl.String,
    "partition": pl.String,
    "path": pl.String,
    "record": pl.String,
    "reason": pl.String,
    "message": pl.String,
    "kind": pl.String,
}


def records_to_frame(records: Iterable[BaseModel], schema: dict[str, pl.DataType], **constants: str) -> pl.DataFrame:
    rows = [{**r.model_dump(mode="json"), **constants} for r in records]
    if not rows:
        return pl.DataFrame(schema=schema)
    return pl.DataFrame(rows, schema=schema)
