"""The whole graph at MMOral's size: N generated X-rays through `mmoral materialize`, ingest to exports
and benchmark items (offline backend, training excluded), on a real temporary Dagster instance.

For each N: `mmoral synth` writes N distinct small X-rays (two processes), then every step of the
graph runs as its own `mmoral materialize --select ...` subprocess, so each step's wall time and
peak RSS are its own (the kernel's high-water mark of the largest of its processes, from wait4; with
`--workers 2`, two batches run at once, each in a process of that size). Per group it
prints wall time, the heaviest step's peak RSS, rows and bytes written, and, across sizes, the
growth exponent k in time ~ N^k (1 = linear). Then, optionally:

- `--rerun`: one more `mmoral materialize` over the same selection with nothing changed: its wall
  time, LLM requests sent, materialisations and files rewritten (all should be 0 but the time).
- `--lineage K`: `mmoral lineage` for K random samples (the command's wall time, process start included).

    python perf/end_to_end.py --n 300                      # quick check (1-3 min)
    python perf/end_to_end.py --n 2000 --n 5000 --rerun --lineage 5 --plot docs/end_to_end_scaling.png
    python perf/end_to_end.py --n 20563 --rerun --lineage 5 --keep /data/e2e   # MMOral's size

With several sizes below 20,563 it also extrapolates each group to 20,563 from the two largest.

Not a test: nothing is asserted; targets (20,563 X-rays < 45 min, no step > 4 GB) are printed beside the figures.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# every data asset: training, what needs a trained model and training a visual expert excluded
DATA_SELECTION = "not key:sft_model+ and not key:expert_model"

# (group, step label, selection): one `mmoral materialize` each, in graph order.
STEPS: list[tuple[str, str, str]] = [
    ("ingest", "ingest_batch", "group:ingest"),
    ("attributes", "attributes_batch", "group:attributes and not key:location_captions"),
    ("attributes", "location_captions", "key:location_captions"),
    ("generation", "generate_instructions", "group:generation"),
    ("dataset", "instruction_samples", "group:dataset"),
    ("export", "llamafactory_export", "key:llamafactory_export"),
    ("export", "trl_export", "key:trl_export"),
    ("export", "bench_tsv_export", "key:bench_tsv_export"),
    ("export", "dataset_card", "key:dataset_card"),
    ("evaluation", "benchmark_items", "key:benchmark_items or key:benchmark_holdout_pool"),
]
GROUPS = list(dict.fromkeys(g for g, _, _ in STEPS))
TARGET_MINUTES, TARGET_GB = 45, 4.0
MMORAL_IMAGES = 20_563


@dataclass
class StepResult:
    group: str
    step: str
    wall_s: float
    peak_rss_mb: float
    rc: int
    rows: int = 0
    bytes: int = 0
    tail: str = ""


@dataclass
class SizeResult:
    n: int
    synth_s: float
    steps: list[StepResult] = field(default_factory=list)
    rerun: dict | None = None
    lineage_s: list[float] = field(default_factory=list)
    samples: int = 0

    def group(self, g: str) -> dict:
        steps = [s for s in self.steps if s.group == g]
        heaviest = max(steps, key=lambda s: s.peak_rss_mb)
        return {
            "wall_s": sum(s.wall_s for s in steps),
            "peak_rss_mb": heaviest.peak_rss_mb,
            "heaviest": heaviest.step,
            "rows": sum(s.rows for s in steps),
            "bytes": sum(s.bytes for s in steps),
            "ok": all(s.rc == 0 for s in steps),
        }


def run_measured(cmd: list[str], env: dict[str, str], log_path: Path) -> tuple[float, float, int]:
    """(wall seconds, peak RSS MB, exit code) of one subprocess; its output goes to `log_path`."""
    t0 = time.perf_counter()
    with open(log_path, "ab") as log:
        log.write(f"$ {' '.join(cmd)}\n".encode())
        log.flush()
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - t0, usage.ru_maxrss / 1024, proc.returncode


def synth(n: int, out: Path, width: int, height: int, workers: int, env: dict[str, str], log: Path) -> float:
    """N distinct X-rays as one COCO source: `mmoral synth` shards in parallel, merged into one folder."""
    t0 = time.perf_counter()
    per = -(-n // workers)
    procs = []
    for w in range(workers):
        start, count = w * per, min(per, n - w * per)
        if count <= 0:
            continue
        cmd = [
            sys.executable,
            "-m",
            "mmoral_pipeline.cli",
            "synth",
            "--n",
            str(count),
            "--start-index",
            str(start),
            "--seed",
            "7",
            "--out",
            str(out / f"part{w}"),
            "--width",
            str(width),
            "--height",
            str(height),
            "--scores",
            "--no-polygons",
            "--quality",
            "80",
        ]
        with open(log, "ab") as fh:  # the child keeps its own copy of the descriptor
            procs.append(
                (out / f"part{w}", subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO))
            )
    images: list[dict] = []
    annotations: list[dict] = []
    doc: dict = {}
    (out / "images").mkdir(parents=True, exist_ok=True)
    for part, p in procs:
        if p.wait() != 0:
            raise SystemExit(f"mmoral synth failed, see {log}")
        doc = json.loads((part / "annotations.json").read_text())
        images += doc["images"]
        annotations += doc["annotations"]
        for f in (part / "images").iterdir():
            f.rename(out / "images" / f.name)
        shutil.rmtree(part)
    doc.update(images=images, annotations=annotations)
    (out / "annotations.json").write_text(json.dumps(doc, separators=(",", ":")))
    return time.perf_counter() - t0


def bytes_written(home: Path, since: float) -> int:
    """Bytes of the files under MMORAL_HOME written since `since` (tables, exports; not the response cache)."""
    return sum(
        p.stat().st_size
        for p in home.rglob("*")
        if p.is_file() and p.stat().st_mtime >= since and ".sqlite" not in p.name
    )


def _materialisations(instance_dir: Path, after: float) -> list:
    import dagster as dg

    os.environ["DAGSTER_HOME"] = str(instance_dir)  # the instance's dagster.yaml reads it
    instance = dg.DagsterInstance.from_config(str(instance_dir))
    try:
        out = []
        for key in instance.get_asset_keys():
            records = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=key, after_timestamp=after), limit=10_000
            ).records
            out += [(key.to_user_string(), r.asset_materialization.metadata) for r in records]
        return out
    finally:
        instance.dispose()


def rows_written(instance_dir: Path, after: float) -> int:
    """Rows the step's materialisations report: table row counts, export rows per split, benchmark items."""
    total = 0
    for _, md in _materialisations(instance_dir, after):
        value = {k: getattr(v, "value", v) for k, v in md.items()}
        if "dagster/row_count" in value:
            total += int(value["dagster/row_count"])
        elif any(k.startswith("rows_") for k in value):
            total += sum(int(v) for k, v in value.items() if k.startswith("rows_"))
        else:
            total += int(value.get("closed_items", 0)) + int(value.get("open_items", 0))
    return total


