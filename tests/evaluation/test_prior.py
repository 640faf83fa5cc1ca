"""The question-wording prior: fitted on the training split only, wording -> template -> all answers."""

from __future__ import annotations

import json
import random

import polars as pl
import pytest

from mmoral_pipeline.evaluation.items import ClosedItem, OpenItem
from mmoral_pipeline.evaluation.prior import QuestionPrior, load_prior, prior_from_samples, question_template
from mmoral_pipeline.evaluation.runners import QuestionPriorRunner, closed_prompt, parse_closed_prompt


def test_template_masks_numbers_not_names():
    assert (
        question_template("Which tooth is located at point_2d [412, 208]?")
        == "Which tooth is located at point_2d [#, #]?"
    )
    assert question_template("Where is tooth 36? Choose its box_2d [x1, y1, x2, y2].") == \
        "Where is tooth #? Choose its box_2d [x1, y1, x2, y2]."


def test_wording_then_template_then_all_answers():
    prior = QuestionPrior.fit(
        closed=[("How many teeth are missing?", "1")] * 3 + [("How many teeth are missing?", "0")] * 2
        + [("Which historical treatment is present on tooth 36?", "Crown")]
        + [("Which historical treatment is present on tooth 14?", "Filling")] * 2,
        open_=[("Describe the jaw.", "No bone loss.")] * 2 + [("Describe the jaw.", "Bone loss in the lower jaw.")])
    assert prior.closed_choice("How many teeth are missing?", ["0", "1", "2", "3"]) == "1"  # the wording's answer
    assert prior.closed_level("How many teeth are missing?") == "wording"
    # the wording says Crown; an unseen tooth falls back to the template, where Filling is the most frequent
    assert (
        prior.closed_choice(
            "Which historical treatment is present on tooth 36?", ["Filling", "Crown", "Implant", "Bridge"]
        )
        == "Crown"
    )
    assert (
        prior.closed_choice(
            "Which historical treatment is present on tooth 21?", ["Crown", "Filling", "Implant", "Bridge"]
        )
        == "Filling"
    )
    assert prior.closed_level("Which historical treatment is present on tooth 21?") == "template"
    # nothing known about the wording: the answers of all training questions
    assert prior.closed_choice("Is this new?", ["Crown", "7", "1", "x"]) == "1"
    assert prior.closed_level("Is this new?") == "all"
    assert prior.open_answer("Describe the jaw.") == "No bone loss."
    assert prior.open_answer("Something never asked?") == ""
    assert prior.answer_spread("How many teeth are missing?", min_answers=5) == pytest.approx(0.4)
    assert prior.answer_spread("How many teeth are missing?", min_answers=6) is None


def test_choice_depends_on_the_option_set_not_the_letters():
    prior = QuestionPrior.fit(closed=[("Q?", "a")])
    options = ["w", "x", "y", "z"]  # none was ever an answer: a hash of (question, option) decides
    picks = {prior.closed_choice("Unseen?", random.Random(k).sample(options, 4)) for k in range(20)}
    assert len(picks) == 1


def _samples() -> pl.DataFrame:
    opts = ["0", "1", "2", "3"]
    return pl.DataFrame(
        [
            {
                "split": "train",
                "question_stem": "How many teeth are missing?",
                "options": opts,
                "answer_letter": "B",
                "answer": "B",
                "n_turns": 2,
            },
            {
                "split": "train",
                "question_stem": "How many teeth are missing?",
                "options": opts,
                "answer_letter": "B",
                "answer": "B",
                "n_turns": 2,
            },
            {
                "split": "train",
                "question_stem": "Describe the jaw.",
                "options": None,
                "answer_letter": None,
                "answer": "No bone loss.",
                "n_turns": 2,
            },
            # held-out and validation rows never reach the prior
            *[
                {
                    "split": s,
                    "question_stem": "How many teeth are missing?",
                    "options": opts,
                    "answer_letter": "D",
                    "answer": "D",
                    "n_turns": 2,
                }
                for s in ("bench", "val")
                for _ in range(5)
            ],
        ]
    )


def test_fitted_on_the_train_split_only(tmp_path):
    prior = prior_from_samples(_samples())
    assert prior.n_closed == 2 and prior.closed_choice("How many teeth are missing?", ["0", "1", "2", "3"]) == "1"
    _samples().write_parquet(tmp_path / "instruction_samples.parquet")
    assert load_prior(tmp_path / "instruction_samples.parquet").summary() == prior.summary()
    assert prior_from_samples(pl.DataFrame({"image_id": ["x"]})).n_closed == 0  # no split column: nothing to fit


def test_training_exports_are_read_back(tmp_path):
    item = ClosedItem(
        index="1", question="How many teeth are missing?", options=["0", "1", "2", "3"], answer="C", category="Teeth"
    )
    prompt = closed_prompt(item)
    assert parse_closed_prompt(prompt) == ("How many teeth are missing?", {"A": "0", "B": "1", "C": "2", "D": "3"})
    assert parse_closed_prompt("Describe the jaw.") is None
    trl = [{"messages": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]},
                         {"role": "assistant", "content": [{"type": "text", "text": "C"}]}]},
           {"messages": [{"role": "user", "content": [{"type": "text", "text": "Describe the jaw."}]},
                         {"role": "assistant", "content": [{"type": "text", "text": "No bone loss."}]}]}]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in trl))
    sharegpt = [
        {"messages": [{"role": "user", "content": "<image>" + prompt}, {"role": "assistant", "content": "C. 2"}]}
    ]
    (tmp_path / "train.json").write_text(json.dumps(sharegpt))
    for name in ("train.jsonl", "train.json"):
        prior = load_prior(tmp_path / name)
        assert prior.closed_choice("How many teeth are missing?", ["3", "2", "1", "0"]) == "2"
    assert load_prior(tmp_path / "train.jsonl").open_answer("Describe the jaw.") == "No bone loss."
    with pytest.raises(ValueError, match="expected instruction_samples"):
        (tmp_path / "x.csv").write_text("a")
        load_prior(tmp_path / "x.csv")


def test_runner_answers_closed_with_a_letter_and_open_with_text():
    prior = QuestionPrior.fit(
        closed=[("How many teeth are missing?", "1")], open_=[("Describe the jaw.", "No bone loss.")]
    )
    runner = QuestionPriorRunner(prior)
    closed = [
        ClosedItem(
            index="1",
            question="How many teeth are missing?",
            options=["3", "2", "1", "0"],
            answer="C",
            category="Teeth",
        )
    ]
    assert runner.answer_closed(closed) == ["C"]
    assert runner.answer_open([OpenItem(index="o", question="Describe the jaw.", answer="x", category="Jaw")]) == [
        "No bone loss."
    ]
