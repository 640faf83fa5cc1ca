from __future__ import annotations

from collections import Counter

from mmoral_pipeline.dataset.split import is_holdout
from mmoral_pipeline.evaluation.build import (
    REPORT_PHRASINGS,
    assign_letters,
    build_benchmark,
    holdout_attributes,
    rejection_counts,
    validate_closed_item,
)
from mmoral_pipeline.evaluation.extraction import extract_choice
from mmoral_pipeline.evaluation.items import CLOSED_DIMENSIONS, ClosedItem, OpenItem
from mmoral_pipeline.generation.facts import facts_of
from mmoral_pipeline.generation.location_vqa import COUNT_TARGETS, RuleItem, true_count

from .factories import make_attributes


def test_five_closed_six_open_per_image_with_balanced_letters():
    attrs = [make_attributes(s) for s in range(40)]
    closed, open_, rejected = build_benchmark(attrs)
    assert rejected == []
    assert Counter(it.image_id for it in closed) == {a.image_id: 5 for a in attrs}
    assert Counter(it.image_id for it in open_) == {a.image_id: 6 for a in attrs}
    letters = Counter(it.answer for it in closed)
    assert max(letters.values()) - min(letters.values()) <= 1 and set(letters) == set("ABCD")
    kinds = Counter(it.kind for it in open_)
    assert kinds == {"report": 160, "location": 40, "write_report": 40}
    assert {it.question for it in open_ if it.kind == "write_report"} <= set(REPORT_PHRASINGS)
    labels = Counter(label for it in closed for label in it.labels)
    assert set(labels) == set(CLOSED_DIMENSIONS)
    by_id = {a.image_id: a for a in attrs}
    for it in closed:
        assert validate_closed_item(it, by_id[it.image_id]) == []
        # the right answer's text is what extraction finds when a model answers with it
        assert extract_choice(it.answer_text, it.options).letter == it.answer or it.answer_text in ("None",)


def test_build_is_deterministic_and_order_independent():
    attrs = [make_attributes(s) for s in range(10)]
    a = build_benchmark(attrs)
    b = build_benchmark(list(reversed(attrs)))
    assert [x.model_dump() for x in a[0]] == [x.model_dump() for x in b[0]]
    assert [x.model_dump() for x in a[1]] == [x.model_dump() for x in b[1]]


def test_report_text_is_used_when_given():
    from mmoral_pipeline.evaluation.build import GeneratedReport

    a = make_attributes(3)
    report = "1) Teeth: caries on tooth 36.\n2) Jaw: no bone loss.\n3) Summary: restore tooth 36."
    _, open_, _ = build_benchmark([a], reports={a.image_id: report})
    [write] = [it for it in open_ if it.kind == "write_report"]
    assert write.answer == report and write.source == "report"
    _, open_, _ = build_benchmark([a], reports={a.image_id: GeneratedReport(item_id="r123", text=report)})
    [write] = [it for it in open_ if it.kind == "write_report"]
    assert write.answer == report and write.source == "report:r123"  # which reports row answered it
    summary = [it for it in open_ if it.category == "SumRec"]
    assert all(it.answer == "restore tooth 36." and it.source == "report:r123#3" for it in summary)  # section 3's body
    _, open_, _ = build_benchmark([a])
    assert [it.source for it in open_ if it.kind == "write_report"] == ["rule:write_report"]


def test_holdout_selection_uses_dataset_rule():
    attrs = [make_attributes(s) for s in range(60)]
    held = holdout_attributes(attrs, fraction=0.3)
    assert 0 < len(held) < len(attrs)
    assert [a.image_id for a in held] == [a.image_id for a in attrs if is_holdout(a.image_id, 0.3)]
    assert [a.image_id for a in holdout_attributes(attrs, explicit={"img007", "img011"})] == ["img007", "img011"]


def test_validator_rejects_bad_items():
    bad = ClosedItem(
        index="x",
        question="When is the next follow-up visit?",
        options=["1", "1", "2", "3"],
        answer="A",
        category="Teeth,Foo",
    )
    problems = validate_closed_item(bad)
    assert any(p.startswith("mcq_form") and "distinct" in p for p in problems)  # the generation validator
    assert any("labels" in p for p in problems) and any("follow-up" in p for p in problems)  # the benchmark's own rules