def llm_requests_sent(instance_dir: Path, after: float) -> tuple[int, int, int]:
    """(requests sent, cache hits, materialisations) recorded on the instance after `after` (epoch seconds)."""
    sent = hits = 0
    mats = _materialisations(instance_dir, after)
    for name, md in mats:
        if name == "reports":  # the generation step's request counts (same on each of its outputs)
            sent += int(getattr(md.get("requests_sent"), "value", 0) or 0)
            hits += int(getattr(md.get("cache_hits"), "value", 0) or 0)
    return sent, hits, len(mats)


def sample_ids(home: Path, k: int, seed: int = 0) -> tuple[list[str], int]:
    import pyarrow.parquet as pq

    ids = pq.read_table(home / "instruction_samples.parquet", columns=["sample_id"]).column("sample_id").to_pylist()
    return random.Random(seed).sample(ids, min(k, len(ids))), len(ids)


def run_size(n: int, args: argparse.Namespace, base: Path) -> SizeResult:
    work = base / f"n{n}"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    log = work / "log.txt"
    env = {
        **os.environ,
        "MMORAL_HOME": str(work / "home"),
        "DAGSTER_HOME": str(work / "dagster_home"),
        "MMORAL_SOURCES": str(work / "sources.yaml"),
        "MMORAL_LLM_BACKEND": "offline",
        "PYTHONPATH": str(REPO),
        "OMP_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
    }
    (work / "dagster_home").mkdir()
    print(f"\n== N = {n:,}  (work dir {work})", flush=True)
    synth_s = synth(n, work / "src", args.width, args.height, args.synth_workers, env, log)
    print(f"  synth: {n:,} X-rays of {args.width}x{args.height} in {synth_s:.0f} s", flush=True)
    (work / "sources.yaml").write_text(
        "sources:\n  - name: e2e\n    format: coco\n    root: src\n    images: images\n    annotations: annotations.json\n"  # noqa: E501
        f"    shard_size: {args.shard_size}\n    options: {{score_field: score}}\n"
    )
    result = SizeResult(n=n, synth_s=synth_s)
    home = work / "home"
    mmoral = [
        sys.executable,
        "-m",
        "mmoral_pipeline.cli",
        "materialize",
        "--quiet",
        "--workers",
        str(args.workers),
        "--select",
    ]
    for group, step, selection in STEPS:
        t_start = time.time() - 1  # mtime granularity
        wall, rss, rc = run_measured([*mmoral, selection], env, log)
        rows, size = rows_written(work / "dagster_home", t_start), bytes_written(home, t_start)
        tail = log.read_text(errors="replace").splitlines()[-3:] if rc else []
        result.steps.append(StepResult(group, step, wall, rss, rc, rows, size, "\n".join(tail)))
        print(
            f"  {group:<11} {step:<22} {wall:7.1f} s  peak {rss:6.0f} MB  {rows:>10,} rows  {size / 2**20:8.1f} MB"
            + ("" if rc == 0 else f"  FAILED (rc {rc}; see {log})"),
            flush=True,
        )
        if rc:
            break
    if args.rerun and all(s.rc == 0 for s in result.steps):
        before = time.time()
        wall, rss, rc = run_measured([*mmoral, DATA_SELECTION], env, log)
        sent, hits, mats = llm_requests_sent(work / "dagster_home", before)
        rewritten = sum(
            1 for p in home.rglob("*") if p.is_file() and p.stat().st_mtime >= before and p.suffix != ".sqlite-shm"
        )
        result.rerun = {
            "wall_s": wall,
            "peak_rss_mb": rss,
            "rc": rc,
            "requests_sent": sent,
            "cache_hits": hits,
            "materialisations": mats,
            "files_rewritten": rewritten,
        }
        print(
            f"  rerun (nothing changed): {wall:.1f} s, {sent} LLM requests sent, {mats} materialisations, "
            f"{rewritten} files rewritten, rc {rc}",
            flush=True,
        )
    if args.lineage and (home / "instruction_samples.parquet").exists():
        ids, result.samples = sample_ids(home, args.lineage)
        for sid in ids:
            wall, _, rc = run_measured([sys.executable, "-m", "mmoral_pipeline.cli", "lineage", sid], env, log)
            result.lineage_s.append(wall)
        print(
            f"  lineage: {len(ids)} random samples among {result.samples:,}: median {statistics.median(result.lineage_s):.2f} s, "  # noqa: E501
            f"max {max(result.lineage_s):.2f} s [target < 2 s]",
            flush=True,
        )
    if not args.keep:
        shutil.rmtree(work / "src", ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)
    return result


