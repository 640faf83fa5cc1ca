"""`mmoral bench`: run models on MMOral-OPG-Bench TSVs outside Dagster and print the table."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _default_prior_train() -> str | None:
    """$MMORAL_HOME/instruction_samples.parquet when the pipeline has written it (its train split is used)."""
    from mmoral_pipeline.config import mmoral_home

    p = Path(mmoral_home()) / "instruction_samples.parquet"
    return str(p) if p.exists() else None


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", action="append", required=True,
                        help="repeatable: 'random', 'most_frequent', 'question_prior' (needs --prior-train), "
                        "'constant:<text>' (the same answer to every question: a floor), a checkpoint folder (or the "
                        "sft_model folder: its latest checkpoint), or an endpoint 'http://host/v1#model'")
    parser.add_argument("--tsv", action="append", required=True,
                        help="repeatable: closed-ended (option1-option4 or A-D columns) and/or open-ended TSV")
    parser.add_argument("--controls", default="text_only,other_image",
                        help="runs added for every model that sees images: text_only (no image), other_image (each "
                        "question shown another patient's X-ray); comma-separated, 'none' for neither")
    parser.add_argument(
        "--prior-train",
        default=None,
        help="training data of the question_prior baseline: instruction_samples .parquet (train split), "
        "TRL .jsonl or LLaMA-Factory .json export; default $MMORAL_HOME/instruction_samples.parquet",
    )
    parser.add_argument("--api-key-env", default="OPENAI_API_KEY", help="env var holding the endpoint key")
    parser.add_argument("--judge-base-url", default=None, help="OpenAI-compatible judge endpoint; none = offline judge")
    parser.add_argument("--judge-model", default=None)
    parser.add_argument("--judge-api-key-env", default="OPENAI_API_KEY")
    parser.add_argument(
        "--judge-cache",
        default=None,
        help="SQLite response cache of the judge (default $MMORAL_HOME/llm_cache.sqlite, shared with generation)",
    )
    parser.add_argument("--judge-repeats", type=int, default=1, help="> 1: re-score open answers and report the spread")
    parser.add_argument("--judge-temperature", type=float, default=0.0)
    parser.add_argument("--limit", type=int, default=None, help="first N rows of each TSV")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random baseline")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-pixels", type=int, default=401_408, help="image pixel budget for local checkpoints")
    parser.add_argument(
        "--max-new-tokens-open", type=int, default=256, help="answer length cap of local checkpoints on open questions"
    )
    parser.add_argument("--out", default=None, help="folder for results.md, dimensions.png and raw predictions")


def _fail(message: str) -> int:
    print(f"mmoral bench: {message}", file=sys.stderr)
    return 2


def run_bench(args: argparse.Namespace) -> int:
    from mmoral_pipeline.evaluation.bench import (
        make_judge,
        make_runner,
        parse_model_arg,
        run_model,
        score_run,
        with_controls,
    )
    from mmoral_pipeline.evaluation.prior import load_prior
    from mmoral_pipeline.evaluation.report import results_markdown, write_outputs
    from mmoral_pipeline.evaluation.tsv import read_bench_tsvs

    missing = [p for p in args.tsv if not os.path.isfile(p)]
    if missing:
        return _fail(f"TSV {missing[0]!r} does not exist")
    try:
        closed, open_ = read_bench_tsvs(args.tsv, args.limit)
    except ValueError as e:
        return _fail(str(e))
    controls = [] if args.controls.strip() in ("", "none") else [c.strip() for c in args.controls.split(",")]
    specs = []
    try:
        for m in args.model:
            specs.extend(with_controls(parse_model_arg(m, api_key_env=args.api_key_env), controls))
    except (ValueError, FileNotFoundError) as e:
        return _fail(str(e))
    prior = None
    if any(s.kind == "question_prior" for s in specs):
        train = args.prior_train or _default_prior_train()
        if train is None:
            return _fail("question_prior needs training data: --prior-train PATH (instruction_samples .parquet, "
                         "TRL .jsonl or LLaMA-Factory .json)")
        try:
            prior = load_prior(train)
        except (ValueError, FileNotFoundError) as e:
            return _fail(str(e))
    judge = make_judge(
        args.judge_base_url, args.judge_model, args.judge_api_key_env, args.judge_cache, args.judge_temperature
    )
    results = []
    for spec in specs:
        spec.seed, spec.batch_size, spec.max_pixels = args.seed, args.batch_size, args.max_pixels
        spec.max_new_tokens_open = args.max_new_tokens_open
        try:
            run = run_model(make_runner(spec, prior=prior), closed, open_)
        except ValueError as e:  # e.g. the other-image control on a single image
            return _fail(f"{spec.name}: {e}")
        results.append(score_run(run, closed, open_, judge, repeats=args.judge_repeats))
    print(f"{len(closed)} closed-ended and {len(open_)} open-ended questions; judge: "
          f"{getattr(judge, 'name', 'offline')} ({judge.prompt_version})")
    print(results_markdown([r.scores for r in results]))
    if args.out:
        paths = write_outputs(args.out, results)
        print(f"wrote {', '.join(str(p) for p in paths.values())}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mmoral bench", description=__doc__)
    add_bench_arguments(parser)
    return run_bench(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
