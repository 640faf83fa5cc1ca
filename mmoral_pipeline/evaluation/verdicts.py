"""What the benchmark checks conclude, as plain functions of the results table (the Dagster checks only wire them).

A verdict is None when there is nothing to judge (the model did not run): the check is then skipped, never
passed. Figures are closed-ended accuracies in %.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from pydantic import BaseModel

from mmoral_pipeline.evaluation.items import LETTERS, ClosedItem
from mmoral_pipeline.evaluation.prior import QuestionPrior
from mmoral_pipeline.evaluation.selection import PRIOR_TARGET, PRIOR_TOLERANCE, within_chance

SFT_MARGIN_POINTS = 5.0  # the fine-tuned model must beat each comparison by this many points of closed accuracy
SFT = "sft"
SFT_COMPARISONS = {  # results row -> what it stands for
    "question_prior": "the question-wording prior",
    "sft-other-image": "itself shown another patient's X-ray",
    "most_frequent": "the most frequent letter",
    "base": "its untrained base",
}
REQUIRED_COMPARISONS = ("question_prior", "sft-other-image")
MIN_CLOSED_TO_JUDGE = 20  # below this one item moves an accuracy by more than the 5-point band (4 items: 25 -> 50 %)


class Verdict(BaseModel):
    passed: bool
    description: str
    figures: dict[str, float]


def sft_beats_baselines(closed: Mapping[str, float | None], margin: float = SFT_MARGIN_POINTS) -> Verdict | None:
    """The fine-tuned model reads the X-ray: its closed accuracy beats the question-wording prior, its own
    other-image run (and the most frequent letter and its base, when they ran) by `margin` points.
    None when the fine-tuned model did not run."""
    sft = closed.get(SFT)
    if sft is None:
        return None
    figures = {m: v for m in (SFT, "sft-text-only", *SFT_COMPARISONS) if (v := closed.get(m)) is not None}
    missing = [m for m in REQUIRED_COMPARISONS if closed.get(m) is None]
    short = [f"{SFT_COMPARISONS[m]} ({closed[m]:.1f})" for m in SFT_COMPARISONS
             if closed.get(m) is not None and sft < closed[m] + margin]  # type: ignore[operator]
    if missing:
        return Verdict(
            passed=False,
            figures=figures,
            description=f"sft {sft:.1f}: cannot tell whether it reads the X-ray "
            f"without {' and '.join(SFT_COMPARISONS[m] for m in missing)} (add {', '.join(missing)} to the models)",
        )
    if short:
        return Verdict(passed=False, figures=figures, description=f"sft {sft:.1f} is not {margin:g} points above "
                       + "; ".join(short))
    return Verdict(passed=True, figures=figures, description=f"sft {sft:.1f} is at least {margin:g} points above "
                   + ", ".join(f"{SFT_COMPARISONS[m]} ({closed[m]:.1f})" for m in SFT_COMPARISONS if m in figures))


def sft_not_worse_than_base(scores: Mapping[str, float | None]) -> Verdict | None:
    """The fine-tuning did not hurt: sft's score (Avg, else closed accuracy) >= its base's. None when either did
    not run."""
    sft, base = scores.get(SFT), scores.get("base")
    if sft is None or base is None:
        return None
    return Verdict(passed=sft >= base, figures={"sft": sft, "base": base, "delta": sft - base},
                   description=f"sft {sft:.2f} vs base {base:.2f}")


def text_alone_near_chance(items: Sequence[ClosedItem], prior: QuestionPrior) -> Verdict | None:
    """The closed set is not passed by text alone: the question-wording prior and the most frequent letter both
    score within PRIOR_TOLERANCE of chance on it. None with fewer than MIN_CLOSED_TO_JUDGE closed items or no training
    answers (nothing to judge)."""
    if len(items) < MIN_CLOSED_TO_JUDGE or not prior.n_closed:
        return None
    prior_right = sum(prior.closed_choice(it.question, it.options) == it.answer_text for it in items)
    letters = Counter(it.answer for it in items)
    prior_acc = 100.0 * prior_right / len(items)
    letter_acc = 100.0 * max(letters.get(x, 0) for x in LETTERS) / len(items)
    figures = {"question_prior": prior_acc, "most_frequent_letter": letter_acc, "closed_items": float(len(items)),
               "training_answers": float(prior.n_closed)}
    ok_prior, ok_letter = within_chance(prior_acc), within_chance(letter_acc)
    band = f"{100 * (PRIOR_TARGET - PRIOR_TOLERANCE):.0f}-{100 * (PRIOR_TARGET + PRIOR_TOLERANCE):.0f} %"
    description = (f"question-wording prior {prior_acc:.1f} % ({prior_right}/{len(items)}), most frequent letter "
                   f"{letter_acc:.1f} %; chance band {band}")
    return Verdict(passed=ok_prior and ok_letter, figures=figures, description=description)