def load_result(d: dict) -> SizeResult:
    return SizeResult(**{**d, "steps": [StepResult(**s) for s in d["steps"]]})


def exponent(a: float, b: float, na: int, nb: int) -> str:
    if a <= 0 or b <= 0 or na == nb:
        return "-"
    return f"{math.log(b / a) / math.log(nb / na):.2f}"


def report(results: list[SizeResult]) -> None:
    print("\nPer group (wall time; peak RSS of the heaviest step; rows and bytes written):")
    head = f"  {'group':<11}" + "".join(f" | N={r.n:<27,}" for r in results)
    print(head)
    for g in GROUPS:
        line = f"  {g:<11}"
        for r in results:
            if not any(s.group == g for s in r.steps):
                line += f" | {'(not run)':<29}"
                continue
            x = r.group(g)
            line += f" | {x['wall_s']:6.0f} s {x['peak_rss_mb'] / 1024:4.2f} GB {x['rows']:>9,} r {x['bytes'] / 2**20:6.0f} MB"  # noqa: E501
        print(line)
    print(
        f"  {'total':<11}"
        + "".join(
            f" | {sum(s.wall_s for s in r.steps) / 60:6.1f} min, peak {max(s.peak_rss_mb for s in r.steps) / 1024:4.2f} GB{'':<6}"  # noqa: E501
            for r in results
        )
    )
    for r in results:
        heavy = max(r.steps, key=lambda s: s.peak_rss_mb)
        total = sum(s.wall_s for s in r.steps)
        print(
            f"  N={r.n:,}: {total / 60:.1f} min [target for 20,563: < {TARGET_MINUTES} min], heaviest step {heavy.step} "  # noqa: E501
            f"{heavy.peak_rss_mb / 1024:.2f} GB [target < {TARGET_GB} GB]; synth (not counted) {r.synth_s:.0f} s"
        )
    if len(results) > 1:
        print("\nGrowth exponent k (time ~ N^k; memory ~ N^k) between consecutive sizes:")
        for g in [*GROUPS, "total"]:
            parts = []
            for a, b in itertools.pairwise(results):
                if g == "total":
                    ta, tb = sum(s.wall_s for s in a.steps), sum(s.wall_s for s in b.steps)
                    ma, mb = max(s.peak_rss_mb for s in a.steps), max(s.peak_rss_mb for s in b.steps)
                elif any(s.group == g for s in a.steps) and any(s.group == g for s in b.steps):
                    ta, tb = a.group(g)["wall_s"], b.group(g)["wall_s"]
                    ma, mb = a.group(g)["peak_rss_mb"], b.group(g)["peak_rss_mb"]
                else:
                    continue
                parts.append(
                    f"{a.n:,}->{b.n:,}: time {exponent(ta, tb, a.n, b.n)}, memory {exponent(ma, mb, a.n, b.n)}"
                )
            print(f"  {g:<11} " + "; ".join(parts))


