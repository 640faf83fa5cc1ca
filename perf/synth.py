"""Synthetic generator throughput: render time per 1400x700 image (target < 0.3 s) and
annotation-only cases per second (scale runs of 20,563 images). Prints figures; asserts nothing."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from mmoral_pipeline.synth.generate import case_for, generate, jpeg_bytes
from mmoral_pipeline.synth.render import render


def main(n_render: int = 20, n_cases: int = 2000) -> None:
    cases = [case_for(3, i) for i in range(n_render)]
    render(cases[0])
    t = time.perf_counter()
    for c in cases:
        render(c)
    print(f"render: {(time.perf_counter() - t) / n_render:.3f} s per 1400x700 image")
    t = time.perf_counter()
    for c in cases:
        jpeg_bytes(c)
    print(f"render + JPEG: {(time.perf_counter() - t) / n_render:.3f} s per image")
    t = time.perf_counter()
    for i in range(n_cases):
        case_for(3, i)
    print(f"make_case: {(time.perf_counter() - t) / n_cases * 1000:.2f} ms per case")
    with tempfile.TemporaryDirectory() as tmp:
        s = generate(n_cases, 1, Path(tmp), write_images=False, polygons=False)
        print(
            f"annotations only (COCO, no polygons): {n_cases / s.seconds:.0f} cases/s; 20,563 cases ~ "
            f"{20563 / (n_cases / s.seconds):.0f} s"
        )


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
