"""Synthetic cases straight to `raw_images` / `raw_annotations` frames, without pixels or files.

Property tests and the performance script need many annotated images fast; this mirrors what the
COCO reader makes of `synth.generate(..., fmt="coco")` (FDI, lesion type, region/side/span in
`extra`, score only when `scores=True`), so the attribute rules see the same inputs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import polars as pl

from mmoral_pipeline import tables
from mmoral_pipeline.domain.records import stable_id
from mmoral_pipeline.domain.taxonomy import Category
from mmoral_pipeline.synth.model import CATEGORY_NAMES, SynthCase


def cases_to_tables(
    cases: Iterable[SynthCase], *, source: str = "synth", partition: str = "synth", scores: bool = False
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(raw_images, raw_annotations) for the cases; annotation ids are stable per case and position."""
    img_rows: list[tuple] = []
    cols: dict[str, list] = {k: [] for k in tables.RAW_ANNOTATIONS}

    def add(image_id: str, k: int, category: str, box, fdi, score, lesion, extra) -> None:
        cols["annotation_id"].append(stable_id(image_id, k))
        cols["image_id"].append(image_id)
        cols["source"].append(source)
        cols["partition"].append(partition)
        cols["source_file"].append("synthetic")
        cols["record"].append(f"annotations[{k}]")
        cols["source_category"].append(
            CATEGORY_NAMES.get(category, category.value) if hasattr(category, "value") else category
        )
        cols["category"].append(category.value if hasattr(category, "value") else category)
        cols["lesion_type"].append(lesion)
        cols["fdi"].append(fdi)
        cols["box"].append([float(v) for v in box])
        cols["polygon"].append(None)
        cols["score"].append(float(score) if scores else None)
        cols["extra"].append(json.dumps(extra, sort_keys=True) if extra else None)

    for case in cases:
        image_id = f"{source}-{case.name}"
        img_rows.append(
            {
                "image_id": image_id,
                "source": source,
                "partition": partition,
                "path": f"/synthetic/{case.name}.jpg",
                "file_name": f"images/{case.name}.jpg",
                "sha256": "",
                "width": case.width,
                "height": case.height,
                "mode": "L",
                "bytes": 0,
                "covers": [c.value for c in Category],
            }
        )
        k = 0
        for t in case.teeth:
            add(image_id, k, "tooth", t.box, t.fdi, t.score, None, None)
            k += 1
        for f in case.findings:
            extra = {}
            if f.region:
                extra["region"] = f.region
            if f.side:
                extra["side"] = f.side
            if f.span:
                extra["span"] = list(f.span)
            add(image_id, k, f.category, f.box, f.fdi, f.score, f.lesion_type, extra)
            k += 1
    images = pl.DataFrame(img_rows, schema=tables.RAW_IMAGES) if img_rows else pl.DataFrame(schema=tables.RAW_IMAGES)
    return images, pl.DataFrame(cols, schema=tables.RAW_ANNOTATIONS)
