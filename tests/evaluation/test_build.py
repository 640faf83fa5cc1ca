from __future__ import annotations

from collections import Counter

from mmoral_pipeline.dataset.split import is_holdout
from mmoral_pipeline.evaluation.build import (
    REPORT_PHRASINGS,
    assign_letters,
    build_benchmark,
    count_distractors,
    holdout_attributes,
    validate_closed_item,
)
from mmoral_pipeline.evaluation.extraction import extract_choice
from mmoral_pipeline.evaluation.items import CLOSED_DIMENSIONS, ClosedItem

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
    for it in closed:
        assert validate_closed_item(it) == []
        # the right answer's text is what extraction finds when a model answers with it
        assert extract_choice(it.answer_text, it.options).letter == it.answer or it.answer_text in ("None",)


def test_build_is_deterministic_and_order_independent():
    attrs = [make_attributes(s) for s in range(10)]
    a = build_benchmark(attrs)
    b = build_benchmark(list(reversed(attrs)))
    assert [x.model_dump() for x in a[0]] == [x.model_dump() for x in b[0]]
    assert [x.model_dump() for x in a[1]] == [x.model_dump() for x in b[1]]


def test_report_text_is_used_when_given():
    a = make_attributes(3)
    report = "1) Teeth: caries on tooth 36.\n2) Jaw: no bone loss.\n3) Summary: restore tooth 36."
    _, open_, _ = build_benchmark([a], reports={a.image_id: report})
    [write] = [it for it in open_ if it.kind == "write_report"]
    assert write.answer == report and write.source == "report"


def test_holdout_selection_uses_dataset_rule():
    attrs = [make_attributes(s) for s in range(60)]
    held = holdout_attributes(attrs, fraction=0.3)
    assert 0 < len(held) < len(attrs)
    assert [a.image_id for a in held] == [a.image_id for a in attrs if is_holdout(a.image_id, 0.3)]
    assert [a.image_id for a in holdout_attributes(attrs, explicit={"img007", "img011"})] == ["img007", "img011"]


def test_validator_rejects_bad_items():
    bad = ClosedItem(index="x", question="When is the next follow-up visit?", options=["1", "1", "2", "3"], answer="A", category="Teeth,Foo")
    problems = validate_closed_item(bad)
    assert any("distinct" in p for p in problems) and any("labels" in p for p in problems) and any("follow-up" in p for p in problems)


def test_count_distractors_follow_authors_rules():
    d = count_distractors(28, "k")
    assert len(set(d)) == 3 and "28" not in d
    assert set(d) <= {"29", "27", "30", "26", "0", "32", "14", "56"}
    assert count_distractors(0, "k") and "0" not in count_distractors(0, "k")


def test_assign_letters_exact_balance():
    letters = assign_letters([f"k{i}" for i in range(103)])
    c = Counter(letters)
    assert max(c.values()) - min(c.values()) <= 1


def test_generation_validators_reject_ungrounded_and_malformed_items():
    from mmoral_pipeline.evaluation.build import generation_verdicts_closed, generation_verdicts_open
    from mmoral_pipeline.evaluation.items import OpenItem

    a = make_attributes(5)
    absent = 55  # a primary molar: valid FDI, never in these adult attributes
    bad = ClosedItem(index="x", question="Which tooth shows caries?", options=[f"#{absent}", "#11", "#12", "#13"], answer="A",
                     category="Teeth", image_id=a.image_id, source="rule:caries_tooth")
    assert any(p.startswith("grounded_teeth") for p in generation_verdicts_closed(bad, a))
    dup = bad.model_copy(update={"options": ["#11", "#11", "#12", "#13"]})
    assert any(p.startswith("mcq_form") for p in generation_verdicts_closed(dup, a))
    boxed = OpenItem(index="y", question="Where is the crown?", answer='[{"box_2d": [340, 590, 400, 650]}]', category="Teeth", kind="location")
    assert generation_verdicts_open(boxed, a) == []  # coordinates are no tooth numbers
    assert any(p.startswith("open_answer") for p in generation_verdicts_open(boxed.model_copy(update={"answer": " "}), a))
