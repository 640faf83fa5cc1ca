"""Throughput of the raw-data readers (printed, never asserted).

    .venv/bin/python perf/sources_readers.py [--images 2000] [--per-image 30]

Writes N tiny PNGs (64x32, so decode cost is negligible) with `per-image` annotations each in
three formats (COCO, labelme with imagePath, YOLO), then times `list_source_items`, a full
`read_source` and one 100-item shard per format. Target: 2,000 images well under a minute each.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from PIL import Image

from mmoral_pipeline.config import SourcesFile, SourceSpec
from mmoral_pipeline.sources import list_source_items, read_source


def write_inputs(tmp: Path, n: int, per_image: int) -> None:
    for sub in ("coco/images", "lm", "yolo/images", "yolo/labels"):
        (tmp / sub).mkdir(parents=True)
    images, anns, k = [], [], 0
    for i in range(n):
        name = f"{i:05d}.png"
        Image.new("L", (64, 32), i % 255).save(tmp / "coco/images" / name)
        for d in ("lm", "yolo/images"):
            (tmp / d / name).hardlink_to(tmp / "coco/images" / name)
        images.append({"id": i, "file_name": name})
        shapes, lines = [], []
        for j in range(per_image):
            fdi = 11 + j % 8
            anns.append({"id": k, "image_id": i, "category_id": 1, "bbox": [1, 1, 10, 10], "attributes": {"fdi": fdi}})
            k += 1
            shapes.append({"label": f"{fdi} - tooth", "points": [[1, 1], [11, 1], [11, 11]], "shape_type": "polygon"})
            lines.append("0 0.5 0.5 0.1 0.2")
        (tmp / "lm" / f"{i:05d}.json").write_text(json.dumps({"shapes": shapes, "imagePath": name}))
        (tmp / "yolo/labels" / f"{i:05d}.txt").write_text("\n".join(lines))
    doc = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "tooth"}]}
    (tmp / "coco/annotations.json").write_text(json.dumps(doc))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--per-image", type=int, default=30)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        t = time.perf_counter()
        write_inputs(tmp, args.images, args.per_image)
        print(f"wrote {args.images} images x {args.per_image} annotations in {time.perf_counter() - t:.1f}s")
        for fmt, sub, opts in (
            ("coco", "coco", {}),
            ("labelme", "lm", {}),
            ("yolo", "yolo", {"class_map": {0: "caries"}}),
        ):
            spec = SourceSpec(name=fmt, format=fmt, root=str(tmp / sub), options=opts)
            sf = SourcesFile(sources=[spec])
            t = time.perf_counter()
            items = list_source_items(spec, sf)
            t_list = time.perf_counter() - t
            t = time.perf_counter()
            batch = read_source(spec, sf)
            t_read = time.perf_counter() - t
            t = time.perf_counter()
            read_source(spec, sf, items[:100])
            t_shard = time.perf_counter() - t
            print(
                f"{fmt:8s} items={len(items)} list={t_list:.2f}s read_all={t_read:.2f}s "
                f"({len(batch.annotations) / t_read:,.0f} annotations/s) images={len(batch.images)} "
                f"annotations={len(batch.annotations)} balanced={batch.counts_balance()[0]} shard_of_100={t_shard:.2f}s"
            )


if __name__ == "__main__":
    main()
