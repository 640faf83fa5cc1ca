"""The near-duplicate threshold of the split, measured (printed, never asserted).

    .venv/bin/python perf/near_duplicates.py [--synth 40] [--pairs 20000]

1. Threshold: the perceptual hash (`domain.near_duplicates.perceptual_hash`, 256-bit phash) of every
   real OPG in ../shared/realdata (AKUDENTAL labelme embedded JPEGs, YOLO, UFBA, DC1000 images, the
   MMOral-OPG-Bench sample) and of N generated ones, against copies of each: re-encoded as JPEG at
   quality 20/50/95, resized to 50/25/10/5 %, resized to 33 % and re-encoded at quality 40 (what a
   second copy of a dataset looks like), plus transformations that are *not* copies (a 2 % border
   crop, a 1 degree rotation, gamma 0.8) for reference. Prints the largest distance of a copy per
   transformation and the smallest distance between two distinct X-rays: the threshold
   (`NEAR_DUPLICATE_MAX_DISTANCE`) must sit between them.
2. The issue's case: the embedded sample's X-rays added again as a second source, re-encoded (JPEG
   quality 70, 90 % size): how many X-rays have copies in different splits with the split by image id
   (the old rule) and by content group (the new one), and how many of those had a copy in the bench.
3. Grouping cost: `near_duplicate_pairs` on `--pairs` random hashes (all pairs compared).
"""

from __future__ import annotations

import argparse
import base64
import csv
import io
import itertools
import json
import random
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
REALDATA = REPO.parent / "shared" / "realdata"


def real_images() -> dict[str, Image.Image]:
    out: dict[str, Image.Image] = {}
    if not REALDATA.is_dir():
        print(f"(no real data at {REALDATA}: generated images only)")
        return out
    for path in sorted((REALDATA / "akudental_labelme").rglob("*.json")):
        data = json.loads(path.read_text()).get("imageData")
        if data:
            out[f"akudental/{path.stem}"] = Image.open(io.BytesIO(base64.b64decode(data))).convert("L")
    for path in sorted(REALDATA.rglob("*")):
        if path.suffix.lower() in (".jpg", ".jpeg", ".png") and not {"labels", "colors"} & set(path.parts):
            out[str(path.relative_to(REALDATA))] = Image.open(path).convert("L")
    tsv = REALDATA / "mmoral_opg_bench" / "closed_ended_sample.tsv"
    if tsv.exists():
        csv.field_size_limit(1 << 30)
        for row in csv.DictReader(tsv.open(), delimiter="\t"):
            out[f"bench/{row['index']}"] = Image.open(io.BytesIO(base64.b64decode(row["image"]))).convert("L")
    return out


def generated_images(n: int, tmp: Path) -> dict[str, Image.Image]:
    from mmoral_pipeline.synth import generate

    generate(n=n, seed=3, out=tmp / "synth", fmt="coco")
    return {f"synth/{p.name}": Image.open(p).convert("L") for p in sorted((tmp / "synth" / "images").glob("*.jpg"))}


