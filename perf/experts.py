"""Visual experts: training time and inference throughput on this machine (printed, never asserted).

    .venv/bin/python perf/experts.py [--images 200] [--seed 42] [--threads 1] [--epochs 8] [--unlabelled 200]

1. Generates N labelled procedural OPGs at 700x350 (the demo's `synth_train`: seed 42, 200 images)
   and trains the default expert (`ExpertTrainSettings`: tiny Faster R-CNN, 512 px, 8 epochs) on
   them with the dataset's split, as the `expert_model` asset does. Prints wall and CPU time of the
   training loop, images/s, validation mAP@0.5 and @[.5:.95] and AP50 per category.
2. Inference over `--unlabelled` generated images: torchvision at batch 1 and 8 and ONNX Runtime,
   on the CPU (and on CUDA when there is one); images/s including decoding and resizing.

Measured (2 CPUs shared with other jobs, load average 6, one torch thread): 312 steps in 199 s wall,
110 s CPU, 6.1 images/s; validation mAP@0.5 0.496, @[.5:.95] 0.184 (teeth AP50 0.64, canals and sinuses
1.00, missing-tooth regions 0.35, small findings 0.00); inference torchvision 9.3 images/s (batch 1),
8.6 (batch 8), ONNX Runtime 6.8 images/s.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1, as ExpertTrainSettings)")
    parser.add_argument("--epochs", type=float, default=None, help="default: ExpertTrainSettings.epochs")
    parser.add_argument("--unlabelled", type=int, default=200, help="images for the inference figures")
    parser.add_argument("--work", default=None, help="working folder (default: a temporary one)")
    args = parser.parse_args()

    import torch

    from mmoral_pipeline import tables
    from mmoral_pipeline.config import SourcesFile, SourceSpec
    from mmoral_pipeline.experts.base import predict_in_batches
    from mmoral_pipeline.experts.load import load_expert
    from mmoral_pipeline.experts.settings import ExpertTrainSettings
    from mmoral_pipeline.experts.train import train_expert
    from mmoral_pipeline.sources import read_source
    from mmoral_pipeline.synth.generate import generate

    torch.set_num_threads(args.threads)
    work = Path(args.work or tempfile.mkdtemp(prefix="perf_experts_"))
    print(
        f"machine: {os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f}), torch threads "
        f"{torch.get_num_threads()}, "
        f"CUDA {'yes: ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no'}; work folder {work}"
    )

    labelled = work / "labelled"
    if not (labelled / "annotations.json").exists():
        generate(args.images, args.seed, labelled, "coco", width=700, height=350, scores=True)
    spec = SourceSpec(name="synth_train", format="coco", root=str(labelled), options={"score_field": "score"})
    batch = read_source(spec, SourcesFile(sources=[spec], base_dir="/"))
    images = tables.records_to_frame(batch.images, tables.RAW_IMAGES, partition="synth_train")
    annotations = tables.records_to_frame(batch.annotations, tables.RAW_ANNOTATIONS, partition="synth_train")

    over = {"epochs": args.epochs} if args.epochs else {}
    settings = ExpertTrainSettings(output_root=str(work / "experts"), threads=args.threads, **over)
    t0 = time.perf_counter()
    report = train_expert(settings, images, annotations, log=lambda m: print("  " + m, flush=True))
    total = time.perf_counter() - t0
    print("\n== training (default expert settings)")
    print(
        f"images train/val/bench: {report.images}; {report.train_boxes} training boxes; {len(report.classes)} classes"
    )
    print(f"{report.steps} steps ({report.epochs} epochs, batch {settings.batch_size}) on {report.device}: "
          f"training loop {report.train_time_s:.1f} s wall, {report.train_cpu_s:.1f} s CPU; "
          f"{report.train_images_per_s:.2f} images/s; whole run (load, train, score, save, ONNX export) {total:.1f} s")
    print(f"validation ({report.metrics['images']} images): mAP@0.5 {report.metrics['map50']:.3f}, "
          f"mAP@[.5:.95] {report.metrics['map']:.3f}; covers {report.covers}")
    print(
        "AP50 per category: "
        + ", ".join(f"{k} {v['ap50']:.2f}" for k, v in report.per_category.items() if v["ap50"] is not None)
    )

    unlabelled = work / "unlabelled"
    if not (unlabelled / "images").exists():
        generate(args.unlabelled, args.seed + 1, unlabelled, "coco", width=700, height=350)
    paths = sorted(str(p) for p in (unlabelled / "images").glob("*.jpg"))
    print(f"\n== inference over {len(paths)} images of 700x350 (decode + resize + network + boxes)")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        for backend, batch_size in (("torchvision", 1), ("torchvision", 8), ("onnxruntime", 8)):
            expert = load_expert(report.checkpoint_dir, backend=backend, device=device)  # type: ignore[arg-type]
            predict_in_batches(expert, paths[:4], batch_size)  # warm-up
            run = predict_in_batches(expert, paths, batch_size)
            boxes = sum(1 for found in run.detections for d in found if d.score > 0.3)
            print(
                f"{backend:12} {run.throughput.device:5} batch {batch_size}: {run.throughput.images_per_s:6.1f} "
                "images/s "
                f"({boxes / max(1, len(paths)):.1f} boxes > 0.3 per image)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
