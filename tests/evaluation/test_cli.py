"""`mmoral bench` outside Dagster: baselines, an endpoint model and an LLM judge on a local server."""

from __future__ import annotations

import json

from mmoral_pipeline.evaluation.cli import main
from mmoral_pipeline.evaluation.items import OpenItem
from mmoral_pipeline.evaluation.tsv import read_closed_tsv, write_open_tsv


def test_bench_cli_baselines_on_official_sample(closed_sample_tsv, tmp_path, capsys):
    rc = main(
        ["--model", "random", "--model", "most_frequent", "--tsv", str(closed_sample_tsv), "--out", str(tmp_path)]
    )
    out = capsys.readouterr().out
    assert rc == 0
    assert "4 closed-ended and 0 open-ended questions" in out
    rows = {
        line.split("|")[1].strip(): line for line in out.splitlines() if line.startswith("| ") and "Model" not in line
    }
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
    open_tsv = write_open_tsv(
        [
            OpenItem(index=str(i), image=closed[i].image, question=q, answer=a, category=c)
            for i, (q, a, c) in enumerate(
                [
                    ("Which tooth has caries?", "Caries on tooth 36.", "Teeth,Patho"),
                    ("Describe the jaw.", "No bone loss.", "Jaw"),
                ]
            )
        ],
        tmp_path / "open.tsv",
    )
    args = [
        "--model",
        f"{url}#vlm",
        "--controls",
        "text_only",
        "--tsv",
        str(closed_sample_tsv),
        "--tsv",
        str(open_tsv),
        "--judge-base-url",
        url,
        "--judge-model",
        "judge",
        "--judge-repeats",
        "2",
        "--judge-cache",
        str(tmp_path / "judge.sqlite"),
    ]
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


def _vlmevalkit_tsv(path, sample_tsv) -> None:
    """The official sample rewritten in VLMEvalKit's closed layout (A-D columns, hint, l2-category), one blank
    option."""
    import csv

    rows = read_closed_tsv(sample_tsv)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, delimiter="\t", lineterminator="\n")
        w.writerow(["index", "image", "question", "hint", "A", "B", "C", "D", "answer", "category", "l2-category"])
        for k, it in enumerate(rows):
            options = ["" if (k == 0 and j == 3) else o for j, o in enumerate(it.options)]
            w.writerow([it.index, it.image, it.question, "", *options, it.answer, it.category, ""])


def test_bench_reads_vlmevalkit_closed_tsvs(closed_sample_tsv, tmp_path, capsys):
    from mmoral_pipeline.evaluation.tsv import read_bench_tsv

    vlm = tmp_path / "MMOral_OPG_CLOSED.tsv"
    _vlmevalkit_tsv(vlm, closed_sample_tsv)
    rows = read_bench_tsv(vlm)
    official = read_closed_tsv(closed_sample_tsv)
    assert [type(r).__name__ for r in rows] == ["ClosedItem"] * 4  # told apart from open TSVs by the A-D columns
    assert (
        rows[0].options[3] == "None" and rows[1].options == official[1].options
    )  # a blank option is the literal "None"
    assert main(["--model", "most_frequent", "--tsv", str(vlm), "--tsv", str(closed_sample_tsv)]) == 0
    assert "8 closed-ended and 0 open-ended questions" in capsys.readouterr().out


def test_bench_rejects_a_tsv_of_neither_kind(tmp_path, capsys):
    bad = tmp_path / "bad.tsv"
    bad.write_text("index\tprompt\n1\thello\n")
    assert main(["--model", "random", "--tsv", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "neither a closed-ended (option1-option4 or A-D) nor an open-ended TSV" in err


def test_bench_model_folder_resolution(tmp_path, capsys, closed_sample_tsv):
    from mmoral_pipeline.evaluation.bench import parse_model_arg

    sft_model = tmp_path / "sft_model"
    (sft_model / "latest").mkdir(parents=True)
    (sft_model / "latest" / "config.json").write_text("{}")
    assert parse_model_arg(str(sft_model)).path == str(sft_model / "latest")  # the folder the demo writes
    assert parse_model_arg(str(sft_model)).name == "sft_model"
    trainer_out = tmp_path / "run"
    for step in (50, 200, 100):
        (trainer_out / f"checkpoint-{step}").mkdir(parents=True)
        (trainer_out / f"checkpoint-{step}" / "adapter_config.json").write_text("{}")
    assert parse_model_arg(str(trainer_out)).path == str(trainer_out / "checkpoint-200")  # its latest checkpoint
    empty = tmp_path / "not_a_model"
    empty.mkdir()
    assert main(["--model", str(empty), "--tsv", str(closed_sample_tsv)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not a checkpoint folder" in err and "Traceback" not in err
    assert main(["--model", str(tmp_path / "missing"), "--tsv", str(closed_sample_tsv)]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_bench_baselines_prior_constant_and_controls(endpoint, closed_sample_tsv, tmp_path, capsys, monkeypatch):
    """question_prior from a training export, the constant floor, and an endpoint with both controls by default."""
    from mmoral_pipeline.evaluation.runners import closed_prompt

    server, url = endpoint
    monkeypatch.setenv("MMORAL_HOME", str(tmp_path))
    closed = read_closed_tsv(closed_sample_tsv)
    train = [{"messages": [{"role": "user", "content": "<image>" + closed_prompt(it)},
                           {"role": "assistant", "content": it.answer}]} for it in closed[:2]]
    (tmp_path / "train.json").write_text(json.dumps(train))
    assert main(["--model", "question_prior", "--tsv", str(closed_sample_tsv)]) == 2  # no training data anywhere
    assert "question_prior needs training data" in capsys.readouterr().err
    args = [
        "--model",
        "question_prior",
        "--prior-train",
        str(tmp_path / "train.json"),
        "--model",
        "constant:I don't know.",
        "--model",
        f"{url}#vlm",
        "--tsv",
        str(closed_sample_tsv),
        "--out",
        str(tmp_path / "out"),
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    rows = {
        line.split("|")[1].strip(): line for line in out.splitlines() if line.startswith("| ") and "Model" not in line
    }
    assert list(rows) == ["question_prior", "constant:I don't know.", "vlm", "vlm-text-only", "vlm-other-image"]
    scores = {s["model"]: s for s in json.loads((tmp_path / "out" / "scores.json").read_text())}
    assert scores["question_prior"]["closed"]["Overall"] >= 50.0  # the two training questions are answered from text
    assert scores["constant:I don't know."]["closed"]["Overall"] == 0.0
    assert scores["constant:I don't know."]["extraction_failure_rate"] == 100.0
    # the other-image run sent every question with another row's X-ray
    from .conftest import bodies

    sent = [b for b in bodies(server) if isinstance(b["messages"][-1]["content"], list)]
    own = {closed_prompt(it): it.image for it in closed}
    shown = [
        (b["messages"][-1]["content"][1]["text"], b["messages"][-1]["content"][0]["image_url"]["url"].split(",", 1)[1])
        for b in sent
    ]
    assert sum(img == own[text] for text, img in shown) == 4 and sum(img != own[text] for text, img in shown) == 4
