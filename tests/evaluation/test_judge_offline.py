"""The offline judge gives nothing for nothing: claims matched (generation.claims) earn credit, nothing else does."""

from __future__ import annotations

import pytest

from mmoral_pipeline.evaluation.judge import GRID, OfflineJudge, extract_facts, offline_score

BOX_GT = '[{"box_2d": [100, 100, 200, 200], "label": "crown"}]'
PATHO = "What pathological findings are present in the teeth?"
KEY = "Caries on tooth 21 and 23. Suspicious for periapical lesion (granuloma) on tooth 46."


@pytest.mark.parametrize(
    ("question", "gt", "pred", "expected"),
    [
        # the paper's worked examples where its rubric and claim matching agree
        ("How many teeth are visible?", "There are 28 teeth visible.", "28 teeth are visible.", 1.0),
        ("How many teeth are visible?", "There are 28 teeth visible.", "I count 27 teeth.", 0.0),  # off by one
        ("How many teeth show periapical lesions?", "Two teeth show periapical lesions.", "2", 1.0),
        ("Which tooth has caries?", "Caries is seen on tooth 36.", "Caries is seen on tooth 37.", 0.5),  # wrong tooth
        ("Which tooth has caries?", "Caries is seen on tooth 36.", "Tooth 36 shows caries.", 1.0),
        ("Where is the crown on tooth 31?", BOX_GT, '[{"box_2d": [104, 103, 204, 203], "label": "crown"}]', 0.9),
        ("Where is the crown on tooth 31?", BOX_GT, '[{"box_2d": [110, 108, 210, 208], "label": "crown"}]', 0.8),
        ("Where is the crown on tooth 31?", BOX_GT, BOX_GT, 1.0),
        ("Where is the crown on tooth 31?", BOX_GT, '[{"box_2d": [100, 100, 200, 200], "label": "filling"}]', 0.5),
        ("Which tooth is at point [1200, 640]?", "Tooth 36", "It is tooth 36.", 1.0),
        ("Which tooth is at point [1200, 640]?", "Tooth 36", "Tooth 46", 0.5),
        # a missing clause earns nothing: bone loss is 1 of 3 facts (the canals are visible on both sides)
        ("Describe the jaw.", "Mild bone loss is seen in the lower jaw. The mandibular canals are visible bilaterally.",
         "The mandibular canals are visible bilaterally.", 0.7),
    ],
)
def test_worked_examples(question, gt, pred, expected):
    score, why = offline_score(question, gt, pred)
    assert score == expected, why


@pytest.mark.parametrize(
    "pred", ["", "   ", "I don't know.", "xyz", "The image quality is fine.", "Please consult your dentist."]
)
def test_non_answers_score_zero(pred):
    score, why = offline_score(PATHO, KEY, pred)
    assert score == 0.0 and ("no facts" in why or "empty" in why)


@pytest.mark.parametrize(
    ("gt", "pred"),
    [
        ("No caries are detected.", "Caries on tooth 36."),  # states what the key denies
        (KEY, "Tooth 21 has no caries. Tooth 23 has caries."),  # denies what the key states, on that tooth
        (KEY, "There are no carious teeth. Periapical lesion on 46."),  # denies it image-wide
        (
            "Teeth 18 and 28 are impacted. Teeth 38 and 48 are erupted.",  # one wrong wisdom-tooth status
            "Teeth 18 and 28 are impacted. Tooth 38 is erupted and tooth 48 is impacted.",
        ),
        (
            "29 teeth are visible. Wisdom tooth 18 is impacted.",
            "30 teeth are visible. Wisdom tooth 18 is impacted.",
        ),  # count
    ],
)
def test_an_answer_that_contradicts_the_key_scores_zero(gt, pred):
    score, why = offline_score("Describe the teeth.", gt, pred)
    assert score == 0.0 and why.startswith("contradicts the key"), why


