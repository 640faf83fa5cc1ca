"""`mmoral synth` arguments and runner; the project CLI delegates here, `python -m` too."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mmoral_pipeline.synth.generate import FORMATS, generate


def add_synth_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--n", type=int, required=True, help="number of images")
    parser.add_argument("--seed", type=int, default=0, help="seed; same seed -> identical output")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--format", choices=FORMATS, default="coco", dest="fmt")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=700)
    parser.add_argument("--scores", action="store_true", help="add detector-like confidence scores")
    parser.add_argument("--start-index", type=int, default=0, help="first image index (sharding)")
    parser.add_argument("--no-images", action="store_true", help="annotations only, no JPEGs")
    parser.add_argument("--no-polygons", action="store_true", help="COCO without tooth segmentations")
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality")
    return parser


def run_synth(args: argparse.Namespace) -> int:
    summary = generate(
        args.n, args.seed, args.out, args.fmt, width=args.width, height=args.height, scores=args.scores,
        start_index=args.start_index, write_images=not args.no_images, quality=args.quality,
        polygons=not args.no_polygons,
    )
    print(json.dumps(summary.model_dump(), indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = add_synth_arguments(argparse.ArgumentParser(prog="mmoral synth", description="Synthetic panoramic X-rays"))
    return run_synth(parser.parse_args(argv))
