from __future__ import annotations

from collections import Counter

import pytest

from mmoral_pipeline.evaluation.bench import ModelRun, score_run
from mmoral_pipeline.evaluation.build import build_benchmark
from mmoral_pipeline.evaluation.items import ClosedItem
from mmoral_pipeline.evaluation.runners import MostFrequentRunner, RandomRunner
from mmoral_pipeline.evaluation.scoring import per_dimension, results_table, score_closed, summarise

from .factories import make_attributes


def _closed(i: int, answer: str, category: str) -> ClosedItem:
    return ClosedItem(index=str(i), question=f"q{i}", options=["w", "x", "y", "z"], answer=answer, category=category)


def test_question_counts_in_each_of_its_labels():
    items = [
        _closed(0, "A", "Teeth,Patho"),
        _closed(1, "B", "Teeth"),
        _closed(2, "C", "Jaw"),
        _closed(3, "D", "Patho,SumRec"),
    ]
    preds = score_closed("m", items, ["A", "A", "C", "A"])  # right, wrong, right, wrong
    s = summarise("m", preds)
    assert s.closed_counts == {"Teeth": 2, "Patho": 2, "HisT": 0, "Jaw": 1, "SumRec": 1, "Overall": 4}
    assert s.closed["Teeth"] == pytest.approx(50.0)
    assert s.closed["Patho"] == pytest.approx(50.0)
    assert s.closed["Jaw"] == pytest.approx(100.0)
    assert s.closed["SumRec"] == pytest.approx(0.0)
    assert s.closed["HisT"] is None
    assert s.closed["Overall"] == pytest.approx(50.0)


def test_avg_is_mean_of_closed_and_open():
    means, counts = per_dimension([("Teeth", 0.5), ("Report", 1.0), ("Teeth,Report", 0.0)], ["Teeth", "Report"])
    assert means["Teeth"] == pytest.approx(25.0) and counts["Report"] == 2 and means["Overall"] == pytest.approx(50.0)
    attrs = [make_attributes(s) for s in range(4)]
    closed, open_, _ = build_benchmark(attrs)
    run = ModelRun(model="m", closed_outputs=[it.answer for it in closed[:10]] + ["?"] * (len(closed) - 10),
                   open_outputs=[it.answer for it in open_])
    s = score_run(run, closed, open_).scores
    assert s.closed["Overall"] == pytest.approx(100.0 * 10 / len(closed))
    assert s.open["Overall"] == pytest.approx(100.0)  # the ground truth judged against itself
    assert s.avg == pytest.approx((s.closed["Overall"] + s.open["Overall"]) / 2)
    table = results_table([s])
    assert table.splitlines()[0].startswith("| Model | C-Teeth | C-Patho | C-HisT | C-Jaw | C-SumRec | Closed |")
    assert "| m |" in table


def test_scoring_same_predictions_twice_is_identical():
    attrs = [make_attributes(s) for s in range(6)]
    closed, open_, _ = build_benchmark(attrs)
    outs_c = RandomRunner(seed=3).answer_closed(closed)
    outs_c[::5] = ["I am not sure"] * len(outs_c[::5])
    # a "model" that answers each open question with another image's answer: partial credit everywhere
    outs_o = [open_[(i + 6) % len(open_)].answer for i in range(len(open_))]
    run = ModelRun(model="m", closed_outputs=outs_c, open_outputs=outs_o)
    first, second = score_run(run, closed, open_), score_run(run, closed, open_)
    assert first.model_dump() == second.model_dump()
    assert 0.0 < first.scores.open["Overall"] < 100.0
    assert first.scores.extraction_failure_rate == pytest.approx(100.0 * len(outs_c[::5]) / len(closed))


def test_baselines_are_deterministic_for_a_seed():
    closed, _, _ = build_benchmark([make_attributes(s) for s in range(20)])
    a, b = RandomRunner(seed=7).answer_closed(closed), RandomRunner(seed=7).answer_closed(list(reversed(closed)))
    assert a == list(reversed(b))  # per-item seeding: order does not matter
    assert RandomRunner(seed=8).answer_closed(closed) != a
    assert set(a) <= set("ABCD") and len(set(a)) == 4
    acc = sum(x == it.answer for x, it in zip(a, closed, strict=False)) / len(closed)
    assert 0.1 < acc < 0.45  # about chance over 100 questions
    skewed = closed[:8] + [it for it in closed if it.answer == "C"]
    mf = MostFrequentRunner()
    assert set(mf.answer_closed(skewed)) == {"C"}
    assert mf.letter == Counter(it.answer for it in skewed).most_common(1)[0][0]