def plot(results: list[SizeResult], path: Path, extrapolated_s: float | None = None) -> None:
    """Wall time per group and in total against N, log-log, with the linear slope for reference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = [r.n for r in results]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=90)
    for g in GROUPS:
        if all(any(s.group == g for s in r.steps) for r in results):
            ax.plot(ns, [r.group(g)["wall_s"] for r in results], marker="o", lw=1.2, label=g)
    totals = [sum(s.wall_s for s in r.steps) for r in results]
    ax.plot(ns, totals, marker="s", lw=2, color="black", label="total")
    ax.plot(ns, [totals[0] * n / ns[0] for n in ns], ls=":", color="grey", label="linear from the first size")
    if extrapolated_s:
        ax.plot(
            [ns[-1], MMORAL_IMAGES],
            [totals[-1], extrapolated_s],
            ls="--",
            marker="s",
            mfc="white",
            color="black",
            label=f"extrapolated to {MMORAL_IMAGES:,}",
        )
    ax.axhline(TARGET_MINUTES * 60, ls="--", color="red", lw=0.8, label=f"{TARGET_MINUTES} min")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("X-rays (N)")
    ax.set_ylabel("wall time (s)")
    ax.set_title("mmoral materialize, ingest to benchmark items")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    print(f"wrote {path}")


def extrapolate(results: list[SizeResult], target: int = MMORAL_IMAGES) -> float:
    """Time and peak memory per group at `target`, from the two largest sizes' growth exponents (k floored at 1 for
    time: fixed costs make small sizes look sub-linear)."""
    a, b = results[-2], results[-1]
    print(f"\nExtrapolated to N = {target:,} from N = {a.n:,} and {b.n:,} (time ~ N^max(k,1), memory ~ N^k):")
    total = peak = 0.0
    for g in GROUPS:
        if not (any(s.group == g for s in a.steps) and any(s.group == g for s in b.steps)):
            continue
        ga, gb = a.group(g), b.group(g)
        kt = max(1.0, math.log(gb["wall_s"] / ga["wall_s"]) / math.log(b.n / a.n))
        km = math.log(gb["peak_rss_mb"] / ga["peak_rss_mb"]) / math.log(b.n / a.n)
        t, m = gb["wall_s"] * (target / b.n) ** kt, gb["peak_rss_mb"] * (target / b.n) ** max(km, 0.0)
        total, peak = total + t, max(peak, m)
        print(f"  {g:<11} {t / 60:6.1f} min  peak {m / 1024:5.2f} GB  (k time {kt:.2f}, memory {km:.2f})")
    print(
        f"  {'total':<11} {total / 60:6.1f} min  peak {peak / 1024:5.2f} GB  [targets < {TARGET_MINUTES} min, < {TARGET_GB} GB]"  # noqa: E501
    )
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, action="append", default=[], help="number of X-rays (repeat for several sizes)")
    ap.add_argument("--shard-size", type=int, default=1000, help="images per partition")
    ap.add_argument("--width", type=int, default=400)
    ap.add_argument("--height", type=int, default=200)
    ap.add_argument("--synth-workers", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument(
        "--workers",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="mmoral materialize --workers: batches run at once (peak RSS is per process)",
    )
    ap.add_argument("--rerun", action="store_true", help="time a second `mmoral materialize` with nothing changed")
    ap.add_argument("--lineage", type=int, default=0, metavar="K", help="time `mmoral lineage` for K random samples")
    ap.add_argument(
        "--keep",
        default=None,
        metavar="DIR",
        help="work in DIR and keep everything (default: a temporary folder, removed)",
    )
    ap.add_argument("--json", default=None, metavar="FILE", help="also write the figures as JSON")
    ap.add_argument("--plot", default=None, metavar="PNG", help="also draw wall time per group against N (log-log)")
    ap.add_argument(
        "--results",
        action="append",
        default=[],
        metavar="JSON",
        help="figures of earlier runs (--json) to report and plot with these (sizes not run again)",
    )
    args = ap.parse_args()
    if not args.n and not args.results:
        ap.error("give --n (and/or --results)")
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="mmoral-e2e-"))
    base.mkdir(parents=True, exist_ok=True)
    if args.n:
        print(
            f"end to end: N = {', '.join(f'{n:,}' for n in args.n)}; shards of {args.shard_size}; {args.width}x{args.height} X-rays; "  # noqa: E501
            f"{args.workers} worker process(es); "
            f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
        )
    results = [load_result(r) for f in args.results for r in json.loads(Path(f).read_text())]
    try:
        for n in sorted(args.n):
            results.append(run_size(n, args, base))
        results.sort(key=lambda r: r.n)
        report(results)
        extrapolated = None
        if len(results) > 1 and results[-1].n < MMORAL_IMAGES and all(s.rc == 0 for r in results for s in r.steps):
            extrapolated = extrapolate(results)
        if args.json:
            Path(args.json).write_text(
                json.dumps([r.__dict__ | {"steps": [s.__dict__ for s in r.steps]} for r in results], indent=2)
            )
        if args.plot:
            plot(results, Path(args.plot), extrapolated)
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
