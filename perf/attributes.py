"""Performance of the attribute stage at MMOral's size (printed, never asserted).

    .venv/bin/python perf/attributes.py [--images 20563] [--seed 7] [--no-scores] [--tables /tmp/perf_tables]

1. Generates the annotations of N synthetic OPGs (no pixels: this stage never opens images)
   as raw_images / raw_annotations frames and writes them to a temporary folder (timed apart).
2. In a fresh child process (so the peak memory is the stage's own): reads the two tables,
   builds the documents (rules), the image_attributes / tooth_attributes / annotation_outcomes
   frames, and renders one location caption per image from the document JSON, as the assets do.
   Prints wall time per step and the child's peak RSS. Target here: < 60 s and < 2 GB.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MMORAL_IMAGES = 20_563


def generate_tables(n: int, seed: int, scores: bool, out: Path) -> dict[str, float]:
    import polars as pl

    from mmoral_pipeline.attributes.synth_tables import cases_to_tables
    from mmoral_pipeline.synth import case_for

    cases_s = tables_s = 0.0
    image_parts, ann_parts = [], []
    for start in range(0, n, 1000):  # chunks: 20k cases with their polygons would hold ~6 GB
        t0 = time.perf_counter()
        cases = [case_for(seed, i) for i in range(start, min(n, start + 1000))]
        t1 = time.perf_counter()
        images, anns = cases_to_tables(cases, source="perf", partition="perf", scores=scores)
        image_parts.append(images)
        ann_parts.append(anns)
        cases_s += t1 - t0
        tables_s += time.perf_counter() - t1
    images, anns = pl.concat(image_parts), pl.concat(ann_parts)
    images.write_parquet(out / "raw_images.parquet")
    anns.write_parquet(out / "raw_annotations.parquet")
    return {"cases_s": cases_s, "tables_s": tables_s, "images": images.height, "annotations": anns.height}


def _peak_mib() -> float:
    """This process's peak resident memory. VmHWM, not ru_maxrss: ru_maxrss survives exec, so a
    child would report the generating parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB (upper bound)


def run_stage(folder: Path) -> dict[str, float]:
    """The stage as the assets run it; returns seconds per step and peak RSS (MiB)."""
    t_start = time.perf_counter()
    import polars as pl

    from mmoral_pipeline.attributes.caption import captions_frame
    from mmoral_pipeline.attributes.settings import AttributeSettings
    from mmoral_pipeline.attributes.stage import build_attribute_tables

    times: dict[str, float] = {}
    cpu_start = time.process_time()
    t = time.perf_counter()
    images = pl.read_parquet(folder / "raw_images.parquet")
    anns = pl.read_parquet(folder / "raw_annotations.parquet")
    times["read_s"] = time.perf_counter() - t
    times["read_peak_mib"] = _peak_mib()

    settings = AttributeSettings()
    t = time.perf_counter()
    built = build_attribute_tables(images, anns, settings)
    image_frame, tooth_frame, outcomes = built.image_attributes, built.tooth_attributes, built.annotation_outcomes
    times["rules_and_frames_s"] = time.perf_counter() - t
    times["rules_and_frames_peak_mib"] = _peak_mib()

    t = time.perf_counter()
    caption_frame = captions_frame(image_frame)
    times["captions_s"] = time.perf_counter() - t
    times["captions_peak_mib"] = _peak_mib()

    t = time.perf_counter()
    for name, frame in (("image_attributes", image_frame), ("tooth_attributes", tooth_frame),
                        ("annotation_outcomes", outcomes), ("location_captions", caption_frame)):
        frame.write_parquet(folder / f"{name}.parquet", compression="zstd")
    times["write_s"] = time.perf_counter() - t
    times["write_peak_mib"] = _peak_mib()
    times["total_s"] = time.perf_counter() - t_start
    times["cpu_s"] = time.process_time() - cpu_start
    times["peak_rss_mib"] = _peak_mib()
    times["images"] = image_frame.height
    times["teeth"] = tooth_frame.height
    times["annotations"] = outcomes.height
    times["mean_caption_chars"] = float(caption_frame["n_chars"].mean() or 0.0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=MMORAL_IMAGES)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--no-scores", action="store_true", help="human-label style input (no scores)")
    ap.add_argument("--tables", type=Path, help="cache folder for the generated input tables (reused when present)")
    ap.add_argument("--stage", type=Path, help=argparse.SUPPRESS)  # child mode
    args = ap.parse_args()
    if args.stage:
        print(json.dumps(run_stage(args.stage)))
        return
    with tempfile.TemporaryDirectory(prefix="perf_attributes_") as tmp:
        folder = Path(tmp)
        cached = (
            args.tables / f"n{args.images}_s{args.seed}_{'noscores' if args.no_scores else 'scores'}"
            if args.tables
            else None
        )
        if cached and (cached / "raw_annotations.parquet").exists():
            for name in ("raw_images", "raw_annotations"):
                (folder / f"{name}.parquet").write_bytes((cached / f"{name}.parquet").read_bytes())
            print(f"input: reused {cached}")
        else:
            gen = generate_tables(args.images, args.seed, not args.no_scores, folder)
            print(f"input: {gen['images']} images, {gen['annotations']} annotations "
                  f"(generated in {gen['cases_s']:.1f} s + {gen['tables_s']:.1f} s to tables; not part of the stage)")
            if cached:
                cached.mkdir(parents=True, exist_ok=True)
                for name in ("raw_images", "raw_annotations"):
                    (cached / f"{name}.parquet").write_bytes((folder / f"{name}.parquet").read_bytes())
        child = subprocess.run(
            [sys.executable, __file__, "--stage", str(folder)], capture_output=True, text=True, check=True
        )
        r = json.loads(child.stdout.strip().splitlines()[-1])
    print(f"stage: read {r['read_s']:.1f} s, rules + attribute tables {r['rules_and_frames_s']:.1f} s, "
          f"captions {r['captions_s']:.1f} s, write {r['write_s']:.1f} s")
    steps = ("read", "rules_and_frames", "captions", "write")
    print("peak RSS after each step (MiB): " + ", ".join(f"{k} {r[k + '_peak_mib']:.0f}" for k in steps))
    print(
        f"total wall time {r['total_s']:.1f} s (target < 60 s; CPU time {r['cpu_s']:.1f} s); peak RSS "
        f"{r['peak_rss_mib']:.0f} MiB (target < 2048 MiB)"
    )
    print(f"output: {r['images']} documents, {r['teeth']} teeth, {r['annotations']} outcomes, "
          f"mean caption {r['mean_caption_chars']:.0f} chars")


if __name__ == "__main__":
    main()
