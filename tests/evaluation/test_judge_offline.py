"""The offline judge on the paper's 0.0-1.0 grid, with cases mirroring the paper's worked examples."""

from __future__ import annotations

import pytest

from mmoral_pipeline.evaluation.judge import GRID, OfflineJudge, extract_facts, offline_score

BOX_GT = '[{"box_2d": [100, 100, 200, 200], "label": "crown"}]'


@pytest.mark.parametrize(
    ("question", "gt", "pred", "expected"),
    [
        # exact tooth count = 1.0; off by one = 0.0
        ("How many teeth are visible?", "There are 28 teeth visible.", "28 teeth are visible.", 1.0),
        ("How many teeth are visible?", "There are 28 teeth visible.", "I count 27 teeth.", 0.0),
        ("How many teeth show periapical lesions?", "Two teeth show periapical lesions.", "2", 1.0),
        # a wrong tooth number = 0.5
        ("Which tooth has caries?", "Caries is seen on tooth 36.", "Caries is seen on tooth 37.", 0.5),
        ("Which tooth has caries?", "Caries is seen on tooth 36.", "Tooth 36 shows caries.", 1.0),
        # one wrong wisdom-tooth status = 0.7
        ("Describe the wisdom teeth.", "Teeth 18 and 28 are impacted. Teeth 38 and 48 are erupted.",
         "Teeth 18 and 28 are impacted. Tooth 38 is erupted and tooth 48 is impacted.", 0.7),
        # a missing bone-loss clause = 0.5
        ("Describe the jaw.", "Mild bone loss is seen in the lower jaw. The mandibular canals are visible bilaterally.",
         "The mandibular canals are visible bilaterally.", 0.5),
        # correct structure with a slightly shifted box = 0.8-0.9
        ("Where is the crown on tooth 31?", BOX_GT, '[{"box_2d": [104, 103, 204, 203], "label": "crown"}]', 0.9),
        ("Where is the crown on tooth 31?", BOX_GT, '[{"box_2d": [110, 108, 210, 208], "label": "crown"}]', 0.8),
        ("Where is the crown on tooth 31?", BOX_GT, BOX_GT, 1.0),
        ("Which tooth is at point [1200, 640]?", "Tooth 36", "It is tooth 36.", 1.0),
        ("Which tooth is at point [1200, 640]?", "Tooth 36", "Tooth 46", 0.5),
        # hallucination and negation
        ("Any caries?", "No caries are detected.", "Caries on tooth 36.", 0.3),
        ("Any treatments?", "No historical treatments are present.", "", 0.0),
    ],
)
def test_worked_examples(question, gt, pred, expected):
    score, why = offline_score(question, gt, pred)
    assert score == expected, why


def test_scores_always_on_grid():
    preds = ["", "Caries on 36 and 37; periapical lesion at 46", "No findings", "[1,2,3,4]", "tooth 18 impacted", "lorem ipsum"]
    gts = ["Caries on tooth 36.", "Periapical lesion (granuloma) on tooth 46. Filling on tooth 16.", "No bone loss.",
           BOX_GT, "Wisdom teeth 18 and 28 impacted.", "The teeth look fine overall."]
    for g in gts:
        for p in preds:
            s, _ = offline_score("Describe", g, p)
            assert s in GRID


def test_clause_association_keeps_pairs_apart():
    facts = extract_facts("Caries on tooth 36, filling on tooth 46 and a crown on 11.")
    assert facts.pairs == [(11, "crown"), (36, "caries"), (46, "filling")]
    assert extract_facts("Teeth 18, 28 and 38 are impacted.").pairs == [(18, "impacted_tooth"), (28, "impacted_tooth"), (38, "impacted_tooth")]


def test_offline_judge_is_deterministic():
    j = OfflineJudge()
    qs, gts = ["Which tooth has caries?"] * 3, ["Caries on tooth 36.", "Caries on 11.", "No caries."]
    preds = ["tooth 37 caries", "Caries on 11", "caries on 12"]
    assert j.score(qs, gts, preds) == OfflineJudge().score(qs, gts, preds)


def test_long_reports_are_scored_in_proportion():
    from mmoral_pipeline.evaluation.build import attribute_report

    from .factories import make_attributes

    a, b = make_attributes(1), make_attributes(2)
    report = attribute_report(a)
    n = len(extract_facts(report).pairs)
    assert n > 8
    assert offline_score("Write the report.", report, report)[0] == 1.0
    # drop one sentence that carries a finding: a small deduction, not half the score
    sentences = report.split(". ")
    idx = next(i for i, x in enumerate(sentences) if extract_facts(x).pairs and i > 0)
    one_missing = ". ".join(sentences[:idx] + sentences[idx + 1:])
    s_one, _ = offline_score("Write the report.", report, one_missing)
    assert 0.6 <= s_one < 1.0
    s_other, _ = offline_score("Write the report.", report, attribute_report(b))  # another patient's report
    assert s_other < s_one
