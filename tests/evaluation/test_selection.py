"""The closed set's choice: varying questions first, 3 generated + 2 rules as the target, the prior at chance."""

from __future__ import annotations

import random
from collections import Counter

from mmoral_pipeline.evaluation.build import build_benchmark_items
from mmoral_pipeline.evaluation.prior import QuestionPrior
from mmoral_pipeline.evaluation.selection import GENERATED, RULE, Choice, select_closed
from mmoral_pipeline.evaluation.verdicts import text_alone_near_chance
from mmoral_pipeline.generation.facts import facts_of
from mmoral_pipeline.generation.location_vqa import build_rule_items
from mmoral_pipeline.generation.offline import vqa_candidates

from .factories import make_attributes


def _pool(image: str, rng: random.Random) -> list[Choice]:
    out = []
    for k in range(6):
        out.append(
            Choice(
                image,
                f"g{k}",
                GENERATED,
                f"gt{k}",
                spread=0.9 if k < 4 else 0.1,
                prior_right=rng.random() < 0.6,
                dims=frozenset({"Teeth", "Patho"}),
            )
        )
    for k in range(6):
        out.append(
            Choice(
                image, f"r{k}", RULE, f"rt{k}", spread=0.8, prior_right=rng.random() < 0.6, dims=frozenset({"Teeth"})
            )
        )
    out.append(Choice(image, "jaw", RULE, "jaw", spread=0.1, prior_right=rng.random() < 0.8, dims=frozenset({"Jaw"})))
    return out


def test_balances_the_prior_to_chance_and_keeps_the_paper_composition():
    rng = random.Random(0)
    pools = {f"im{i:02d}": _pool(f"im{i:02d}", rng) for i in range(40)}
    _unbalanced, before = select_closed(pools, balance=False)
    picks, report = select_closed(pools)
    assert before.prior_right / before.items > 0.45  # the pool's questions: the prior is right on about 60 %
    assert report.items == 200 and report.prior_right == 50 and report.swaps > 0  # 25 %: chance
    assert report.prior_accuracy == 25.0 and report.prior_right_before == before.prior_right
    # swaps prefer questions that vary, then the same slot: most images keep 3 generated + 2 rules
    on_target = sum(Counter(c.slot for c in chosen) == {GENERATED: 3, RULE: 2} for chosen in picks.values())
    assert on_target >= 30 and report.images_off_target == 40 - on_target
    assert report.off_target_reasons == {
        "dimension minimum or balancing against the question-wording prior": 40 - on_target
    }
    assert all(len({c.template for c in chosen}) == 5 for chosen in picks.values())
    assert report.varying_share >= 0.9
    # the near-constant Jaw question joins only to keep the dimension at its minimum share (5 %), and the prior is
    # right on at most a quarter of those (the images where the answer is not the usual one make up the rest)
    jaw = [c for chosen in picks.values() for c in chosen if "Jaw" in c.dims]
    assert report.dimensions["Jaw"] == len(jaw) == report.dimension_minimum == 10
    assert sum(c.prior_right for c in jaw) <= 3
    assert [c.key for c in picks["im00"]] == [c.key for c in select_closed(dict(reversed(pools.items())))[0]["im00"]]


def test_off_target_images_are_reported_with_their_reason():
    pools = {"a": [Choice("a", f"r{k}", RULE, f"t{k}", spread=0.9, dims=frozenset({"Teeth"})) for k in range(6)]}
    picks, report = select_closed(pools)
    assert len(picks["a"]) == 5 and report.prior_right is None  # no prior: nothing to balance against
    assert report.off_target_reasons == {"no generated VQA": 1}
    _short, rep = select_closed({"b": [Choice("b", "x", RULE, "t", spread=0.9)]})
    assert rep.images_short == {"b": 1}


def test_built_benchmark_is_not_passed_by_the_training_prior():
    """Real builders and the offline writer's VQA: the prior fitted on training images answers the unbalanced set
    far above chance, the balanced one at chance (the WARN check's rule)."""
    train = [make_attributes(s) for s in range(100, 220)]
    pairs = []
    for a in train:
        facts = facts_of(a)
        for c in vqa_candidates(facts, random.Random(a.image_id))[0]:
            pairs.append((c["question"], c["answer_text"]))
        for r in build_rule_items(facts, random.Random(a.image_id), max_loc_closed=4, max_loc_open=0):
            if r.options:
                pairs.append((r.question, r.answer))
    prior = QuestionPrior.fit(pairs)
    held = [make_attributes(s) for s in range(40)]
    from .test_build import _generated_for

    generated = {a.image_id: _generated_for(a) for a in held}
    plain = build_benchmark_items(held, generated=generated, prior=prior, balance=False)
    balanced = build_benchmark_items(held, generated=generated, prior=prior)
    assert not text_alone_near_chance(plain.closed, prior).passed
    verdict = text_alone_near_chance(balanced.closed, prior)
    assert verdict.passed and abs(verdict.figures["question_prior"] - 25.0) <= 1.0
    assert verdict.figures["most_frequent_letter"] <= 25.5
    assert balanced.selection.prior_right == sum(prior.closed_choice(it.question, it.options) == it.answer_text
                                                 for it in balanced.closed)
    assert Counter(it.image_id for it in balanced.closed) == {a.image_id: 5 for a in held}


def test_model_verdicts_need_the_model_and_its_controls():
    from mmoral_pipeline.evaluation.verdicts import sft_beats_baselines, sft_not_worse_than_base

    assert sft_beats_baselines({"question_prior": 25.0, "random": 24.0}) is None  # no fine-tuned model: skipped
    assert sft_not_worse_than_base({"sft": 30.0}) is None
    full = {"sft": 40.0, "question_prior": 25.0, "sft-other-image": 34.0, "most_frequent": 25.4, "base": 10.0}
    v = sft_beats_baselines(full)
    assert v.passed and v.figures["sft-other-image"] == 34.0
    v = sft_beats_baselines({**full, "sft-other-image": 36.0})  # 4 points above its other-image run: not enough
    assert not v.passed and "itself shown another patient's X-ray (36.0)" in v.description
    v = sft_beats_baselines({k: x for k, x in full.items() if k != "sft-other-image"})
    assert not v.passed and "cannot tell whether it reads the X-ray" in v.description
    assert not sft_not_worse_than_base({"sft": 30.0, "base": 40.0}).passed
