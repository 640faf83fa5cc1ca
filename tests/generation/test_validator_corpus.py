"""The claim validators on the labelled corpus (tests/generation/corpus/): recall and false-rejection floors.

The goal is >= 95 % of the hallucinated items rejected and <= 5 % of the faithful ones; this test
holds the floors (90 % / 10 %) on the first corpus (items.jsonl) and, separately, on the independent
one (independent.jsonl, written by a second author before reading the validators). perf/validator_corpus.py
prints the figures per task type for each part (dev, heldout, ind-tune, ind-check).
"""

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("validator_corpus", ROOT / "perf" / "validator_corpus.py")
corpus = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = corpus  # dataclasses look their module up
_spec.loader.exec_module(corpus)


@pytest.fixture(scope="module")
def results():
    facts, items = corpus.load()
    return corpus.evaluate(facts, items)


def _rates(results, parts):
    rows = [(it, any(not v.passed for v in vs)) for it, vs in results if it["split"] in parts]
    hall = [rej for it, rej in rows if it["label"] == "hallucinated"]
    faith = [rej for it, rej in rows if it["label"] == "faithful"]
    return sum(hall) / len(hall), sum(faith) / len(faith), len(hall), len(faith)


@pytest.mark.parametrize(("parts", "minimum"), [(("dev", "heldout"), 150), (("ind-tune", "ind-check"), 120)])
def test_corpus_size_and_task_types(results, parts, minimum):
    items = [it for it, _ in results if it["split"] in parts]
    assert (
        sum(it["label"] == "hallucinated" for it in items) >= minimum
        and sum(it["label"] == "faithful" for it in items) >= minimum
    )
    for task in corpus.TASKS:
        assert {it["label"] for it in items if it["task_type"] == task} == {"hallucinated", "faithful"}, task


@pytest.mark.parametrize(
    "parts", [("dev", "heldout"), ("ind-tune", "ind-check")], ids=["first corpus", "independent corpus"]
)
def test_recall_and_false_rejection_floors(results, parts):
    recall, false_rejection, n_hall, n_faith = _rates(results, parts)
    assert recall >= 0.90, f"{recall:.1%} of {n_hall} hallucinated items rejected"
    assert false_rejection <= 0.10, f"{false_rejection:.1%} of {n_faith} faithful items rejected"


def test_hallucinations_are_rejected_for_a_content_reason(results):
    """A hallucinated item must fail a grounding validator, not only a form check."""
    content = {"grounded_teeth", "coverage", "grounding", "contradiction", "hedging", "option_truth"}
    for it, verdicts in results:
        if it["label"] == "hallucinated" and any(not v.passed for v in verdicts):
            assert {v.validator for v in verdicts if not v.passed} & content, it["id"]


def test_tuning_probes(results):
    wrong = [
        it["id"]
        for it, vs in results
        if it["split"] == "probe" and any(not v.passed for v in vs) != (it["label"] == "hallucinated")
    ]
    assert not wrong
