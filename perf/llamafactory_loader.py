"""LLaMA-Factory's own loader judges the export: a separate virtual environment with `llamafactory==0.9.5`
converts the LLaMA-Factory export with its data pipeline for the `qwen2_vl` template; every record must come
out as one sample with one vision block whose `<|image_pad|>` count is what the Qwen2-VL image processor gives
for that image. A format drift on either side fails here (exit 1), with the figures printed.

    .venv/bin/python perf/llamafactory_loader.py [--export DIR] [--json OUT]

- The environment: $MMORAL_LLAMAFACTORY_VENV, default ~/.cache/mmoral/llamafactory-venv-<version> (kept between
  runs; rebuilt when its stamp is missing): torch/torchvision pinned as the project's (local wheels), then
  llamafactory from PyPI with its own pins (transformers 5.6, datasets 4.0, trl 0.24).
- The export: DIR (an `exports/llamafactory` folder, e.g. one unpacked on another machine); without it, 8
  generated X-rays go through ingest -> exports offline in a temporary home first.
- The tokenizer/processor: the project's tiny Qwen2.5-VL processor (training/tiny.py), trained on the export's
  texts and saved to disk: nothing is downloaded.

Measured (2 cores, shared machine): see the README (Results).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LLAMAFACTORY_VERSION = "0.9.5"
TORCH_PINS = ("torch==2.14.1", "torchvision==0.29.1")  # as the project's pyproject (served from local disk)
CONVERT = Path(__file__).resolve().parent / "llamafactory" / "convert.py"
STAMP = ".mmoral-installed"


def venv_path() -> Path:
    default = Path.home() / ".cache" / "mmoral" / f"llamafactory-venv-{LLAMAFACTORY_VERSION}"
    return Path(os.environ.get("MMORAL_LLAMAFACTORY_VENV") or default)


def ensure_venv(venv: Path, log=print) -> dict:
    """The LLaMA-Factory environment, created when missing; returns {venv, cold, seconds}."""
    python = venv / "bin" / "python"
    if (venv / STAMP).exists() and python.exists():
        return {"venv": str(venv), "cold": False, "seconds": 0.0}
    t0 = time.perf_counter()
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    base = getattr(sys, "_base_executable", sys.executable)
    log(f"creating {venv} (llamafactory=={LLAMAFACTORY_VERSION}; several minutes the first time)")
    subprocess.run([base, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, *TORCH_PINS], check=True)
    subprocess.run([*pip, f"llamafactory=={LLAMAFACTORY_VERSION}"], check=True)
    (venv / STAMP).write_text(LLAMAFACTORY_VERSION + "\n")
    return {"venv": str(venv), "cold": True, "seconds": round(time.perf_counter() - t0, 1)}


def demo_export(work: Path) -> Path:
    """8 generated X-rays through ingest -> exports (offline backend) in a temporary home; the llamafactory folder."""
    import dagster as dg
    import yaml

    from mmoral_pipeline.materialize import materialize
    from mmoral_pipeline.synth import generate

    generate(n=8, seed=3, out=work / "synth", fmt="coco", width=700, height=350, scores=True)
    sources = work / "sources.yaml"
    sources.write_text(yaml.safe_dump({"sources": [{"name": "synth", "format": "coco", "root": str(work / "synth")}]}))
    os.environ["MMORAL_HOME"] = str(work / "home")
    with dg.instance_for_test() as instance:
        report = materialize("group:ingest or group:attributes or group:generation or group:dataset or group:export",
                             str(sources), instance=instance, log=lambda *_: None)
    if not report.ok:
        raise SystemExit(f"the demo pipeline failed: {report.failed}")
    return work / "home" / "exports" / "llamafactory"


def save_processor(export: Path, out: Path) -> Path:
    """The tiny Qwen2.5-VL processor, its tokenizer trained on the export's texts."""
    from mmoral_pipeline.training.tiny import build_processor, train_tokenizer

    texts = []
    for name in json.loads((export / "dataset_info.json").read_text()):
        for r in json.loads((export / f"{name}.json").read_text()):
            texts.extend(m["content"].replace("<image>", "") for m in r["messages"])
    processor = build_processor(train_tokenizer(texts))
    processor.save_pretrained(out)
    return out


