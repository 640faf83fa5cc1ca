"""The default CPU SFT run, measured: wall time, samples/s, tokens/s, loss start/end, and whether it learned.

Trains the tiny default model (defaults of SftSettings unless overridden) on a TRL export, then scores greedy
answers to the held-out closed questions against the untrained base, the most-frequent-letter and random
baselines and two controls: the same model without images, and with each question shown another held-out
patient's X-ray (does it read the image?). Without `--train-jsonl` it writes the made-up learnable toy export
(mmoral_pipeline.training.toy_data) of `--images` pictures first. `--checkpoint` scores a trained checkpoint only.

With `--bench-items` (the evaluation stage's `benchmark_items` table, built from the held-out images only) the
closed questions are those of the benchmark, prompted with its `closed_prompt` and scored with its
`score_closed` (deterministic extraction: "(B)", a bare letter, then the option's text).

    .venv/bin/python perf/cpu_sft.py --train-jsonl $MMORAL_HOME/exports/trl/train.jsonl \
        --bench-items $MMORAL_HOME/benchmark_items.parquet
    .venv/bin/python perf/cpu_sft.py --checkpoint $MMORAL_HOME/sft_model/latest \
        --bench-items $MMORAL_HOME/benchmark_items.parquet

Data (both tables): `make demo`'s sources (assets/sources_demo.yaml: the embedded sample + 200 generated images,
`mmoral synth --n 200 --seed 42 --width 700 --height 350 --scores`) materialised offline; training on the
closed-ended types of the 176 training images (5,109 samples: vqa_closed 885, loc_closed 2,464, count_closed
1,760); benchmark: 130 closed questions on the 26 held-out images, letters balanced (A 33, B 33, C 32, D 32).

2026-11-28, first session: the benchmark's own closed templates, letter targets (OMP_NUM_THREADS=1, load 3.5-4.7):

    config (1 epoch)                         steps  train s  loss start/end  trained  text-only  base  most-freq  random
    r2 batch 2, lr 1e-3, 1.3M params          2555   551     7.81 / 0.465    0.254    0.254      0.0   0.254      0.231
    r3 batch 4, lr 2e-3, hidden 256 (4.0M)    1278   797     7.71 / 0.458    0.254    0.254      0.0   0.254      0.231
    r4 as r2 + targets 'B. <option text>'     2555   468     7.66 / 0.566    0.254    0.254      0.0   0.254      0.231
    r5 as r4, 2 epochs (load ~1, 1 core)      5110   576     7.66 / 0.467    0.246    0.200      0.0   0.254      0.231

Every run answered one letter on all questions: the letter loss stayed at chance (ln 4 / 3 tokens = 0.462) and
the text after the letter was a generic phrase: a model trained from scratch in minutes does not learn which
letter holds which option. Two changes followed. (1) `closed_target='option_text'`: the model answers with the
option's content, which the benchmark's extraction matches to its option. (2) The benchmark's closed questions
come, as in the paper, from the held-out images' generated VQA (3 per image) and the location / counting rules
(2), i.e. the families the training data has; the first table's benchmark used templates of its own
("Which of the following teeth shows caries?") that no training sample had. Scored against that old benchmark,
run A below gets 0.115 and B 0.169 (counting questions only), below the most-frequent letter.

2026-11-28, second session: option-text targets, new benchmark (two runs side by side, 1 thread each):

    run  config (1 epoch unless said)          steps  train s  loss start/end  trained  other X-ray  no image  base
    C    batch 8, lr 2e-3                        639   241     7.74 / 1.01     0.008    0.008        0.008     0.0
    D    batch 4, lr 2e-3                       1278   253     7.74 / 0.89     0.031    0.031        0.023     0.0
    F    batch 2, lr 2e-3                       stopped at step 1060/2555, loss 2.6: unstable
    A    batch 2, lr 1e-3                       2555   239     7.74 / 0.62     0.346    0.346        0.008     0.0
    B    as A, vqa+count types only, 2 epochs   2646   184     6.47 / 0.70     0.446    0.446        0.0       0.0
    E    batch 1, lr 1e-3 (the default now)     5109   310     7.74 / 0.61     0.423    0.423        0.138     0.0
    G    as E, max_pixels 200,704 (4x, alone)    5109   432     7.69 / 0.66     0.477    0.477        0.023     0.0
    baselines: most-frequent letter 0.254, random 0.277 (seed 0)

So the tiny model does learn the closed questions (E: 55 of 130 right, the most-frequent letter 33), but what it
learns is the answers' priors given the question, not the X-ray: shown another patient's image it scores exactly
the same, also with four times the image tokens (G). Without any image it mostly fails to answer (it never
trained without one). Reading the image is beyond a ~1M-parameter model with a 64-wide, 2-layer vision tower
trained for minutes; that needs the GPU script (`perf/gpu_sft.sh`) and a real checkpoint.

Sanity control: does the image path work at all? (`--sanity negative`)

On the generated demo X-rays (default $MMORAL_HOME/synth_train/images) every image is shown as is or as its
negative (inverted grey levels), and the tiny model is trained from scratch for `--sanity-steps` steps on "Is this
panoramic X-ray shown as its negative?" (yes / no) for 80 % of the images. On the other 20 % (both versions,
balanced) it is scored with the right image, with another held-out image (a seeded shuffle, so the shown image's
answer is independent of the asked one's) and against the majority answer; accuracy and AUC (from the first reply
token's log-odds of "yes" over "no", `training.infer.answer_scores`).

    .venv/bin/python perf/cpu_sft.py --sanity negative

2026-12-01, third session (OMP_NUM_THREADS=1, load 7-10 on 2 cores; 160 training images x 2 versions, 40 held out x 2):

    steps (batch 4)  train s (CPU s)  loss start/end   right image acc / AUC   other image acc / AUC   majority
    300 (default)    119 (~45)        5.78 / 0.005     1.00 / 1.00             0.45 / 0.44             0.50
    600              256 (~85)        5.78 / 0.002     1.00 / 1.00             0.45 / 0.42             0.50

The loss falls below 0.1 by step ~140 (about a minute on a quiet machine).

Measured before (same model, up to ~10 minutes, over 6,000 generated images and up to 7 epochs, larger vision
towers and higher vision learning rates): no image-dependent finding question was learnt (implant yes/no, many vs
few restorations, missing tooth, side of an implant: right image = another patient's image = majority). The
negative-image control is learnt, so the image reaches the model and gradients reach the vision tower; what the
tiny from-scratch vision tower cannot learn in minutes is local dental features: that needs a pretrained vision
encoder (`perf/gpu_sft.sh` with a Qwen2.5-VL checkpoint, which reports the same right-vs-other-image comparison).

A user's checkpoint (GPU): `--base-model /path/to/Qwen2.5-VL-7B-Instruct --finetune lora` trains it on the same
export (SftSettings' defaults for a real model: batch 8, lr 2e-4, all task types); `perf/gpu_sft.sh` does that and
then scores it with `mmoral bench` beside its text-only and other-image runs.
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
    rows = [json.loads(line) for line in Path(val_jsonl).read_text(encoding="utf-8").splitlines() if line.strip()]
    closed = [r for r in rows if str(r.get("task_type", "")).endswith("_closed")]
    items, gold = [], []
    for r in closed:
        answer = "".join(p.get("text") or "" for p in r["messages"][1]["content"] if p.get("type") == "text")
        items.append({"image": (r.get("images") or [None])[0], "messages": r["messages"][:1]})
        gold.append(answer.strip()[:1].upper())
    return items, gold


def accuracy(answers: list[str], gold: list[str]) -> float:
    return sum(a.strip()[:1].upper() == g for a, g in zip(answers, gold, strict=True)) / max(1, len(gold))


def bench_closed_figures(bench_items: str, checkpoint_dir: str, base_dir: str, prior_train: str | None = None) -> dict:
    """Closed accuracy on the benchmark's held-out questions: trained, trained text-only, trained shown another
    patient's X-ray, untrained base, baselines (+ the question-wording prior of `prior_train`'s training split)."""
    import polars as pl

    from mmoral_pipeline.evaluation.frames import items_from_frame
    from mmoral_pipeline.evaluation.prior import load_prior
    from mmoral_pipeline.evaluation.runners import HFRunner, MostFrequentRunner, QuestionPriorRunner, RandomRunner
    from mmoral_pipeline.evaluation.scoring import score_closed

    closed, _ = items_from_frame(pl.read_parquet(bench_items).filter(pl.col("kind") == "closed"))
    prior_runner = {"question_prior": QuestionPriorRunner(load_prior(prior_train))} if prior_train else {}
    runners = {
        "trained": HFRunner(checkpoint_dir, name="trained", max_new_tokens_closed=24),
        "trained_text_only": HFRunner(
            checkpoint_dir, name="trained-text-only", use_images=False, max_new_tokens_closed=24
        ),
        "trained_other_image": HFRunner(
            checkpoint_dir, name="trained-other-image", other_images=True, max_new_tokens_closed=24
        ),
        "untrained_base": HFRunner(base_dir, name="base", max_new_tokens_closed=24),
        "most_frequent_letter": MostFrequentRunner(),
        "random": RandomRunner(seed=0),
        **prior_runner,
    }
    t0 = time.perf_counter()
    out: dict = {"bench_closed_items": len(closed), "bench_images": len({it.image_id for it in closed})}
    for key, runner in runners.items():
        preds = score_closed(runner.name, closed, runner.answer_closed(closed))
        out[f"bench_acc_{key}"] = round(sum(p.correct for p in preds) / max(1, len(preds)), 3)
        if key in ("trained", "trained_text_only", "trained_other_image", "untrained_base"):
            out[f"bench_{key}_letters"] = dict(Counter(p.letter or "?" for p in preds))
            out[f"bench_{key}_methods"] = dict(Counter(p.method for p in preds))
            by_source: dict[str, list[bool]] = {}
            for it, p in zip(closed, preds, strict=True):
                by_source.setdefault("vqa (generated)" if it.source.startswith("vqa:") else it.source, []).append(
                    p.correct
                )
            out[f"bench_{key}_by_source"] = {c: f"{sum(v)}/{len(v)}" for c, v in sorted(by_source.items())}
    out["bench_eval_s"] = round(time.perf_counter() - t0, 1)
    return out


SANITY_QUESTION = "Is this panoramic X-ray shown as its negative (inverted grey levels)? Answer yes or no."


def negative_sanity_data(
    image_dir: str | Path, work: Path, seed: int = 0, eval_fraction: float = 0.2
) -> tuple[Path, list[dict]]:
    """Every X-ray as is ("no") and inverted ("yes"): a TRL JSONL of the training images' versions, and the held-out
    images' versions as scoring items {image, prompt, label}. Split by image, so no held-out X-ray is trained on."""
    import random

    from PIL import Image, ImageOps

    sources = sorted(p for p in Path(image_dir).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if len(sources) < 10:
        raise ValueError(f"{image_dir}: need at least 10 X-rays for the negative-image control, found {len(sources)}")
    random.Random(seed).shuffle(sources)
    n_eval = max(2, round(eval_fraction * len(sources)))
    (work / "sanity").mkdir(parents=True, exist_ok=True)
    rows, held = [], []
    for k, src in enumerate(sources):
        with Image.open(src) as im:
            gray = im.convert("L")
        for label, picture in (("no", gray), ("yes", ImageOps.invert(gray))):
            path = work / "sanity" / f"{src.stem}_{label}.jpg"
            picture.convert("RGB").save(path, quality=90)
            if k < n_eval:
                held.append({"image": str(path), "prompt": SANITY_QUESTION, "label": label})
            else:
                rows.append(
                    {
                        "sample_id": path.stem,
                        "task_type": "sanity_negative",
                        "images": [str(path)],
                        "messages": [
                            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": SANITY_QUESTION}]},
                            {"role": "assistant", "content": [{"type": "text", "text": label}]},
                        ],
                    }
                )
    random.Random(seed + 1).shuffle(rows)
    train_jsonl = work / "sanity" / "train.jsonl"
    train_jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return train_jsonl, held


def auc(scores: list[float], positive: list[bool]) -> float:
    """Area under the ROC curve (Mann-Whitney: P(score of a positive > score of a negative), ties count half)."""
    pos = [s for s, y in zip(scores, positive, strict=True) if y]
    neg = [s for s, y in zip(scores, positive, strict=True) if not y]
    if not pos or not neg:
        return float("nan")
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def other_image_order(n: int, seed: int = 0) -> list[int]:
    """For item i, the index of the item whose image it is shown: a seeded shuffle rotated by one (never itself), so
    the shown image's answer is independent of the asked one's (a plain rotation of yes/no pairs would flip them)."""
    import random

    order = list(range(n))
    random.Random(seed).shuffle(order)
    shown = [0] * n
    for k, i in enumerate(order):
        shown[i] = order[(k + 1) % n]
    return shown


def negative_sanity_figures(checkpoint_dir: str, held: list[dict], seed: int = 0) -> dict:
    """Right image vs another held-out image vs the majority answer: accuracy and AUC."""
    from mmoral_pipeline.training.infer import answer_scores

    labels = [h["label"] == "yes" for h in held]
    shown = other_image_order(len(held), seed)
    other = [{**h, "image": held[j]["image"]} for h, j in zip(held, shown, strict=True)]
    out: dict = {"sanity_eval_items": len(held)}
    for key, items in (("right_image", held), ("other_image", other)):
        scores = answer_scores(checkpoint_dir, items, ("yes", "no"))
        out[f"sanity_acc_{key}"] = round(sum((s > 0) == y for s, y in zip(scores, labels, strict=True)) / len(held), 3)
        out[f"sanity_auc_{key}"] = round(auc(scores, labels), 3)
    out["sanity_acc_majority"] = round(max(sum(labels), len(labels) - sum(labels)) / len(labels), 3)
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
    ap.add_argument("--prior-train", help="training data of the question-wording prior scored beside the model "
                    "(instruction_samples .parquet, TRL .jsonl, LLaMA-Factory .json)")
    ap.add_argument(
        "--base-model", default="tiny", help="SftSettings.base_model: 'tiny' or a local Qwen2.5-VL checkpoint"
    )
    ap.add_argument("--finetune", choices=["full", "lora"], default="full")
    ap.add_argument("--max-steps", type=int, default=-1, help="> 0: stop after this many steps")
    ap.add_argument("--sanity", choices=["negative"], help="the image-path sanity control instead of an SFT run")
    ap.add_argument("--sanity-images", help="X-rays for --sanity (default $MMORAL_HOME/synth_train/images)")
    ap.add_argument("--sanity-steps", type=int, default=300, help="training steps of --sanity (batch 4)")
    ap.add_argument("--checkpoint", help="score this trained checkpoint on --bench-items only (no training); its "
                    "untrained base is the one named in base_model.txt, else the sibling '<name>_base' folder")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--output-dir", help="checkpoint folder (default <workdir>/ckpt)")
    ap.add_argument("--out", help="write the figures as JSON here")
    args = ap.parse_args(argv)

    if args.checkpoint:
        from mmoral_pipeline.evaluation.bench import base_checkpoint_of

        base = base_checkpoint_of(args.checkpoint)
        if base is None:
            ap.error(f"no base checkpoint found for {args.checkpoint}")
        figures = bench_closed_figures(args.bench_items, args.checkpoint, base, args.prior_train)
        print(json.dumps(figures, indent=1))
        if args.out:
            Path(args.out).write_text(json.dumps(figures, indent=1))
        return 0

    from mmoral_pipeline.training.infer import generate_answers
    from mmoral_pipeline.training.settings import SftSettings
    from mmoral_pipeline.training.trainer import train

    work = Path(args.workdir or tempfile.mkdtemp(prefix="cpu_sft_"))
    if args.sanity:
        from mmoral_pipeline.config import mmoral_home

        image_dir = args.sanity_images or str(Path(mmoral_home()) / "synth_train" / "images")
        train_jsonl, held = negative_sanity_data(image_dir, work)
        settings = SftSettings(
            train_jsonl=str(train_jsonl),
            output_dir=str(work / "sanity_ckpt"),
            task_types=["sanity_negative"],
            max_steps=args.sanity_steps,
            per_device_train_batch_size=args.batch or 4,
            learning_rate=args.lr,
            logging_steps=20,
            **({"tiny_hidden_size": args.hidden} if args.hidden else {}),
        )
        report = train(settings)
        figures = {
            "sanity": "negative",
            "images": image_dir,
            "train_samples": report.train_samples,
            "steps": report.steps,
            "train_time_s": round(report.train_time_s, 1),
            "loss_start": round(report.loss_start, 3),
            "loss_end": round(report.loss_end, 3),
            **negative_sanity_figures(report.checkpoint_dir, held),
        }
        print(json.dumps(figures, indent=1))
        if args.out:
            Path(args.out).write_text(json.dumps(figures, indent=1))
        return 0
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
    settings = SftSettings(
        train_jsonl=train_jsonl,
        output_dir=args.output_dir or str(work / "ckpt"),
        num_train_epochs=args.epochs,
        max_samples=args.max_samples,
        learning_rate=args.lr,
        base_model=args.base_model,
        finetune=args.finetune,
        max_steps=args.max_steps,
        per_device_train_batch_size=args.batch,
        logging_steps=10,
        **overrides,
    )
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
            from mmoral_pipeline.evaluation.bench import base_checkpoint_of

            base = generate_answers(
                base_checkpoint_of(report.checkpoint_dir) or args.base_model, items, max_new_tokens=4
            )
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
        from mmoral_pipeline.evaluation.bench import base_checkpoint_of

        figures.update(
            bench_closed_figures(
                args.bench_items,
                report.checkpoint_dir,
                base_checkpoint_of(report.checkpoint_dir) or args.base_model,
                args.prior_train,
            )
        )
    figures["settings"] = settings.model_dump(exclude={"train_jsonl", "output_dir"}, exclude_defaults=True)
    print(json.dumps(figures, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
