"""The default CPU SFT run, measured: wall time, samples/s, tokens/s, loss start/end, and whether it learned.

Trains the tiny default model (defaults of SftSettings unless overridden) on a TRL export, then scores greedy
answers to the held-out closed questions against the untrained base, the text-only trained model and the
most-frequent-letter baseline. Without `--train-jsonl` it writes the made-up learnable toy export
(mmoral_pipeline.training.toy_data) of `--images` pictures first.

With `--bench-items` (the evaluation stage's `benchmark_items` table, built from the held-out images only) the
closed questions are those of the benchmark, prompted with its `closed_prompt` and scored with its
`score_closed` (letter extraction), beside its random and most-frequent-letter runners.

    .venv/bin/python perf/cpu_sft.py --images 400 --epochs 1
    .venv/bin/python perf/cpu_sft.py --train-jsonl $MMORAL_HOME/exports/trl/train.jsonl \
        --val-jsonl $MMORAL_HOME/exports/trl/val.jsonl --bench-items $MMORAL_HOME/benchmark_items.parquet

Measured 2026-11-28 (2 shared cores, load 3.5-4.7 from other work; OMP_NUM_THREADS=1, which avoided the
thread oversubscription that slowed a 2-thread run about 10x under that load). Data: assets/sources_demo.yaml
(sample + `mmoral synth --n 200 --seed 42 --width 700 --height 350 --scores`) materialised offline into a
temporary MMORAL_HOME; training on the closed types (5,109 samples of 176 images); held-out benchmark:
130 closed questions on 26 images, letters balanced (A 33, B 33, C 32, D 32).

    config (1 epoch)                         steps  train s  loss start/end  trained  text-only  base  most-freq  random
    r2 batch 2, lr 1e-3, 1.3M params          2555   551     7.81 / 0.465    0.254    0.254      0.0   0.254      0.231
    r3 batch 4, lr 2e-3, hidden 256 (4.0M)    1278   797     7.71 / 0.458    0.254    0.254      0.0   0.254      0.231
    r4 as r2 + closed_answer_with_text        2555   468     7.66 / 0.566    0.254    0.254      0.0   0.254      0.231
    r5 as r4, 2 epochs (load ~1, 1 core)      5110   576     7.66 / 0.467    0.246    0.200      0.0   0.254      0.231

r2-r4 answer "B" on all 130 questions (= a most-frequent letter), r5 "D"; the letter loss stays at chance
(ln 4 / 3 tokens = 0.462), and with closed_answer_with_text the text after the letter is a generic phrase, not
the chosen option's text (no letter-option binding learnt). A first run (batch 8, lr 2e-3, 2 threads) was stopped at step 410/639 with
the loss at chance. So within the 10-minute CPU budget the tiny model does not learn the closed questions.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path


def closed_items(val_jsonl: str) -> tuple[list[dict], list[str]]:
    rows = [json.loads(line) for line in open(val_jsonl, encoding="utf-8") if line.strip()]
    closed = [r for r in rows if str(r.get("task_type", "")).endswith("_closed")]
    items, gold = [], []
    for r in closed:
        answer = "".join(p.get("text") or "" for p in r["messages"][1]["content"] if p.get("type") == "text")
        items.append({"image": (r.get("images") or [None])[0], "messages": r["messages"][:1]})
        gold.append(answer.strip()[:1].upper())
    return items, gold


def accuracy(answers: list[str], gold: list[str]) -> float:
    return sum(a.strip()[:1].upper() == g for a, g in zip(answers, gold, strict=True)) / max(1, len(gold))


def bench_closed_figures(bench_items: str, checkpoint_dir: str, base_dir: str) -> dict:
    """Closed accuracy on the benchmark's held-out questions: trained, trained text-only, untrained base, baselines."""
    import polars as pl

    from mmoral_pipeline.defs.evaluation import items_from_frame
    from mmoral_pipeline.evaluation.runners import HFRunner, MostFrequentRunner, RandomRunner
    from mmoral_pipeline.evaluation.scoring import score_closed

    closed, _ = items_from_frame(pl.read_parquet(bench_items).filter(pl.col("kind") == "closed"))
    runners = {
        "trained": HFRunner(checkpoint_dir, name="trained", max_new_tokens_closed=24),
        "trained_text_only": HFRunner(checkpoint_dir, name="trained-text-only", use_images=False, max_new_tokens_closed=24),
        "untrained_base": HFRunner(base_dir, name="base", max_new_tokens_closed=24),
        "most_frequent_letter": MostFrequentRunner(),
        "random": RandomRunner(seed=0),
    }
    t0 = time.perf_counter()
    out: dict = {"bench_closed_items": len(closed), "bench_images": len({it.image_id for it in closed})}
    for key, runner in runners.items():
        preds = score_closed(runner.name, closed, runner.answer_closed(closed))
        out[f"bench_acc_{key}"] = round(sum(p.correct for p in preds) / max(1, len(preds)), 3)
        if key in ("trained", "trained_text_only", "untrained_base"):
            out[f"bench_{key}_letters"] = dict(Counter(p.letter or "?" for p in preds))
            out[f"bench_{key}_methods"] = dict(Counter(p.method for p in preds))
            by_source: dict[str, list[bool]] = {}
            for it, p in zip(closed, preds, strict=True):
                by_source.setdefault(it.source, []).append(p.correct)
            out[f"bench_{key}_by_source"] = {c: f"{sum(v)}/{len(v)}" for c, v in sorted(by_source.items())}
    out["bench_eval_s"] = round(time.perf_counter() - t0, 1)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train-jsonl")
    ap.add_argument("--val-jsonl")
    ap.add_argument("--images", type=int, default=400, help="toy export size (pictures; 5 samples each, 80%% train)")
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--max-samples", type=int)
    ap.add_argument("--lr", type=float)
    ap.add_argument("--batch", type=int, help="per-device batch size (None: SftSettings' default)")
    ap.add_argument("--task-types", help="comma-separated task types to train on (SftSettings.task_types)")
    ap.add_argument("--max-pixels", type=int)
    ap.add_argument("--closed-target", choices=["letter", "letter_and_text", "option_text"],
                    help="SftSettings.closed_target (r4 below is letter_and_text)")
    ap.add_argument("--hidden", type=int, help="tiny_hidden_size")
    ap.add_argument("--layers", type=int, help="tiny_layers")
    ap.add_argument("--bench-items", help="benchmark_items parquet (held-out images) to score closed questions on")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--out", help="write the figures as JSON here")
    args = ap.parse_args(argv)

    from mmoral_pipeline.training.infer import generate_answers
    from mmoral_pipeline.training.settings import SftSettings
    from mmoral_pipeline.training.trainer import train

    work = Path(args.workdir or tempfile.mkdtemp(prefix="cpu_sft_"))
    if args.train_jsonl:
        train_jsonl, val_jsonl = args.train_jsonl, args.val_jsonl
    else:
        from mmoral_pipeline.training.toy_data import make_toy_export

        paths = make_toy_export(work / "toy", n_images=args.images)
        train_jsonl, val_jsonl = paths["train"], paths["val"]
    overrides = {k: v for k, v in {
        "task_types": args.task_types.split(",") if args.task_types else None, "max_pixels": args.max_pixels,
        "tiny_hidden_size": args.hidden, "tiny_layers": args.layers,
        "closed_target": args.closed_target}.items() if v is not None}
    settings = SftSettings(train_jsonl=train_jsonl, output_dir=str(work / "ckpt"), num_train_epochs=args.epochs,
                           max_samples=args.max_samples, learning_rate=args.lr,
                           per_device_train_batch_size=args.batch, logging_steps=10, **overrides)
    cpu0 = resource.getrusage(resource.RUSAGE_SELF).ru_utime
    report = train(settings)
    cpu_train = resource.getrusage(resource.RUSAGE_SELF).ru_utime - cpu0
    figures = {
        "train_samples": report.train_samples, "steps": report.steps, "epochs": report.epochs,
        "params_total": report.params_total, "wall_time_s": round(report.wall_time_s, 1),
        "train_time_s": round(report.train_time_s, 1), "cpu_user_s": round(cpu_train, 1),
        "samples_per_s": round(report.samples_per_s, 2), "tokens_per_s": round(report.tokens_per_s, 1),
        "tokens_seen": report.tokens_seen, "loss_start": round(report.loss_start, 3),
        "loss_end": round(report.loss_end, 3), "device": report.device,
    }
    if val_jsonl:
        items, gold = closed_items(val_jsonl)
        if items:
            t0 = time.perf_counter()
            trained = generate_answers(report.checkpoint_dir, items, max_new_tokens=4)
            text_only = generate_answers(report.checkpoint_dir, items, use_images=False, max_new_tokens=4)
            base = generate_answers(str(Path(report.checkpoint_dir).with_name("ckpt_base")), items, max_new_tokens=4)
            letter, n = Counter(gold).most_common(1)[0]
            figures.update({
                "closed_items": len(gold), "acc_trained": round(accuracy(trained, gold), 3),
                "acc_trained_text_only": round(accuracy(text_only, gold), 3),
                "acc_untrained_base": round(accuracy(base, gold), 3),
                "acc_most_frequent_letter": round(n / len(gold), 3), "most_frequent_letter": letter,
                "answer_letters": dict(Counter(a.strip()[:1] for a in trained)),
                "eval_s": round(time.perf_counter() - t0, 1),
            })
    if args.bench_items:
        figures.update(bench_closed_figures(args.bench_items, report.checkpoint_dir,
                                            str(Path(report.checkpoint_dir).with_name("ckpt_base"))))
    figures["settings"] = settings.model_dump(exclude={"train_jsonl", "output_dir"}, exclude_defaults=True)
    print(json.dumps(figures, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
