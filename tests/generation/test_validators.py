import random

import pytest

from mmoral_pipeline.generation import validators as V
from mmoral_pipeline.generation.offline import write_report

GOOD = """1. Teeth-Specific Observations
General Condition: A total of 15 teeth are visible. The wisdom tooth 48 is present. Missing teeth are noted in the region of 37.
Pathological Findings: Caries is observed on tooth 36. Tooth 46 shows a periapical lesion (granuloma). Tooth 48 is impacted. Tooth 26 is suspicious for caries; clinical re-evaluation is suggested.
Historical Interventions: Tooth 16 has a filling and root canal treatment.

2. Jaw-Specific Observations
Possible bone loss is suspected in the lower jaw. Both mandibular canals are visualized. The maxillary sinuses are not clearly delineated.

3. Clinical Summary & Recommendations
In summary, the main findings are caries on tooth 36 and a periapical lesion on tooth 46. Endodontic evaluation of tooth 46 is recommended."""


def test_good_report_passes_every_validator(hand_facts):
    verdicts = V.validate_report(GOOD, hand_facts)
    assert all(v.passed for v in verdicts), [v for v in verdicts if not v.passed]


def test_offline_reports_pass_on_the_hand_case(hand_facts):
    for seed in range(10):
        text = write_report(hand_facts, random.Random(seed))
        assert all(v.passed for v in V.validate_report(text, hand_facts)), text


@pytest.mark.parametrize(
    "edit, validator",
    [
        (("Caries is observed on tooth 36.", "Caries is observed on tooth 36. Tooth 22 shows caries."), "report_grounding"),  # tooth not present
        (("Tooth 48 is impacted.", "Tooth 48 is impacted. Tooth 35 has a retained root."), "report_grounding"),  # condition not present
        (("Caries is observed on tooth 36.", "Caries is observed on tooth 14."), "report_grounding"),  # condition on the wrong tooth
        (("Tooth 26 is suspicious for caries; clinical re-evaluation is suggested.", "Tooth 26 shows caries."), "report_hedging"),
        (("Caries is observed on tooth 36.", "Possible caries is seen on tooth 36."), "report_hedging"),
        (("Possible bone loss is suspected in the lower jaw.", "Bone loss is observed in the lower jaw."), "report_hedging"),
        (("2. Jaw-Specific Observations\n", ""), "report_sections"),
        (("Tooth 48 is impacted.", "Tooth 48 is impacted. Tooth 16 has a filling."), "report_placement"),  # treatment under pathology
        (("Tooth 48 is impacted.", "Tooth 48 is impacted. Bone loss is seen in the lower jaw around tooth 46."), "report_placement"),
        (("A total of 15 teeth", "Patient name: Jane Doe. A total of 15 teeth"), "no_scores_or_identity"),
        (("Caries is observed on tooth 36.", "Caries is observed on tooth 36 (score 0.92)."), "no_scores_or_identity"),
    ],
)
def test_each_report_rule_catches_its_violation(hand_facts, edit, validator):
    old, new = edit
    assert old in GOOD
    bad = GOOD.replace(old, new)
    failed = {v.validator: v.reason for v in V.validate_report(bad, hand_facts) if not v.passed}
    assert validator in failed, (validator, failed)


def test_negated_mentions_are_not_hallucinations(hand_facts):
    text = GOOD.replace("Historical Interventions: Tooth 16 has a filling and root canal treatment.",
                        "Historical Interventions: Tooth 16 has a filling and root canal treatment. No implants or crowns are present.")
    assert V.report_grounding(text, hand_facts).passed


def test_counts_are_not_tooth_numbers():
    assert V.mentioned_teeth("A total of 28 teeth are visible; 32 permanent teeth; tooth 36 and #11") == [36, 11]


def test_mcq_form():
    assert V.mcq_form(["#36", "#37", "#35", "#46"], "A", "#36").passed
    assert not V.mcq_form(["#36", "#37", "#35"], "A").passed  # three options
    assert not V.mcq_form(["#36", "#36 ", "#35", "#46"], "A").passed  # not distinct
    assert not V.mcq_form(["#36", "#37", "#35", "#46"], "E").passed  # bad letter
    assert not V.mcq_form(["#36", "#37", "#35", "#46"], "B", "#36").passed  # letter does not match answer text
    assert not V.mcq_form(["#36", "#37", "#35", "#46"], "A", "#18").passed  # answer not among options


def test_open_answer_and_question():
    assert V.open_answer("Tooth 36 shows caries.").passed
    assert not V.open_answer("   ").passed
    assert not V.open_answer("x" * 700).passed
    assert not V.question_text("According to the caption, which tooth has caries?").passed


def test_dialogue_form():
    turns = [{"role": "patient" if i % 2 == 0 else "radiologist", "content": f"turn {i}"} for i in range(10)]
    assert V.dialogue_form(turns).passed
    assert not V.dialogue_form(turns[:6]).passed  # too short
    assert not V.dialogue_form(turns + turns[:4]).passed  # 14 turns
    swapped = [dict(t) for t in turns]
    swapped[3]["role"] = "patient"
    assert not V.dialogue_form(swapped).passed
    starts_wrong = [{"role": "radiologist" if i % 2 == 0 else "patient", "content": "x"} for i in range(8)]
    assert not V.dialogue_form(starts_wrong).passed


def test_grounded_teeth(hand_facts):
    assert V.grounded_teeth("Tooth 36 has caries and 37 is missing.", hand_facts).passed
    assert not V.grounded_teeth("Tooth 22 has caries.", hand_facts).passed


def test_no_scores_or_identity():
    assert V.no_scores_or_identity('[{"box_2d": [120, 340, 260, 610], "label": "tooth 36"}]').passed
    for bad in ("confidence 93", "85% likely", "Mr. Smith", "DOB 1980", "probability of caries"):
        assert not V.no_scores_or_identity(bad).passed, bad
