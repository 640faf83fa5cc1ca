"""Hand-made raw tables for the attribute tests."""

from __future__ import annotations

import json
from typing import Any

import polars as pl

from mmoral_pipeline import tables


def image(image_id: str = "img", width: int = 1000, height: int = 500, partition: str = "p") -> dict[str, Any]:
    return {
        "image_id": image_id,
        "source": "hand",
        "partition": partition,
        "path": f"/x/{image_id}.png",
        "file_name": f"{image_id}.png",
        "sha256": image_id,
        "width": width,
        "height": height,
        "mode": "L",
        "bytes": 1,
    }


def ann(aid: str, category: str, box: list[float], fdi: int | None = None, score: float | None = None, *,
        image_id: str = "img", lesion: str | None = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"annotation_id": aid, "image_id": image_id, "source": "hand", "partition": "p", "source_file": "f",
            "record": aid, "source_category": category, "category": category, "lesion_type": lesion, "fdi": fdi,
            "box": [float(v) for v in box], "polygon": None, "score": score,
            "extra": json.dumps(extra) if extra else None}


def frames(anns: list[dict[str, Any]], images: list[dict[str, Any]] | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    imgs = images or [image()]
    return (pl.DataFrame(imgs, schema=tables.RAW_IMAGES),
            pl.DataFrame(anns, schema=tables.RAW_ANNOTATIONS) if anns else pl.DataFrame(schema=tables.RAW_ANNOTATIONS))
