"""The claim extractor on the ways LLMs write: numbers, names, regions, negation, hedging, recommendations."""

import pytest

from mmoral_pipeline.domain.taxonomy import Category
from mmoral_pipeline.generation.claims import (
    categories_in,
    claims_from_json,
    extract,
    extract_claims,
    report_sections,
    teeth_in,
)


def said(text: str, context: str | None = None) -> set[str]:
    """'polarity category where' for every claim (generic terms as their alternatives joined by '/')."""
    out = set()
    for c in extract_claims(text, context):
        name = c.category.value if c.category else "/".join(sorted(x.value for x in c.categories))
        if c.lesion_type:
            name += f"({c.lesion_type})"
        where = str(c.tooth) if c.tooth is not None else (c.region.name if c.region else "-")
        out.add(
            f"{c.polarity} {name} {where}"
            + (f" n={c.count}" if c.count is not None else "")
            + (" others" if c.others else "")
        )
    return out


@pytest.mark.parametrize("text, expected", [
    ("Caries on tooth 36.", [36]),
    ("Deep caries at #36 and #37.", [36, 37]),
    ("Teeth 31-33 are intact.", [31, 32, 33]),
    ("The bridge spans 13-23.", [13, 12, 11, 21, 22, 23]),
    ("Fillings on 11, 12 and 21.", [11, 12, 21]),
    ("Teeth 24 to 26 carry a bridge.", [24, 25, 26]),
    ("The lower left first molar is carious.", [36]),
    ("The upper right wisdom tooth is impacted.", [18]),
    ("A crown on the upper left lateral incisor.", [22]),
    ("The mandibular left first molar has a crown.", [36]),
    ("Caries at the lower right first primary molar.", [84]),
    ("LL6 and UR8 are present.", [36, 18]),
    ("A total of 28 teeth are visible; 32 permanent teeth would be expected.", []),
    ("The lesion measures 12 mm; the patient is 45 years old.", []),
    ("Point [360, 412] lies inside tooth 46.", [46]),
    ("Tooth no. 36 shows caries.", [36]),
])
def test_tooth_numbers_names_ranges_and_lists(text, expected):
    assert teeth_in(text) == expected


@pytest.mark.parametrize(
    "text, context, must, must_not",
    [
        # negation scoped to its clause
        ("No caries on 47 but a lesion on 36.", None, {"absent caries 47"}, {"absent caries 36", "present caries 47"}),
        (
            "16 has a filling without secondary caries.",
            None,
            {"present filling 16", "absent caries 16"},
            {"absent filling 16"},
        ),
        (
            "No periapical lesions or caries are seen on 36 and 37.",
            None,
            {"absent periapical_lesion 36", "absent caries 37"},
            set(),
        ),
        ("Caries on 36 but not on 37.", None, {"present caries 36", "absent caries 37"}, set()),
        ("The mandibular canals are not clearly visualized.", None, {"absent mandibular_canal -"}, set()),
        (
            "Maxillary sinuses: both visible, no abnormality.",
            None,
            {"present maxillary_sinus -"},
            {"absent maxillary_sinus -"},
        ),
        (
            "Both maxillary sinuses are clear; only the right mandibular canal is seen.",
            None,
            {
                "present maxillary_sinus right",
                "present maxillary_sinus left",
                "present mandibular_canal right",
                "absent mandibular_canal left",
            },
            set(),
        ),
        # normal-state words are absent-claims
        ("16 is unrestored.", None, {"absent bridge/crown/filling 16"}, set()),
        ("Teeth 11 and 21 are intact.", None, {"absent caries 11", "absent filling 21", "absent crown 21"}, set()),
        ("Bone levels are within normal limits.", None, {"absent bone_loss -"}, set()),
        ("The remaining teeth are unremarkable.", None, {"absent caries teeth others"}, set()),
        ("There is no evidence of periapical pathology.", None, {"absent periapical_lesion -"}, set()),
        # hedging
        (
            "Tooth 26 is suspicious for caries; clinical re-evaluation is suggested.",
            None,
            {"suspected caries 26"},
            {"present caries 26"},
        ),
        ("A periapical lesion at 36 cannot be excluded.", None, {"suspected periapical_lesion 36"}, set()),
        (
            "Possible periapical lesion (granuloma) is seen on tooth 14.",
            None,
            {"suspected periapical_lesion(granuloma) 14"},
            {"present periapical_lesion(granuloma) 14"},
        ),
        (
            "A possible cyst at 36 despite previous endodontic treatment.",
            None,
            {"suspected periapical_lesion(cyst) 36", "present root_canal_treatment 36"},
            set(),
        ),
        ("There may be bone loss in the lower jaw.", None, {"suspected bone_loss lower jaw"}, set()),
        # recommendations are not findings
        ("Extraction of 18 is advised.", None, set(), {"present missing_tooth 18"}),
        ("A crown is recommended for 36.", None, {"recommended crown 36"}, {"present crown 36"}),
        (
            "Endodontic treatment of 22 and a filling for 47 are recommended.",
            None,
            {"recommended root_canal_treatment 22"},
            {"present filling 47", "present root_canal_treatment 22"},
        ),
        ("Extraction of the retained root at 15 is recommended.", None, {"present retained_root 15"}, set()),
        # treatments written as LLMs write them
        (
            "16 is status post root canal treatment with a PFM crown.",
            None,
            {"present root_canal_treatment 16", "present crown 16"},
            set(),
        ),
        (
            "Tooth 21 has been endodontically treated and crowned.",
            None,
            {"present root_canal_treatment 21", "present crown 21"},
            set(),
        ),
        ("The crown of 36 shows a carious lesion.", None, {"present caries 36"}, {"present crown 36"}),
        ("An implant-supported crown replaces 46.", None, {"present implant 46"}, {"present crown 46"}),
        # lesion types and synonyms
        ("There is a cyst below 46.", None, {"present periapical_lesion(cyst) 46"}, set()),
        (
            "Tooth #36 (lower left first molar): deep caries with an associated periapical granuloma.",
            None,
            {"present deep_caries 36", "present periapical_lesion(granuloma) 36"},
            set(),
        ),
        ("Decay is present in the lower left quadrant.", None, {"present caries lower left"}, set()),
        ("Generalized horizontal bone loss.", None, {"present bone_loss whole mouth"}, set()),
        (
            "Tooth 37 is missing and 48 is impacted.",
            None,
            {"present missing_tooth 37", "present impacted_tooth 48"},
            set(),
        ),
        ("Teeth 18, 28 and 38 are not visible.", None, {"absent tooth 18", "absent tooth 38"}, set()),
        # counts
        ("Three carious teeth are seen.", None, {"present caries - n=3"}, set()),
        ("A total of 28 teeth are visible.", None, {"present tooth - n=28"}, set()),
        # answers read with their question
        ("It has deep caries.", "What about the lower left second molar?", {"present deep_caries 37"}, set()),
        ("A dental implant.", "What is at 35?", {"present implant 35"}, set()),
        ("Restorative treatment.", "What is recommended for tooth 43?", {"recommended bridge/crown/filling 43"}, set()),
        # meta statements about coverage say nothing
        ("Fillings were not assessed on this image.", None, set(), {"absent filling -"}),
        # the summary's exception
        (
            "In summary, apart from the impaction of 48, no definite pathological findings are seen on the teeth.",
            None,
            {"present impacted_tooth 48"},
            set(),
        ),
    ],
)
def test_claims(text, context, must, must_not):
    got = said(text, context)
    assert must <= got, (text, got)
    assert not (must_not & got), (text, got)


