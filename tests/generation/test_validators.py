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
In summary, the main findings are caries on tooth 36 and a periapical lesion on tooth 46. Endodontic evaluation of tooth 46 is recommended."""  # noqa: E501 - a report is one paragraph per line


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
        (
            ("Caries is observed on tooth 36.", "Caries is observed on tooth 36. Tooth 22 shows caries."),
            "grounded_teeth",
        ),  # tooth not present
        (
            ("Tooth 48 is impacted.", "Tooth 48 is impacted. Tooth 35 has a retained root."),
            "grounding",
        ),  # condition not present
        (
            ("Caries is observed on tooth 36.", "Caries is observed on tooth 14."),
            "grounding",
        ),  # condition on the wrong tooth
        (
            ("Tooth 46 shows a periapical lesion (granuloma).", "Tooth 46 shows a periapical abscess."),
            "grounding",
        ),  # wrong lesion type
        (
            (
                "Endodontic evaluation of tooth 46 is recommended.",
                "Endodontic evaluation of tooth 46 is recommended. An implant is seen at 45.",
            ),
            "grounding",
        ),  # the summary is checked too
        (
            (
                "Historical Interventions: Tooth 16 has a filling and root canal treatment.",
                "Historical Interventions: 16 is unrestored.",
            ),
            "contradiction",
        ),
        (
            ("In summary,", "No caries on 47 but a periapical lesion on 36. In summary,"),
            "grounding",
        ),  # negation stays in its clause
        (
            ("Both mandibular canals are visualized.", "Both mandibular canals are visualized. No bone loss is seen."),
            "contradiction",
        ),
        (
            ("Tooth 26 is suspicious for caries; clinical re-evaluation is suggested.", "Tooth 26 shows caries."),
            "hedging",
        ),
        (("Caries is observed on tooth 36.", "Possible caries is seen on tooth 36."), "hedging"),
        (("Possible bone loss is suspected in the lower jaw.", "Bone loss is observed in the lower jaw."), "hedging"),
        (
            ("Tooth 48 is impacted.", "The lower right third molar (47) is impacted."),
            "grounded_teeth",
        ),  # name and number disagree
        (("2. Jaw-Specific Observations\n", ""), "report_sections"),
        (
            ("Tooth 48 is impacted.", "Tooth 48 is impacted. Tooth 16 has a filling."),
            "report_placement",
        ),  # treatment under pathology
        (
            ("Tooth 48 is impacted.", "Tooth 48 is impacted. Bone loss is seen in the lower jaw around tooth 46."),
            "report_placement",
        ),
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


def test_true_negations_and_recommendations_pass(hand_facts):
    text = GOOD.replace(
        "Historical Interventions: Tooth 16 has a filling and root canal treatment.",
        "Historical Interventions: Tooth 16 has a filling and root canal treatment. No implants or crowns are present.",
    )
    text = text.replace(
        "Endodontic evaluation of tooth 46 is recommended.",
        "Endodontic evaluation of tooth 46 is recommended; a crown for 36 and extraction of 48 should be considered.",
    )
    assert all(v.passed for v in V.validate_report(text, hand_facts)), [
        v for v in V.validate_report(text, hand_facts) if not v.passed
    ]


def test_coverage_rejects_claims_about_what_was_not_assessed(hand_attributes):
    from mmoral_pipeline.domain.taxonomy import Category
    from mmoral_pipeline.generation.facts import facts_of

    limited = facts_of(
        hand_attributes.model_copy(update={"assessed": [Category.TOOTH, Category.CARIES, Category.DEEP_CARIES]})
    )
    assert [
        v.validator for v in V.validate_open("Is 36 carious?", "Yes, 36 shows caries.", limited) if not v.passed
    ] == []
    for answer in ("No, there is no bone loss.", "Tooth 16 has a filling.", "The other teeth are unrestored."):
        failed = [v.validator for v in V.validate_open("Describe the X-ray.", answer, limited) if not v.passed]
        assert "coverage" in failed, answer


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
    assert V.grounded_teeth("Teeth 18, 28 and 38 are not visible.", hand_facts).passed  # said to be absent: fine
    assert not V.grounded_teeth("Tooth 22 has caries.", hand_facts).passed
    assert not V.grounded_teeth("Tooth 19 has caries.", hand_facts).passed  # not an FDI number


@pytest.mark.parametrize(
    "question, options, letter, failing",
    [
        ("Which tooth shows caries?", ["#36", "#35", "#45", "#41"], "A", None),
        ("Which tooth shows caries?", ["#35", "#36", "#45", "#41"], "A", "option_truth"),  # keyed answer false
        (
            "Which tooth shows caries?",
            ["#36", "#26", "#45", "#41"],
            "A",
            "option_truth",
        ),  # 26 (suspected caries) is true too
        ("Which historical treatment is present on tooth 16?", ["Implant", "Bridge", "Crown", "Filling"], "D", None),
        (
            "What type of periapical lesion is seen on tooth 46?",
            ["Granuloma", "Cyst", "Abscess", "None of the above"],
            "A",
            None,
        ),
        (
            "What type of periapical lesion is seen on tooth 46?",
            ["Granuloma", "Cyst", "Abscess", "None of the above"],
            "C",
            "option_truth",
        ),
        ("Where is bone loss observed?", ["Upper jaw", "Lower jaw", "Both jaws", "No bone loss is seen"], "B", None),
        (
            "Where is bone loss observed?",
            ["Upper jaw", "Lower jaw", "Both jaws", "No bone loss is seen"],
            "C",
            "option_truth",
        ),
        ("How many teeth are visible?", ["13", "14", "15", "16"], "C", None),
        ("How many teeth are visible?", ["13", "14", "15", "16"], "B", "option_truth"),
        ("Which tooth has a crown?", ["#22", "#16", "#17", "#15"], "A", "grounded_teeth"),
    ],
)
def test_closed_items_exactly_one_true_option(hand_facts, question, options, letter, failing):
    failed = [v.validator for v in V.validate_closed(question, options, letter, hand_facts) if not v.passed]
    assert failed[:1] == ([failing] if failing else []), failed


@pytest.mark.parametrize("question, answer, failing", [
    ("What is seen on tooth 36?", "Tooth 36 (lower left first molar) is carious.", None),
    ("Which tooth is missing?", "Tooth 37.", None),
    ("Which tooth is missing?", "Tooth 36.", "grounding"),  # an elliptical answer takes the question's finding
    ("Is 46 carious?", "No, 46 has a periapical granuloma but no caries.", None),
    ("Is 36 carious?", "No.", "contradiction"),
    ("Describe the upper left incisors.", "Deep caries is visible on 21.", "grounding"),
    ("Is 16 restored?", "No, 16 is unrestored.", "contradiction"),
    ("What is seen on tooth 11?", "Tooth 11 has a root canal treatment and a crown.", "grounding"),
])
def test_open_answers(hand_facts, question, answer, failing):
    failed = [v.validator for v in V.validate_open(question, answer, hand_facts) if not v.passed]
    assert failed[:1] == ([failing] if failing else []), failed


def test_dialogue_turns_are_checked(hand_facts):
    turns = [{"role": "patient" if i % 2 == 0 else "radiologist", "content": c} for i, c in enumerate([
        "Hello, what does my X-ray show?", "Tooth 36 has a cavity and 46 has an infection at the root tip.",
        "Do I have gum disease?", "There may be some bone loss in the lower jaw.",
        "Any fillings?", "Yes, 16 has a filling and a root canal treatment.",
        "Thanks.", "You're welcome."])]
    assert [v.validator for v in V.validate_dialogue(turns, hand_facts) if not v.passed] == []
    bad = [dict(t) for t in turns]
    bad[3]["content"] = "There is a cyst below 45."
    failed = {v.validator: v.reason for v in V.validate_dialogue(bad, hand_facts) if not v.passed}
    assert "grounding" in failed and "turn 3" in failed["grounding"]


def test_attribute_answers(hand_facts):
    good = (
        '{"teeth":[{"tooth_id":36,"conditions":[{"category":"caries"}]},'
        '{"tooth_id":16,"conditions":["filling","root canal treatment"]}],"missing_teeth":[37]}'
    )
    assert [v.validator for v in V.validate_attribute(good, hand_facts) if not v.passed] == []
    for bad, failing in (('{"teeth":[{"tooth_id":36,"conditions":[{"category":"crown"}]}]}', "grounding"),
                         ('{"teeth":[{"tooth_id":22}]}', "grounded_teeth"),
                         ('{"bone_loss":[]}', "contradiction"),
                         ('{"teeth":[{"tooth_id":36,"box_2d":[0,0,10,10]}]}', "grounding"),
                         ('{"teeth": [', "attribute_json")):
        assert failing in [v.validator for v in V.validate_attribute(bad, hand_facts) if not v.passed], bad


def test_external_items(hand_facts):
    assert all(
        v.passed
        for v in V.validate_item(
            {
                "image_id": "hand1",
                "task_type": "vqa_open",
                "question": "Which tooth is missing?",
                "answer": "37",
                "ignored": 1,
            },
            hand_facts,
        )
    )
    failed = V.validate_item({"image_id": "hand1", "task_type": "poem", "question": "?"}, hand_facts)
    assert failed[0].validator == "task_type" and not failed[0].passed


def test_no_scores_or_identity():
    assert V.no_scores_or_identity('[{"box_2d": [120, 340, 260, 610], "label": "tooth 36"}]').passed
    for bad in ("confidence 93", "85% likely", "Mr. Smith", "DOB 1980", "probability of caries"):
        assert not V.no_scores_or_identity(bad).passed, bad
