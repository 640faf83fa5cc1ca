"""The offline backend over MMOral's scale: 20,563 generated images (about 1.3M instances in MMOral).

Attributes are generated per partition (no pixels), then the full partition pipeline runs: report,
audit, report VQA and dialogue through the offline backend behind the SQLite response cache,
location/counting items and attribute tasks by rule, every validator, and Parquet output per
partition (as the Dagster IO manager writes it). Partitions run in a process pool, as Dagster's
multiprocess executor would run partitions. Prints wall time, instances, rejections and peak
memory. Target: under 15 minutes and 4 GB on this machine.

    .venv/bin/python perf/generation_scale.py [--images 20563] [--partition-size 1000] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import tempfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path


def run_partition(args: tuple[int, int, int, str, bool]) -> dict:
    import pyarrow.parquet as pq

    from mmoral_pipeline.generation.backends import CachedBackend
    from mmoral_pipeline.generation.cache import ResponseCache
    from mmoral_pipeline.generation.offline import OfflineBackend
    from mmoral_pipeline.generation.pipeline import (
        GenerationSettings,
        ImageInput,
        fallback_caption,
        generate,
        rejection_stats,
    )
    from mmoral_pipeline.generation.rows import to_frame
    from mmoral_pipeline.generation.samples import random_attributes

    part, start, count, out_dir, use_cache = args
    t0 = time.perf_counter()
    key = f"scale__{part:04d}"
    images = []
    for i in range(start, start + count):
        a = random_attributes(random.Random(i), f"s{i:06d}")
        images.append(ImageInput(a.image_id, key, a.content_hash(), a, fallback_caption(a)))
    t_attr = time.perf_counter() - t0
    cache = ResponseCache(Path(out_dir) / "llm_cache.sqlite") if use_cache else None
    backend = CachedBackend(OfflineBackend(), cache)
    out = generate(
        images, backend, GenerationSettings(params={"temperature": 0.7, "max_tokens": 2048, "seed": 0}), run_id="perf"
    )
    counts: Counter = Counter()
    for table in ("reports", "vqa_items", "dialogues", "attribute_tasks", "rejected"):
        rows = getattr(out, table)
        df = to_frame(rows)
        counts.update(df["task_type"].to_list() if table != "rejected" else [])
        folder = Path(out_dir) / table
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(df.to_arrow(), folder / f"{key}.parquet", compression="zstd")
    stats = rejection_stats(out)
    return {
        "partition": key, "images": count, "seconds": time.perf_counter() - t0, "attr_seconds": t_attr,
        "counts": dict(counts), "rejected": stats["rejected"], "by_validator": stats["by_validator"],
        "sent": backend.stats["sent"], "cache_hits": backend.stats["cache_hits"],
        "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=20_563)
    ap.add_argument("--partition-size", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--no-cache", action="store_true", help="skip the SQLite response cache")
    ap.add_argument("--out", default=None, help="output folder (default: a temporary one, removed after)")
    args = ap.parse_args()
    tmp = tempfile.TemporaryDirectory(prefix="mmoral-scale-") if args.out is None else None
    out_dir = args.out or tmp.name  # type: ignore[union-attr]
    jobs = [(k, s, min(args.partition_size, args.images - s), out_dir, not args.no_cache)
            for k, s in enumerate(range(0, args.images, args.partition_size))]
    print(
        f"{args.images} images in {len(jobs)} partitions of <= {args.partition_size}, {args.workers} worker processes, "
        f"cache {'off' if args.no_cache else 'on'}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    t0 = time.perf_counter()
    results = []
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        for r in pool.map(run_partition, jobs):
            results.append(r)
            print(
                f"  {r['partition']}: {r['images']} images, {sum(r['counts'].values())} instances, {r['rejected']} "
                "rejected, "
                f"{r['seconds']:.1f} s (attributes {r['attr_seconds']:.1f} s), rss {r['maxrss_mb']:.0f} MB",
                flush=True,
            )
    wall = time.perf_counter() - t0
    total = Counter()
    rejected = Counter()
    for r in results:
        total.update(r["counts"])
        rejected.update(r["by_validator"])
    n = sum(total.values())
    peak_worker = max(r["maxrss_mb"] for r in results)
    parent = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    size = sum(p.stat().st_size for p in Path(out_dir).rglob("*") if p.is_file()) / 2**20
    print()
    print(f"wall time:             {wall / 60:.1f} min ({wall:.0f} s)  [target < 15 min]")
    print(f"instances:             {n:,} ({n / args.images:.1f} per image; MMOral: about 1.3M, 63 per image)")
    for t, c in sorted(total.items(), key=lambda kv: -kv[1]):
        print(f"  {t:<14} {c:>10,}")
    print(f"rejected:              {sum(rejected.values()):,} {dict(rejected) or ''}")
    print(
        f"requests through the offline backend: {sum(r['sent'] for r in results):,.0f} sent, "
        f"{sum(r['cache_hits'] for r in results):,.0f} cache hits"
    )
    print(
        f"peak memory:           worker max RSS {peak_worker:.0f} MB; {args.workers} workers + parent ~ "
        f"{peak_worker * args.workers + parent:.0f} MB  [target < 4 GB]"
    )
    print(f"output (Parquet + cache): {size:.0f} MB")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
