"""Performance of the attribute stage at MMOral's size (printed, never asserted).

    .venv/bin/python perf/attributes.py [--images 20563] [--seed 7] [--no-scores]

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
    from mmoral_pipeline.attributes.synth_tables import cases_to_tables
    from mmoral_pipeline.synth import case_for

    t0 = time.perf_counter()
    cases = [case_for(seed, i) for i in range(n)]
    t1 = time.perf_counter()
    images, anns = cases_to_tables(cases, source="perf", partition="perf", scores=scores)
    images.write_parquet(out / "raw_images.parquet")
    anns.write_parquet(out / "raw_annotations.parquet")
    return {"cases_s": t1 - t0, "tables_s": time.perf_counter() - t1, "images": images.height, "annotations": anns.height}


def run_stage(folder: Path) -> dict[str, float]:
    """The stage as the assets run it; returns seconds per step and peak RSS (MiB)."""
    t_start = time.perf_counter()
    import polars as pl

    from mmoral_pipeline.attributes.build import build_image_attributes
    from mmoral_pipeline.attributes.caption import CAPTION_VERSION, render_captions
    from mmoral_pipeline.attributes.frames import attribute_frames
    from mmoral_pipeline.attributes.settings import AttributeSettings
    from mmoral_pipeline.attributes.versions import RULES_VERSION

    times: dict[str, float] = {}
    cpu_start = time.process_time()
    t = time.perf_counter()
    images = pl.read_parquet(folder / "raw_images.parquet")
    anns = pl.read_parquet(folder / "raw_annotations.parquet")
    times["read_s"] = time.perf_counter() - t

    settings = AttributeSettings()
    t = time.perf_counter()
    result = build_image_attributes(images, anns, settings)
    times["rules_s"] = time.perf_counter() - t

    t = time.perf_counter()
    image_frame, tooth_frame = attribute_frames(result.documents, images, rules_version=RULES_VERSION, settings_hash=settings.settings_hash())
    outcomes = result.outcomes_frame()
    times["frames_s"] = time.perf_counter() - t

    t = time.perf_counter()
    captions = render_captions(image_frame["document"].to_list())
    caption_frame = image_frame.select("image_id", "partition", "attribute_row_hash").with_columns(
        pl.Series("caption", captions), pl.lit(CAPTION_VERSION).alias("caption_version")
    )
    times["captions_s"] = time.perf_counter() - t

    t = time.perf_counter()
    for name, frame in (("image_attributes", image_frame), ("tooth_attributes", tooth_frame),
                        ("annotation_outcomes", outcomes), ("location_captions", caption_frame)):
        frame.write_parquet(folder / f"{name}.parquet", compression="zstd")
    times["write_s"] = time.perf_counter() - t
    times["total_s"] = time.perf_counter() - t_start
    times["cpu_s"] = time.process_time() - cpu_start
    times["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    times["images"] = image_frame.height
    times["teeth"] = tooth_frame.height
    times["annotations"] = outcomes.height
    times["mean_caption_chars"] = sum(map(len, captions)) / max(len(captions), 1)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=MMORAL_IMAGES)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--no-scores", action="store_true", help="human-label style input (no scores)")
    ap.add_argument("--stage", type=Path, help=argparse.SUPPRESS)  # child mode
    args = ap.parse_args()
    if args.stage:
        print(json.dumps(run_stage(args.stage)))
        return
    with tempfile.TemporaryDirectory(prefix="perf_attributes_") as tmp:
        folder = Path(tmp)
        gen = generate_tables(args.images, args.seed, not args.no_scores, folder)
        print(f"input: {gen['images']} images, {gen['annotations']} annotations "
              f"(generated in {gen['cases_s']:.1f} s + {gen['tables_s']:.1f} s to tables; not part of the stage)")
        child = subprocess.run([sys.executable, __file__, "--stage", str(folder)], capture_output=True, text=True, check=True)
        r = json.loads(child.stdout.strip().splitlines()[-1])
    print(f"stage: read {r['read_s']:.1f} s, rules {r['rules_s']:.1f} s, frames {r['frames_s']:.1f} s, "
          f"captions {r['captions_s']:.1f} s, write {r['write_s']:.1f} s")
    print(f"total wall time {r['total_s']:.1f} s (target < 60 s; CPU time {r['cpu_s']:.1f} s); peak RSS {r['peak_rss_mib']:.0f} MiB (target < 2048 MiB)")
    print(f"output: {r['images']} documents, {r['teeth']} teeth, {r['annotations']} outcomes, "
          f"mean caption {r['mean_caption_chars']:.0f} chars")


if __name__ == "__main__":
    main()