@pytest.mark.parametrize(
    "pred",
    [
        "Tooth 21 and tooth 23 show caries; tooth 46 is suspicious for a periapical granuloma.",
        "Carious lesions are seen on 21 and 23, and a possible periapical lesion (granuloma) at 46.",
        # tooth names instead of numbers
        ("The upper left central incisor and the upper left canine are carious; the lower right first molar is "
        "suspicious for a periapical lesion (granuloma)."),
    ],
)
def test_paraphrases_and_tooth_names_score_as_the_key(pred):
    score, why = offline_score(PATHO, KEY, pred)
    assert score == 1.0, why


def test_credit_comes_from_facts_matched():
    third, _ = offline_score(PATHO, KEY, "Caries on tooth 21.")  # 1 of the key's 3 facts
    assert third == pytest.approx(0.3)
    untyped, why = offline_score(PATHO, KEY, "Caries on tooth 21 and 23. Periapical lesion on tooth 46.")
    assert untyped == pytest.approx(0.7), why  # the lesion without its type (granuloma) is not the key's fact
    padded, why = offline_score(
        PATHO, KEY, "Caries on teeth 21, 23, 24, 25, 26, 27, 31, 32. Periapical lesion (granuloma) on 46."
    )
    assert padded == pytest.approx(0.3) and "9 in the answer" in why  # facts the key does not have lower the score
    assert offline_score(PATHO, KEY, KEY)[0] == 1.0


def test_scores_always_on_grid():
    preds = [
        "",
        "Caries on 36 and 37; periapical lesion at 46",
        "No findings",
        "[1,2,3,4]",
        "tooth 18 impacted",
        "lorem ipsum",
    ]
    gts = ["Caries on tooth 36.", "Periapical lesion (granuloma) on tooth 46. Filling on tooth 16.", "No bone loss.",
           BOX_GT, "Wisdom teeth 18 and 28 impacted.", "The teeth look fine overall."]
    for g in gts:
        for p in preds:
            s, _ = offline_score("Describe", g, p)
            assert s in GRID


def test_facts_come_from_the_claim_extractor():
    facts = extract_facts("Caries on tooth 36, filling on tooth 46 and a crown on 11.")
    assert sorted((c.tooth, c.category.value, c.polarity) for c in facts.claims) == [
        (11, "crown", "present"), (36, "caries", "present"), (46, "filling", "present")]
    located = extract_facts(
        '[{"box_2d": [1, 2, 3, 4], "label": "caries on tooth 36"}, {"point_2d": [5, 6], "label": "36"}]'
    )
    assert [x.kind for x in located.located] == ["box", "point"] and located.claims == []


def test_rescoring_gives_identical_numbers():
    j = OfflineJudge()
    qs, gts = ["Which tooth has caries?"] * 3, ["Caries on tooth 36.", "Caries on 11.", "No caries."]
    preds = ["tooth 37 caries", "Caries on 11", "caries on 12"]
    first = j.score(qs, gts, preds)
    assert first == OfflineJudge().score(qs, gts, preds) == j.score(qs, gts, preds, repeat=0)
    assert [s.score for s in first] == [0.5, 1.0, 0.0]


def test_long_reports_are_scored_in_proportion():
    from mmoral_pipeline.evaluation.build import attribute_report

    from .factories import make_attributes

    a, b = make_attributes(1), make_attributes(2)
    report = attribute_report(a)
    n = extract_facts(report).size
    assert n > 8
    assert offline_score("Write the report.", report, report)[0] == 1.0
    # drop one sentence that carries a finding: a small loss, not half the score
    sentences = report.split(". ")
    idx = next(i for i, x in enumerate(sentences) if extract_facts(x).claims and i > 0)
    one_missing = ". ".join(sentences[:idx] + sentences[idx + 1:])
    s_one, _ = offline_score("Write the report.", report, one_missing)
    assert 0.6 <= s_one < 1.0
    s_other, _ = offline_score("Write the report.", report, attribute_report(b))  # another patient's report
    assert s_other < s_one