def _jpeg(im: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("L")


def _resized(im: Image.Image, scale: float) -> Image.Image:
    return im.resize((max(8, round(im.width * scale)), max(8, round(im.height * scale))), Image.BILINEAR)


COPIES = {
    "jpeg q20": lambda im: _jpeg(im, 20),
    "jpeg q50": lambda im: _jpeg(im, 50),
    "jpeg q95": lambda im: _jpeg(im, 95),
    "resize 50%": lambda im: _resized(im, 0.5),
    "resize 25%": lambda im: _resized(im, 0.25),
    "resize 10%": lambda im: _resized(im, 0.1),
    "resize 5%": lambda im: _resized(im, 0.05),
    "resize 33% + jpeg q40": lambda im: _jpeg(_resized(im, 1 / 3), 40),
}
NOT_COPIES = {
    "crop 2% border": lambda im: im.crop(
        (int(0.02 * im.width), int(0.02 * im.height), int(0.98 * im.width), int(0.98 * im.height))
    ),
    "rotate 1 degree": lambda im: im.rotate(1),
    "gamma 0.8": lambda im: im.point(lambda v: int(255 * (v / 255) ** 0.8)),
}


def threshold(images: dict[str, Image.Image]) -> None:
    from mmoral_pipeline.domain.near_duplicates import NEAR_DUPLICATE_MAX_DISTANCE, hamming, perceptual_hash

    t0 = time.perf_counter()
    hashes = {k: perceptual_hash(v) for k, v in images.items()}
    per_image_ms = 1000 * (time.perf_counter() - t0) / max(len(images), 1)
    n_real = sum(1 for k in images if not k.startswith("synth/"))
    print(
        f"1. threshold: {n_real} real + {len(images) - n_real} generated OPGs; hashing {per_image_ms:.1f} ms per "
        "decoded image"
    )
    print(
        f"   {'transformation':<24} {'max distance':>12} {'median':>7}   (256-bit phash; threshold "
        f"{NEAR_DUPLICATE_MAX_DISTANCE})"
    )
    for label, table in (("copies", COPIES), ("not copies", NOT_COPIES)):
        print(f"   -- {label}")
        for name, fn in table.items():
            d = sorted(hamming(hashes[k], perceptual_hash(fn(im))) for k, im in images.items())
            print(f"   {name:<24} {d[-1]:>12} {d[len(d) // 2]:>7}")
    pairs = [(hamming(hashes[a], hashes[b]), a, b) for a, b in itertools.combinations(hashes, 2)]
    pairs.sort()
    real = [p for p in pairs if not p[1].startswith("synth/") and not p[2].startswith("synth/")]
    synth = [p for p in pairs if p[1].startswith("synth/") and p[2].startswith("synth/")]
    print(f"   closest distinct X-rays: {pairs[0][0]} bits ({pairs[0][1]} vs {pairs[0][2]}); "
          f"real-real {real[0][0] if real else '-'}, generated-generated {synth[0][0] if synth else '-'}; "
          f"1st percentile of all {len(pairs)} pairs {pairs[len(pairs) // 100][0]}")


def issue_case(tmp: Path) -> None:
    """The embedded sample twice, the second time re-encoded: copies across splits, old rule vs new."""
    from mmoral_pipeline.dataset.split import cross_split_links, split_images
    from mmoral_pipeline.sources.base import inspect_image

    sample = REPO / "assets" / "sample" / "coco" / "images"
    rows = []
    for path in sorted(sample.glob("*.jpg")):
        copy = tmp / "copy" / path.name
        copy.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(path) as im:
            _jpeg(_resized(im.convert("L"), 0.9), 70).save(copy, quality=70)
        for source, p, root in (("synth_coco", path, sample), ("synth_copy", copy, copy.parent)):
            rec = inspect_image(p, source=source, root=root, max_pixels=120_000_000)
            rows.append(
                {
                    "image_id": rec.image_id,
                    "source": source,
                    "sha256": rec.sha256,
                    "phash": rec.phash,
                    "name": path.name,
                }
            )
    same_sha = len({r["sha256"] for r in rows}) < len(rows)
    by_id = split_images([(r["image_id"], r["source"]) for r in rows]).split  # the old rule: each image id alone
    by_content = split_images(rows).split
    print(f"2. the embedded sample ({len(rows) // 2} X-rays) plus a re-encoded copy as a second source"
          f" (sha256 shared: {same_sha}), default fractions (val 0.1, hold-out 0.1):")
    for label, split in (("split by image id (old)", by_id), ("split by content (new)", by_content)):
        table = [{**r, "split": split[r["image_id"]]} for r in rows]
        links = [link for link in cross_split_links(table) if link.kind == "phash"]
        in_bench = sum(1 for link in links if "bench" in (link.split_a, link.split_b))
        print(f"   {label:<24} X-rays with copies in two splits: {len(links)} ({in_bench} with one copy in bench)")


def grouping_cost(n: int) -> None:
    from mmoral_pipeline.domain.near_duplicates import near_duplicate_pairs

    rng = random.Random(0)
    hashes = [f"{rng.getrandbits(256):064x}" for _ in range(n)]
    t0 = time.perf_counter()
    found = near_duplicate_pairs(hashes)
    print(
        f"3. grouping: all {n * (n - 1) // 2:,} pairs of {n:,} hashes compared in {time.perf_counter() - t0:.1f} s "
        f"({len(found)} near pairs)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--synth", type=int, default=40, help="generated OPGs in the threshold measurement")
    parser.add_argument("--pairs", type=int, default=20_000, help="hashes in the grouping-cost measurement")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        threshold({**real_images(), **generated_images(args.synth, tmp)})
        issue_case(tmp)
    grouping_cost(args.pairs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