def test_tooth_name_number_mismatch_is_reported():
    ext = extract("The upper left lateral incisor (23) is carious.")
    assert ext.mismatches and ext.mismatches[0][1] == (23,)
    assert not extract("The upper left lateral incisor (22) is carious.").mismatches
    assert not extract("The upper right canine and first molar (13, 16) are restored.").mismatches


def test_yes_no_particle():
    assert extract("No, 46 has a filling and no caries is seen.").particle == "no"
    assert extract("Yes, 47 shows caries.").particle == "yes"
    assert extract("Nothing abnormal.").particle is None


def test_questions_are_marked():
    claims = extract_claims("Is there caries on 36? Tooth 36 has a filling.")
    assert [c.question for c in claims] == [True, False]


def test_categories_in():
    assert categories_in("Deep caries on 36 and no bone loss; a crown is recommended.") >= {
        Category.DEEP_CARIES,
        Category.BONE_LOSS,
        Category.CROWN,
    }


def test_json_claims():
    claims = claims_from_json(
        {
            "teeth": [
                {
                    "tooth_id": 36,
                    "conditions": [{"category": "deep_caries"}, {"category": "periapical_lesion", "type": "granuloma"}],
                },
                {"tooth_id": 11},
            ],
            "missing_teeth": [{"teeth": [37]}],
            "bone_loss": [],
        }
    )
    got = {(c.polarity, c.category.value if c.category else None, c.tooth, c.lesion_type) for c in claims}
    assert ("present", "deep_caries", 36, None) in got and ("present", "periapical_lesion", 36, "granuloma") in got
    assert ("present", "tooth", 11, None) in got and ("present", "missing_tooth", 37, None) in got
    assert ("absent", "bone_loss", None, None) in got


REPORT = """### 1. Teeth-Specific Observations
**General Condition:** 28 teeth are visible.
**Pathological Findings:** Caries on 36.
**Historical Interventions:** Tooth 16 has a filling.

**2) Jaw-Specific Observations**
No bone loss.

3. Clinical Summary & Recommendations: Restore 36.
1. Tooth 36 needs a filling.
"""


def test_report_sections():
    secs = report_sections(REPORT)
    assert [s.number for s in secs] == [1, 2, 3]
    assert [s.kind for s in secs] == ["teeth", "jaw", "summary"]
    assert (
        secs[2].body.startswith("Restore 36.") and "Tooth 36 needs a filling" in secs[2].body
    )  # a numbered list line is no heading
    assert [p.kind for p in secs[0].parts] == ["general", "pathology", "treatments"]
    assert "Caries on 36" in secs[0].parts[1].body
    # headings are not claims
    assert "present tooth -" not in said(REPORT)
