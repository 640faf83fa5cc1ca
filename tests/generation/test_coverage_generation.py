"""Issue 13 item 2 without real data: rule VQA, attribute tasks, captions, the offline writer and the
benchmark ask and say nothing about a category outside the image's label coverage."""

import json
import random

import pytest

from mmoral_pipeline.attributes.caption import render_caption
from mmoral_pipeline.domain.taxonomy import Category as C
from mmoral_pipeline.evaluation.build import build_benchmark
from mmoral_pipeline.generation.backends import CachedBackend
from mmoral_pipeline.generation.facts import facts_of
from mmoral_pipeline.generation.location_vqa import RuleItem, build_rule_items, verify_rule_item
from mmoral_pipeline.generation.offline import OfflineBackend, write_report
from mmoral_pipeline.generation.pipeline import GenerationSettings, ImageInput, attribute_answer, generate

TEETH_ONLY = [C.TOOTH]
TEETH_AND_CARIES = [C.TOOTH, C.CARIES, C.DEEP_CARIES]


def partial(attrs, assessed):
    """The hand-built case as a source labelling only `assessed` would have delivered it."""
    keep = set(assessed)
    teeth = [
        t.model_copy(
            update={
                "conditions": [c for c in t.conditions if c.category in keep],
                "wisdom_status": t.wisdom_status if C.IMPACTED_TOOTH in keep else None,
            }
        )
        for t in attrs.teeth
    ]
    return attrs.model_copy(update={"teeth": teeth, "assessed": list(assessed), "missing_teeth": [],
                                    "jaw": attrs.jaw.model_copy(update={"bone_loss": [], "mandibular_canal": []})})


def test_counts_only_of_what_was_assessed(hand_attributes):
    facts = facts_of(partial(hand_attributes, TEETH_ONLY))
    items = build_rule_items(facts, random.Random(1), 20, 20, 20)
    targets = {i.fact["target"] for i in items if i.task_type == "count_closed"}
    assert targets == {"teeth", "wisdom"}  # no "0 caries", "0 missing", "0 canals"
    fake = RuleItem(
        task_type="count_closed",
        builder="count",
        question="How many teeth show caries?",
        answer="0",
        options=["0", "1", "2", "3"],
        answer_letter="A",
        dimensions=["Teeth"],
        fact={"kind": "count", "target": "caries", "n": 0},
    )
    verdict = verify_rule_item(fake, facts)
    assert not verdict.passed and "not assessed" in verdict.reason
    full_targets = {i.fact["target"] for i in build_rule_items(facts_of(hand_attributes), random.Random(1), 0, 0, 20)}
    assert {"caries", "missing", "mandibular_canal"} <= full_targets  # with everything assessed they are asked


def test_finding_questions_offer_no_unassessed_distractor(hand_attributes):
    facts = facts_of(partial(hand_attributes, TEETH_AND_CARIES))
    for item in build_rule_items(facts, random.Random(3), 30, 30, 0):
        if item.builder == "finding_in_box":
            pytest.fail(f"only caries assessed: no four distinct assessed options exist, got {item.options}")
        assert item.fact.get("category") in (None, "caries", "deep_caries"), item.fact


def test_attribute_answers_leave_out_unassessed_keys(hand_attributes):
    attrs = partial(hand_attributes, TEETH_ONLY)
    facts = facts_of(attrs)
    full = attribute_answer(facts, attrs, "full")
    assert set(full) == {"teeth"}  # no empty "jaw", "missing_teeth", "unknown_tooth_findings" claiming none
    assert all("conditions" not in t and "wisdom_status" not in t for t in full["teeth"])
    out = generate(
        [ImageInput("h", "b", attrs.content_hash(), attrs, render_caption(attrs))],
        CachedBackend(OfflineBackend(), None),
        GenerationSettings(),
    )
    by_scope = {json.loads(r.extra)["scope"]: r.question for r in out.attribute_tasks}
    assert set(by_scope) == {"full", "teeth", "quadrant"}  # no findings / treatments / jaw task
    assert "jaw-level" not in by_scope["full"] and "the teeth with their bounding boxes" in by_scope["full"]


def test_caption_and_report_of_a_teeth_only_image(hand_attributes):
    attrs = partial(hand_attributes, TEETH_ONLY)
    caption = render_caption(attrs)
    assert "Label coverage: assessed on this image: the teeth." in caption
    titles = [line for line in caption.splitlines() if "(total:" in line]
    assert titles == ["Teeth visibility with center points (total: 15):", "Wisdom teeth detection (total: 1):",
                      "Rule-based recommendations (total: 0):"]
    assert "'is_impacted'" not in caption  # an unassessed impaction would make "false" read as erupted
    report = write_report(facts_of(attrs), random.Random(0))
    assert "This review covers the teeth (presence and FDI numbering) only" in report
    assert "Pathological Findings: Not assessed in this review." in report
    for claim in ("No caries", "No historical treatments", "bone loss", "mandibular canals are", "sinuses are"):
        assert claim not in report


def test_benchmark_items_only_about_assessed_categories(hand_attributes):
    attrs = partial(hand_attributes, TEETH_ONLY)
    closed, open_, _ = build_benchmark([attrs])
    texts = [" ".join([c.question, *c.options]) for c in closed] + [o.question + " " + o.answer for o in open_]
    assert texts, "a teeth-only image still gets questions about its teeth"
    for text in texts:
        for word in (
            "caries",
            "periapical",
            "bone",
            "filling",
            "crown",
            "canal",
            "sinus",
            "missing",
            "impacted",
            "erupted",
        ):
            assert word not in text.lower(), (word, text)
    full_closed, full_open, _ = build_benchmark([hand_attributes])
    assert len(full_closed) + len(full_open) > len(closed) + len(open_)
