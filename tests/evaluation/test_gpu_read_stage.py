"""perf/gpu_sft.sh part 2 ("does it read the X-ray?") on CPU with a tiny checkpoint standing in for a user's Qwen2.5-VL:
fine-tune it, then score base and fine-tuned beside their text-only and other-image runs with `mmoral bench`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from PIL import Image

from mmoral_pipeline.evaluation.build import build_benchmark
from mmoral_pipeline.evaluation.tsv import encode_image_jpeg, write_closed_tsv, write_open_tsv
from mmoral_pipeline.training.data import read_jsonl
from mmoral_pipeline.training.tiny import build_tiny_checkpoint, corpus_texts
from mmoral_pipeline.training.toy_data import make_toy_export

from .factories import make_attributes

REPO = Path(__file__).resolve().parents[2]


def test_read_stage_runs_end_to_end_on_cpu(tmp_path):
    toy = make_toy_export(tmp_path / "toy", n_images=6, size=(224, 112))
    model = build_tiny_checkpoint(corpus_texts(read_jsonl(toy["train"])), tmp_path / "user_model", vocab_size=400,
                                  hidden_size=64, layers=2)
    attrs = [make_attributes(s, width=224, height=112) for s in range(2)]
    images = {
        a.image_id: encode_image_jpeg(Image.new("RGB", (224, 112), (40 + 80 * k, 60, 60))) for k, a in enumerate(attrs)
    }
    closed, open_, _ = build_benchmark(attrs, images_b64=images)
    bench = tmp_path / "bench"
    write_closed_tsv(closed, bench / "closed_ended.tsv")
    write_open_tsv(open_, bench / "open_ended.tsv")
    out = tmp_path / "out"
    env = {
        **os.environ,
        "MODEL": str(model),
        "THROUGHPUT": "0",
        "STEPS": "2",
        "LIMIT": "12",
        "MAX_NEW_TOKENS_OPEN": "16",
        "TRAIN": toy["train"],
        "BENCH": str(bench),
        "PRIOR_TRAIN": toy["train"],
        "OUT": str(out),
        "PY": sys.executable,
        "PYTHONPATH": str(REPO),
        "OMP_NUM_THREADS": "1",
    }
    proc = subprocess.run(["bash", "perf/gpu_sft.sh"], cwd=REPO, env=env, capture_output=True, text=True, timeout=900,
                          check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    table = (out / "read" / "bench" / "results.md").read_text()
    rows = [line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| ") and "Model" not in line]
    assert rows == ["user_model", "user_model-text-only", "user_model-other-image", "sft", "sft-text-only",
                    "sft-other-image", "question_prior", "most_frequent", "random"]
    assert (out / "read" / "sft" / "adapter_config.json").exists()  # LoRA over the user's checkpoint
    assert "does it read the X-ray?" in proc.stdout
