from __future__ import annotations

import pytest

from mmoral_pipeline.evaluation.extraction import extract_choice
from mmoral_pipeline.evaluation.items import ClosedItem
from mmoral_pipeline.evaluation.scoring import score_closed, summarise

OPTS = ["#15", "#24", "#27", "#42"]


@pytest.mark.parametrize(
    ("output", "letter", "method"),
    [
        ("(B)", "B", "paren"),
        ("The answer is (D).", "D", "paren"),
        ("B.", "B", "letter"),
        ("C", "C", "letter"),
        ("The answer is C", "C", "letter"),
        ("Answer: d", "D", "letter"),
        ("B) #24", "B", "letter"),
        ("#27", "C", "option_text"),
        ("I believe tooth #42 shows caries.", "D", "option_text"),
        ("A filling on tooth #24", "B", "option_text"),  # the article "A" is no option letter
        ("garbage words", None, "failed"),
        ("", None, "failed"),
        ("I think (A) or (C)", None, "failed"),  # ambiguous: never a guess
    ],
)
def test_extraction_order(output, letter, method):
    ex = extract_choice(output, OPTS)
    assert (ex.letter, ex.method) == (letter, method)


def test_paren_wins_over_option_text():
    # "(A)" comes before option text in the authors' order, even when the text names another option.
    assert extract_choice("(A) although #27 was considered", OPTS).letter == "A"


def test_longer_option_text_is_not_shadowed_by_its_part():
    opts = ["#18 and #28", "#48", "#28 and #38", "#18 and #38"]
    assert extract_choice("Teeth #28 and #38 are impacted", opts).letter == "C"


def test_failure_counts_as_wrong_and_is_reported():
    items = [ClosedItem(index=str(i), question="q", options=OPTS, answer="A", category="Teeth") for i in range(4)]
    preds = score_closed("m", items, ["(A)", "no idea", "A", "zzz"])
    assert [p.correct for p in preds] == [True, False, True, False]
    s = summarise("m", preds)
    assert s.extraction_failure_rate == pytest.approx(50.0)
    assert s.closed["Overall"] == pytest.approx(50.0)
    assert s.extraction_methods == {"paren": 1, "failed": 2, "letter": 1}
