"""`mmoral bench` outside Dagster: baselines, an endpoint model and an LLM judge on a local server."""

from __future__ import annotations

import json

from mmoral_pipeline.evaluation.cli import main
from mmoral_pipeline.evaluation.items import OpenItem
from mmoral_pipeline.evaluation.tsv import read_closed_tsv, write_open_tsv


def test_bench_cli_baselines_on_official_sample(closed_sample_tsv, tmp_path, capsys):
    rc = main(["--model", "random", "--model", "most_frequent", "--tsv", str(closed_sample_tsv), "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0
    assert "4 closed-ended and 0 open-ended questions" in out
    rows = {line.split("|")[1].strip(): line for line in out.splitlines() if line.startswith("| ") and "Model" not in line}
    assert set(rows) == {"random", "most_frequent"}
    assert "| 50.00 |" in rows["most_frequent"]  # always B: right on 2 of the 4 sample rows
    scores = json.loads((tmp_path / "scores.json").read_text())
    assert [s["model"] for s in scores] == ["random", "most_frequent"]
    preds = [json.loads(x) for x in (tmp_path / "predictions_closed.jsonl").read_text().splitlines()]
    assert len(preds) == 8 and {p["method"] for p in preds} == {"letter"}


def test_bench_cli_endpoint_model_with_llm_judge(endpoint, closed_sample_tsv, tmp_path, capsys, monkeypatch):
    server, url = endpoint
    monkeypatch.setenv("MMORAL_HOME", str(tmp_path))
    closed = read_closed_tsv(closed_sample_tsv)
    open_tsv = write_open_tsv([OpenItem(index=str(i), image=closed[i].image, question=q, answer=a, category=c)
                               for i, (q, a, c) in enumerate([("Which tooth has caries?", "Caries on tooth 36.", "Teeth,Patho"),
                                                              ("Describe the jaw.", "No bone loss.", "Jaw")])], tmp_path / "open.tsv")
    args = ["--model", f"{url}#vlm", "--text-only", "--tsv", str(closed_sample_tsv), "--tsv", str(open_tsv),
            "--judge-base-url", url, "--judge-model", "judge", "--judge-repeats", "2", "--judge-cache", str(tmp_path / "judge.sqlite")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "judge: openai:judge (judge_open@" in out
    assert "| vlm |" in out and "| vlm-text-only |" in out
    assert "open score over 2 scorings" in out
    sent = server.count()
    # 4 closed + 2 open per model (x2 models) + 2 open x 2 repeats x 2 models judged
    assert sent == 2 * (4 + 2) + 2 * 2 * 2
    assert main(args) == 0  # everything cached now: the model answers and the judge scores
    assert server.count() == sent
    assert capsys.readouterr().out.splitlines()[2:5] == out.splitlines()[2:5]
