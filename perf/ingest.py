"""Ingest throughput: 2,000 generated images through the COCO reader (the code path of the
`ingest_batch` asset), in a fresh process so peak memory is the ingest's own.

    .venv/bin/python perf/ingest.py [--n 2000] [--width 1400 --height 700] [--keep DIR]

Prints images/s, annotations/s and peak RSS. Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from mmoral_pipeline.config import SourceSpec, SourcesFile
from mmoral_pipeline.sources import get_reader
root = Path(sys.argv[1]); shard = int(sys.argv[2])
spec = SourceSpec(name="perf", format="coco", root=str(root), shard_size=shard or None)
sf = SourcesFile(sources=[spec], base_dir=str(root))
reader = get_reader("coco")
t0 = time.perf_counter()
items = reader.list_items(spec, sf)
n_img = n_ann = n_rej = 0
step = shard or len(items)
for i in range(0, len(items), step):
    b = reader.read(spec, sf, items[i:i + step])
    n_img += len(b.images); n_ann += len(b.annotations); n_rej += len(b.rejections)
dt = time.perf_counter() - t0
print(json.dumps({"images": n_img, "annotations": n_ann, "rejections": n_rej, "seconds": dt,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--width", type=int, default=1400)
    ap.add_argument("--height", type=int, default=700)
    ap.add_argument("--keep", type=Path, default=None, help="reuse/keep generated images in this folder")
    args = ap.parse_args()

    from mmoral_pipeline.synth import generate

    root = args.keep or Path(tempfile.mkdtemp(prefix="mmoral-perf-ingest-"))
    if not (root / "annotations.json").exists():
        t0 = time.perf_counter()
        generate(n=args.n, seed=1, out=root, fmt="coco", width=args.width, height=args.height, scores=True)
        print(
            f"generated {args.n} images ({args.width}x{args.height}) in {time.perf_counter() - t0:.1f} s (not part of "
            "the figure)"
        )
    size_mb = sum(p.stat().st_size for p in (root / "images").glob("*")) / 1e6
    print(f"dataset: {root} ({size_mb:.0f} MB of images)")
    print(f"{'mode':22} {'images':>7} {'annots':>8} {'seconds':>8} {'images/s':>9} {'peak MB':>8}")
    for label, shard in (("one partition", 0), ("shards of 250", 250)):
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(root), str(shard)], capture_output=True, text=True, check=True
        )
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"{label:22} {r['images']:>7} {r['annotations']:>8} {r['seconds']:>8.1f} "
            f"{r['images'] / r['seconds']:>9.1f} {r['peak_rss_mb']:>8.0f}"
        )


if __name__ == "__main__":
    main()
