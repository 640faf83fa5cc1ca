"""`mmoral bench`: run models on MMOral-OPG-Bench TSVs outside Dagster and print the table."""

from __future__ import annotations

import argparse
import sys


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", action="append", required=True,
                        help="repeatable: 'random', 'most_frequent', a checkpoint folder, or an endpoint 'http://host/v1#model'")
    parser.add_argument("--tsv", action="append", required=True,
                        help="repeatable: closed-ended and/or open-ended TSV (told apart by the header)")
    parser.add_argument("--text-only", action="store_true", help="also run each model without the image")
    parser.add_argument("--api-key-env", default="OPENAI_API_KEY", help="env var holding the endpoint key")
    parser.add_argument("--judge-base-url", default=None, help="OpenAI-compatible judge endpoint; none = offline judge")
    parser.add_argument("--judge-model", default=None)
    parser.add_argument("--judge-api-key-env", default="OPENAI_API_KEY")
    parser.add_argument("--judge-cache", default=None, help="SQLite response cache of the judge (default $MMORAL_HOME/llm_cache.sqlite, shared with generation)")
    parser.add_argument("--judge-repeats", type=int, default=1, help="> 1: re-score open answers and report the spread")
    parser.add_argument("--judge-temperature", type=float, default=0.0)
    parser.add_argument("--limit", type=int, default=None, help="first N rows of each TSV")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random baseline")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-pixels", type=int, default=401_408, help="image pixel budget for local checkpoints")
    parser.add_argument("--out", default=None, help="folder for results.md, dimensions.png and raw predictions")


def run_bench(args: argparse.Namespace) -> int:
    from mmoral_pipeline.evaluation.bench import make_judge, make_runner, parse_model_arg, run_model, score_run
    from mmoral_pipeline.evaluation.items import ClosedItem, OpenItem
    from mmoral_pipeline.evaluation.report import results_markdown, write_outputs
    from mmoral_pipeline.evaluation.tsv import read_bench_tsv

    closed: list[ClosedItem] = []
    open_: list[OpenItem] = []
    for path in args.tsv:
        rows = read_bench_tsv(path)[: args.limit] if args.limit else read_bench_tsv(path)
        for r in rows:
            (closed if isinstance(r, ClosedItem) else open_).append(r)  # type: ignore[arg-type]
    specs = []
    for m in args.model:
        try:
            specs.append(parse_model_arg(m, api_key_env=args.api_key_env))
            if args.text_only and m not in ("random", "most_frequent"):
                specs.append(parse_model_arg(m, text_only=True, api_key_env=args.api_key_env))
        except (ValueError, FileNotFoundError) as e:
            print(f"mmoral bench: {e}", file=sys.stderr)
            return 2
    judge = make_judge(args.judge_base_url, args.judge_model, args.judge_api_key_env, args.judge_cache, args.judge_temperature)
    results = []
    for spec in specs:
        spec.seed, spec.batch_size, spec.max_pixels = args.seed, args.batch_size, args.max_pixels
        run = run_model(make_runner(spec), closed, open_)
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
