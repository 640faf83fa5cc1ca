"""`generate`: N synthetic OPGs with annotations in COCO or labelme layout, deterministic per seed."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import numpy as np

from mmoral_pipeline.synth.case import make_case
from mmoral_pipeline.synth.model import SynthCase, SynthSummary
from mmoral_pipeline.synth.render import render
from mmoral_pipeline.synth.writers import coco_document, coco_entries, labelme_document

FORMATS = ("coco", "labelme")


def case_rng(seed: int, index: int) -> np.random.Generator:
    """The one generator of image `index` under `seed`: independent of N and of sharding."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(index)]))


def image_name(seed: int, index: int) -> str:
    return f"synth_{seed}_{index:06d}"


def case_for(seed: int, index: int, width: int = 1400, height: int = 700) -> SynthCase:
    return make_case(case_rng(seed, index), index, width, height, name=image_name(seed, index))


def jpeg_bytes(case: SynthCase, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    render(case).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _dump(obj: object, path: Path) -> None:
    path.write_text(json.dumps(obj, separators=(",", ":"), ensure_ascii=False) + "\n", encoding="utf-8")


def generate(
    n: int,
    seed: int,
    out: Path,
    fmt: str = "coco",
    width: int = 1400,
    height: int = 700,
    scores: bool = False,
    start_index: int = 0,
    write_images: bool = True,
    *,
    quality: int = 90,
    polygons: bool = True,
) -> SynthSummary:
    """Write images `start_index .. start_index+n-1` of `seed` under `out`.

    coco: out/images/<name>.jpg + out/annotations.json. labelme: out/<name>.jpg + out/<name>.json.
    `write_images=False` writes only the annotations (scale tests: 20k cases in seconds).
    `polygons=False` drops tooth segmentations from COCO to keep huge JSONs small.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    if n < 0 or width < 200 or height < 100:
        raise ValueError("n must be >= 0 and the image at least 200x100")
    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    img_dir = out / "images" if fmt == "coco" else out
    if write_images:
        img_dir.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    images, annotations = [], []
    for index in range(start_index, start_index + n):
        case = case_for(seed, index, width, height)
        for k, v in case.counts().items():
            counts[k] = counts.get(k, 0) + v
        if write_images:
            (img_dir / f"{case.name}.jpg").write_bytes(jpeg_bytes(case, quality))
        if fmt == "coco":
            image, anns = coco_entries(case, scores=scores, polygons=polygons)
            images.append(image)
            annotations.extend(anns)
        else:
            _dump(labelme_document(case, scores=scores), out / f"{case.name}.json")
    if fmt == "coco":
        _dump(
            coco_document(images, annotations, f"mmoral-pipeline synthetic OPGs, seed {seed}"), out / "annotations.json"
        )
    return SynthSummary(
        out=str(out), format=fmt, seed=seed, n_images=n, width=width, height=height, start_index=start_index,
        images_written=write_images, scores=scores, counts=dict(sorted(counts.items())),
        seconds=round(time.perf_counter() - t0, 3),
    )
