"""Label coverage: parsing `covers:`, what a statement needs, and the sentence that declares coverage."""

import pytest
from pydantic import ValidationError

from mmoral_pipeline.config import SourceSpec
from mmoral_pipeline.domain.coverage import (
    ALL_CATEGORIES,
    asks_only_assessed,
    coverage_sentence,
    is_coverage_statement,
    may_state,
    parse_coverage,
)
from mmoral_pipeline.domain.taxonomy import Category as C


def test_parse_coverage_names_synonyms_and_all():
    assert parse_coverage(["teeth", "Root canal", "decay"]) == {C.TOOTH, C.ROOT_CANAL_TREATMENT, C.CARIES}
    assert parse_coverage("all") == ALL_CATEGORIES
    with pytest.raises(ValueError, match=r"unknown category 'tooths'.*known"):
        parse_coverage(["tooths"])
    with pytest.raises(ValueError, match="empty"):
        parse_coverage([])
    with pytest.raises(ValidationError, match="unknown category"):  # a typo in the sources file stops the load
        SourceSpec(name="s", format="coco", root=".", covers=["carries"])


def test_what_statements_need():
    assert may_state("teeth", {C.TOOTH}) and not may_state("teeth", {C.CARIES})
    assert not may_state("wisdom_status", {C.TOOTH})  # "erupted" needs impaction labels too
    assert may_state("no_pathology", {C.CARIES, C.DEEP_CARIES, C.PERIAPICAL_LESION, C.IMPACTED_TOOTH, C.RETAINED_ROOT})
    assert not may_state("no_pathology", {C.CARIES})
    assert asks_only_assessed([], set()) and not asks_only_assessed([C.FILLING], {C.CROWN})


@pytest.mark.parametrize(
    ("covers", "sentence"),
    [
        (
            {C.CARIES},
            (
                "This review covers caries only; tooth numbering, other pathology, previous treatments and jaw "
                "anatomy were not assessed."
            ),
        ),
        (
            {C.TOOTH},
            (
                "This review covers the teeth (presence and FDI numbering) only; pathology, previous treatments "
                "and jaw anatomy were not assessed."
            ),
        ),
        (
            {C.TOOTH, C.FILLING, C.BRIDGE, C.IMPLANT},
            (
                "This review covers the teeth, fillings, implants and bridges only; "
                "pathology, other treatments (crowns and root canal treatments) and jaw anatomy were not assessed."
            ),
        ),
        (
            ALL_CATEGORIES - {C.BONE_LOSS},
            "This review assessed every finding category except bone loss, which was not assessed.",
        ),
        (ALL_CATEGORIES, None),
        # a folder of images no visual expert labelled
        (
            set(),
            "This review assessed nothing; tooth numbering, pathology, previous treatments and jaw anatomy were not "
            "assessed.",
        ),
    ],
)
def test_coverage_sentence(covers, sentence):
    assert coverage_sentence(covers) == sentence


def test_coverage_clauses_are_recognised_and_findings_are_not():
    sentence = coverage_sentence({C.CARIES})
    for clause in sentence.split(";"):  # validators split sentences into clauses at ';'
        assert is_coverage_statement(clause)
    assert is_coverage_statement("Jaw-level structures were not assessed in this review.")
    assert not is_coverage_statement("Caries is observed on tooth 36.")
    assert not is_coverage_statement("Tooth 36 should be assessed for endodontic therapy.")