def test_count_questions_are_the_generation_rule():
    attrs = [make_attributes(s) for s in range(40)]
    closed, _, _ = build_benchmark(attrs)
    by_id = {a.image_id: a for a in attrs}
    questions = {q: target for target, (q, _cap, _dims) in COUNT_TARGETS.items()}
    counts = [it for it in closed if it.source.startswith("rule:count_")]
    assert len({it.source for it in counts}) >= 3  # teeth, missing, periapical (and filling = 0) all occur
    for it in counts:
        target = questions[it.question]  # generation's wording
        n = true_count(target, facts_of(by_id[it.image_id]))
        assert it.answer_text == str(n)
        # the authors' distractors: +-1..5, 0, 32, half, double (generation.count_options)
        allowed = {str(n + d) for d in range(-5, 6) if d and n + d >= 0} | {"0", "32", str(n // 2), str(n * 2)}
        assert set(it.options) - {str(n)} <= allowed and len(set(it.options)) == 4


def test_location_items_come_from_generation_rules_and_are_verified():
    attrs = [make_attributes(s) for s in range(20)]
    closed, open_, rejected = build_benchmark(attrs)
    assert rejected == []
    loc_closed = [it for it in closed if it.source.startswith("rule:loc_")]
    assert loc_closed and {it.source for it in loc_closed} <= {
        "rule:loc_finding_in_box",
        "rule:loc_tooth_at_point",
        "rule:loc_tooth_box",
    }
    loc_open = [it for it in open_ if it.kind == "location"]
    assert len(loc_open) == 20
    assert all(it.answer.startswith("[{") and ("box_2d" in it.answer or "point_2d" in it.answer) for it in loc_open)


def test_rule_truth_rejects_an_answer_the_attributes_disagree_with():
    a = make_attributes(7)
    n = true_count("teeth", facts_of(a))
    q = COUNT_TARGETS["teeth"][0]
    options = [str(n + 1), str(n), str(n - 1), "0"]
    wrong = ClosedItem(
        index="w",
        question=q,
        options=options,
        answer="A",
        category="Teeth",
        image_id=a.image_id,
        source="rule:count_teeth",
    )
    rule = RuleItem(
        task_type="count_closed",
        builder="count",
        question=q,
        answer=str(n + 1),
        options=options,
        answer_letter="A",
        dimensions=["Teeth"],
        fact={"kind": "count", "target": "teeth", "n": n + 1},
    )
    assert any(p.startswith("rule_truth") for p in validate_closed_item(wrong, a, rule))
    right = wrong.model_copy(update={"answer": "B"})
    good_rule = rule.model_copy(
        update={"answer": str(n), "answer_letter": "B", "fact": {"kind": "count", "target": "teeth", "n": n}}
    )
    assert validate_closed_item(right, a, good_rule) == []
    # the letter must point at the rule's answer
    assert any(
        p.startswith("rule_truth")
        for p in validate_closed_item(right, a, good_rule.model_copy(update={"answer_letter": "C"}))
    )


def test_failures_are_counted_per_validator():
    attrs = [make_attributes(s) for s in range(3)]
    scored_report = "1) Teeth: caries on tooth 36 (confidence 0.62).\n2) Jaw: no bone loss.\n3) Summary: restore."
    closed, open_, rejected = build_benchmark(attrs, reports={attrs[0].image_id: scored_report})
    assert len(closed) == 15 and len(open_) == 17
    [row] = rejected
    assert row["kind"] == "open" and row["image_id"] == attrs[0].image_id
    assert rejection_counts(rejected)["no_scores_or_identity"] == 1
    empty = OpenItem(index="e", question="Describe the jaw.", answer="", category="Jaw")
    from mmoral_pipeline.evaluation.build import validate_open_item

    assert rejection_counts([{"problems": validate_open_item(empty)}]) == {"open_answer": 1}


def test_assign_letters_exact_balance():
    letters = assign_letters([f"k{i}" for i in range(103)])
    c = Counter(letters)
    assert max(c.values()) - min(c.values()) <= 1


def test_generation_validators_reject_ungrounded_and_malformed_items():
    from mmoral_pipeline.evaluation.build import generation_verdicts_closed, generation_verdicts_open

    a = make_attributes(5)
    absent = 55  # a primary molar: valid FDI, never in these adult attributes
    bad = ClosedItem(
        index="x",
        question="Which tooth shows caries?",
        options=[f"#{absent}", "#11", "#12", "#13"],
        answer="A",
        category="Teeth",
        image_id=a.image_id,
        source="rule:caries_tooth",
    )
    assert any(p.startswith("grounded_teeth") for p in generation_verdicts_closed(bad, a))
    dup = bad.model_copy(update={"options": ["#11", "#11", "#12", "#13"]})
    assert any(p.startswith("mcq_form") for p in generation_verdicts_closed(dup, a))
    boxed = OpenItem(
        index="y",
        question="Where is the crown?",
        answer='[{"box_2d": [340, 590, 400, 650]}]',
        category="Teeth",
        kind="location",
    )
    assert generation_verdicts_open(boxed, a) == []  # coordinates are no tooth numbers
    assert any(
        p.startswith("open_answer") for p in generation_verdicts_open(boxed.model_copy(update={"answer": " "}), a)
    )


def _generated_for(a, seed: int = 0):
    """The offline writer's report-based closed VQA for one image, as vqa_items rows would carry them."""
    import random

    from mmoral_pipeline.evaluation.build import GeneratedClosed
    from mmoral_pipeline.generation.offline import vqa_candidates

    closed, _ = vqa_candidates(facts_of(a), random.Random(seed))
    return [GeneratedClosed(item_id=f"{a.image_id}-{i}", question=c["question"], options=c["options"],
                            answer_text=c["answer_text"], dimensions=c["dimensions"]) for i, c in enumerate(closed)]


def test_generated_vqa_feeds_up_to_three_closed_items_per_image_and_rules_the_rest():
    from mmoral_pipeline.evaluation.build import build_benchmark_items

    attrs = [make_attributes(s) for s in range(30)]
    generated = {a.image_id: _generated_for(a) for a in attrs}
    built = build_benchmark_items(attrs, generated=generated)
    closed = built.closed
    assert built.rejected == []
    assert Counter(it.image_id for it in closed) == {a.image_id: 5 for a in attrs}
    by_image: dict[str, list[ClosedItem]] = {}
    for it in closed:
        by_image.setdefault(it.image_id, []).append(it)
    for a in attrs:
        items = by_image[a.image_id]
        from_vqa = [it for it in items if it.source.startswith("vqa:")]
        assert all(it.source.startswith("rule:") for it in items if it not in from_vqa)
        for it in from_vqa:  # the generated question, options and right answer, only re-lettered
            g = next(g for g in generated[a.image_id] if f"vqa:{g.item_id}" == it.source)
            assert (
                it.question == g.question
                and sorted(it.options) == sorted(g.options)
                and it.answer_text == g.answer_text
            )
    sel = built.selection
    assert sel.by_slot["generated"] == sum(it.source.startswith("vqa:") for it in closed) > len(closed) / 5
    # every image away from 3 generated + 2 rules is counted with its reason
    off = sum(
        1
        for items in by_image.values()
        if Counter(
            "g" if it.source.startswith("vqa:") else "r" if it.source.startswith(("rule:loc_", "rule:count_")) else "b"
            for it in items
        )
        != {"g": 3, "r": 2}
    )
    assert sel.images_off_target == off and sum(sel.off_target_reasons.values()) == off
    letters = Counter(it.answer for it in closed)
    assert max(letters.values()) - min(letters.values()) <= 1
    # without generated items the benchmark is the rule builders' alone
    assert all(it.source.startswith("rule:") for it in build_benchmark(attrs)[0])


def test_a_generated_item_that_fails_the_validators_is_rejected_with_its_reason():
    from mmoral_pipeline.evaluation.build import GeneratedClosed

    a = make_attributes(5)
    # a detector confidence leaked into the question: the generation validators refuse it
    bad = GeneratedClosed(
        item_id="bad",
        question="Which tooth shows caries (confidence 0.93)?",
        options=["#11", "#12", "#13", "#14"],
        answer_text="#11",
        dimensions=["Teeth", "Patho"],
    )
    closed, _, rejected = build_benchmark([a], generated={a.image_id: [bad]})
    assert [r["index"] for r in rejected] and all(r["kind"] == "closed" for r in rejected)
    assert any(p.startswith("no_scores_or_identity") for r in rejected for p in r["problems"])
    assert not any(it.source == "vqa:bad" for it in closed)