def expected_image_tokens(export: Path, processor_dir: Path) -> dict[str, list[int]]:
    """Per dataset, per record: the <|image_pad|> count the Qwen2-VL image processor gives its image."""
    from PIL import Image
    from transformers import AutoProcessor

    image_processor = AutoProcessor.from_pretrained(processor_dir).image_processor
    merge = image_processor.merge_size**2
    cache: dict[str, int] = {}
    out = {}
    for name in json.loads((export / "dataset_info.json").read_text()):
        counts = []
        for r in json.loads((export / f"{name}.json").read_text()):
            total = 0
            for rel in r["images"]:
                if rel not in cache:
                    with Image.open(export / rel) as im:
                        grid = image_processor(images=[im.convert("RGB")], return_tensors="np")["image_grid_thw"][0]
                    cache[rel] = int(grid.prod()) // merge
                total += cache[rel]
            counts.append(total)
        out[name] = counts
    return out


def judge(figures: dict, expected: dict[str, list[int]]) -> list[str]:
    """What LLaMA-Factory did differently from the export (empty: nothing)."""
    problems = []
    for name, want in expected.items():
        got = figures["datasets"].get(name)
        if got is None:
            problems.append(f"{name}: not converted")
            continue
        if got["converted"] != got["records"] or got["records"] != len(want):
            problems.append(
                f"{name}: {got['converted']} of {got['records']} records converted (export has {len(want)})"
            )
        if got["images_per_record"] != [1] or got["vision_blocks_per_sample"] != [1]:
            problems.append(
                f"{name}: images per record {got['images_per_record']}, vision blocks {got['vision_blocks_per_sample']}"
            )
        if got["image_pad_tokens"] != want:
            bad = sum(1 for a, b in zip(got["image_pad_tokens"], want, strict=False) if a != b)
            problems.append(f"{name}: image token count differs from the processor's in {bad} samples")
        if got["samples_with_labels"] != got["records"]:
            problems.append(f"{name}: {got['records'] - got['samples_with_labels']} samples without an assistant label")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--export", help="an exports/llamafactory folder (default: build a small one)")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    env = ensure_venv(venv_path())
    with tempfile.TemporaryDirectory(prefix="mmoral-lf-") as tmp:
        work = Path(tmp)
        export = Path(args.export).resolve() if args.export else demo_export(work)
        processor_dir = save_processor(export, work / "processor")
        expected = expected_image_tokens(export, processor_dir)
        t1 = time.perf_counter()
        proc = subprocess.run(
            [
                str(Path(env["venv"]) / "bin" / "python"),
                str(CONVERT),
                str(export),
                str(processor_dir),
                str(work / "out"),
            ],
            cwd=work,
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")},
        )
        line = next((x for x in proc.stdout.splitlines() if x.startswith("LLAMAFACTORY_FIGURES ")), None)
        if proc.returncode != 0 or line is None:
            print(proc.stdout[-4000:], proc.stderr[-8000:], sep="\n", file=sys.stderr)
            print(f"LLaMA-Factory failed on {export} (exit {proc.returncode})", file=sys.stderr)
            return 1
        figures = json.loads(line.split(" ", 1)[1])
    figures.update(
        venv=env, convert_seconds=round(time.perf_counter() - t1, 1), total_seconds=round(time.perf_counter() - t0, 1)
    )
    figures["problems"] = judge(figures, expected)
    summary = {k: {kk: vv for kk, vv in v.items() if kk != "image_pad_tokens"} for k, v in figures["datasets"].items()}
    print(json.dumps({**figures, "datasets": summary}, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(figures))
    return 1 if figures["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
