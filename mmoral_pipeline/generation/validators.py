"""Validators: pure functions that say whether a generated text may become an instruction item.

Each returns a `Verdict` (validator name, passed, reason). Text is read claim by claim with the one
claim extractor (`generation/claims.py`) and every claim is compared with the image's `Facts`:

- `grounded_teeth`: every tooth the text names exists in the attributes (present, missing, or named
  by a recommendation), and a tooth name agrees with the number written next to it;
- `coverage`: no claim, positive or negative, about a category the image was not assessed for;
- `grounding`: a finding said to be there (definite or suspected) is there, on that tooth or in that
  region, of that lesion type; counts are right;
- `contradiction`: a finding said to be absent ("16 is unrestored", "no caries on 47") is absent;
- `hedging`: findings below 0.80 worded as suspicion, the others as definite;
- `option_truth`: a closed question's keyed option is true and no other option is.

A failing item goes to `rejected_generations` with the first failing verdict's validator and a
reason that quotes the offending clause and its character span. The rules err on the side of
rejecting: a lost item is cheap, a hallucinated one is taught to the model.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from pydantic import BaseModel, Field

from mmoral_pipeline.domain import fdi
from mmoral_pipeline.domain.geometry import iou
from mmoral_pipeline.domain.taxonomy import ANATOMY, JAW_LEVEL, TREATMENTS, Category
from mmoral_pipeline.generation import claims as C
from mmoral_pipeline.generation.claims import Claim, Extraction
from mmoral_pipeline.generation.facts import Facts, Finding
from mmoral_pipeline.generation.prompts import HEDGE_THRESHOLD

LETTERS = ("A", "B", "C", "D")
MIN_TURNS, MAX_TURNS = 8, 12  # what the pipeline asks its LLM for (settings.dialogue_turns is clamped to it)
EXTERNAL_MIN_TURNS = 2  # `mmoral validate`: another generator's dialogue may be a single exchange, or long
OPEN_ANSWER_MAX_CHARS = 600
JSON_ANSWER_MAX_CHARS = 4000
TASK_TYPES = ("report", "vqa_closed", "vqa_open", "dialogue", "attribute")


class Verdict(BaseModel):
    validator: str
    passed: bool
    reason: str = ""


_OK: dict[str, Verdict] = {}


def ok(name: str) -> Verdict:
    """A passing verdict (shared instances: verdicts are never mutated, and millions are made at scale)."""
    v = _OK.get(name)
    if v is None:
        v = _OK[name] = Verdict(validator=name, passed=True)
    return v


def fail(name: str, reason: str) -> Verdict:
    return Verdict(validator=name, passed=False, reason=reason[:400])


def first_failure(verdicts: Iterable[Verdict]) -> Verdict | None:
    return next((v for v in verdicts if not v.passed), None)


def failures(verdicts: Iterable[Verdict]) -> list[str]:
    """Every failing verdict as 'validator: reason' (what the repair request sends back)."""
    return [f"{v.validator}: {v.reason}" for v in verdicts if not v.passed]


# A number-like score, a percentage, or naming the detector's numbers ("confidence score", "probability of 0.7");
# "confidence": "suspected" or "with high confidence" reveals no number.
SCORES = re.compile(
    r"(?<![\w.])0?\.\d+|\b\d{1,3}(?:\.\d+)?\s?%|\bconfidence\s+(?:scores?|levels?|values?|of\s+\d)|\bconfidence\W{0,4}\d"
    r"|\bscores?\b|\bscored\b|\bprobability\b",
    re.IGNORECASE,
)
IDENTITY = re.compile(
    r"\bpatient(?:'s)?\s+(?:name|id|identifier|number)\b|\bname\s*:|\bdate\s+of\s+birth\b|\bDOB\b|\bMRN\b"
    r"|\bmedical\s+record\s+(?:number|no)\b|\bage\s*:|\bsex\s*:|\bgender\s*:|\b(?:Mr|Mrs|Ms|Miss)\.?\s+[A-Z]",
)
# Cheap screen: every SCORES / IDENTITY match contains one of these.
_SCREEN_WORDS = (
    "%",
    "confiden",
    "score",
    "probab",
    "patient",
    "name",
    "birth",
    "dob",
    "mrn",
    "record",
    "sex",
    "gender",
)
_SCREEN_RE = re.compile(r"\.\d|\bM(?:r|rs|s|iss)\b")


def _might_have_score_or_identity(text: str) -> bool:
    low = text.lower()
    return any(w in low for w in _SCREEN_WORDS) or ("age" in low and ":" in low) or _SCREEN_RE.search(text) is not None


# --- claims against the facts ---------------------------------------------------------------------


def _parse_side(value: str | None) -> tuple[str | None, str | None]:
    v = (value or "").lower()
    arch = "upper" if "upper" in v or "maxill" in v else "lower" if "lower" in v or "mandib" in v else None
    side = "left" if "left" in v else "right" if "right" in v else None
    return arch, side


def _located(claim: Claim, f: Finding) -> bool:
    """Is finding `f` where the claim puts it?"""
    if claim.tooth is not None:
        if f.tooth_id is not None:
            return f.tooth_id == claim.tooth
        if f.category in JAW_LEVEL and fdi.is_valid_fdi(claim.tooth):
            arch, side = _parse_side(f.region)
            if f.category in ANATOMY:
                return side is None or side == fdi.patient_side(claim.tooth)
            return arch is None or arch == fdi.arch(claim.tooth)
        return False
    r = claim.region
    if r is None:
        return True
    if r.scope == "jaw" and f.category not in JAW_LEVEL:
        return False  # "no abnormality in the jaws" says nothing about the teeth
    if f.tooth_id is not None:
        return f.tooth_id in r.teeth
    if r.scope == "teeth" and f.category in JAW_LEVEL and claim.polarity == "absent":
        return False  # "no pathology on the teeth" says nothing about the jaw bone
    arch, side = _parse_side(f.region)
    if f.category in ANATOMY:
        return r.side is None or side is None or r.side == side
    return (r.arch is None or arch is None or r.arch == arch) and (r.side is None or side is None or r.side == side)


def _kind_matches(claim: Claim, f: Finding) -> bool:
    if f.category not in claim.categories:
        return False
    return claim.lesion_type is None or f.lesion_type == claim.lesion_type


def _by_category(facts: Facts) -> dict[Category, list[Finding]]:
    """The image's findings by category (built once per Facts; rebuilt if findings were added since)."""
    cached = facts.__dict__.get("_by_category")
    if cached is None or cached[0] != len(facts.findings):
        index: dict[Category, list[Finding]] = {}
        for f in facts.findings:
            index.setdefault(f.category, []).append(f)
        cached = (len(facts.findings), index)
        facts.__dict__["_by_category"] = cached
    return cached[1]


def matching(claim: Claim, facts: Facts) -> list[Finding]:
    """The findings that make the claim's "it is there" true ("whose tooth cannot be identified": only those
    without a tooth number)."""
    index = _by_category(facts)
    return [
        f
        for c in claim.categories
        for f in index.get(c, ())
        if _located(claim, f) and _kind_matches(claim, f) and not (claim.unnumbered and f.tooth_id is not None)
    ]


def _teeth_of(claim: Claim, facts: Facts) -> set[int]:
    if claim.tooth is not None:
        return {claim.tooth}
    if claim.region is not None:
        return set(claim.region.teeth)
    return set(fdi.ALL_TEETH)


def _present_teeth(claim: Claim, facts: Facts) -> set[int]:
    return _teeth_of(claim, facts) & set(facts.teeth)


def _missing(claim: Claim, facts: Facts) -> set[int]:
    """Teeth of the claim's place that are missing: named in a missing-tooth region, or (teeth
    being assessed) not present at all."""
    teeth = _teeth_of(claim, facts)
    out = teeth & set(facts.missing)
    if claim.tooth is not None and facts.is_assessed(Category.TOOTH) and claim.tooth not in facts.teeth:
        out.add(claim.tooth)
    return out


def _count_truth(claim: Claim, facts: Facts) -> bool:
    n = claim.count
    cats = claim.categories
    if Category.TOOTH in cats:
        return n == len(_present_teeth(claim, facts))
    if Category.MISSING_TOOTH in cats:
        return n == len(_teeth_of(claim, facts) & set(facts.missing))
    found = [f for f in facts.findings if f.category in cats and _located(replace(claim, tooth=None), f)]
    if cats <= ANATOMY:
        return n == len(found)
    definite = [f for f in found if not f.hedged]
    options = {len(definite), len({f.tooth_id for f in definite if f.tooth_id is not None})}
    if not claim.definite_only:  # "three definite carious teeth" counts the definite ones only
        options |= {len(found), len({f.tooth_id for f in found if f.tooth_id is not None})}
    return n in options


def truth(claim: Claim, facts: Facts, exclude: Sequence[Finding] = ()) -> bool | None:
    """Does the claim hold for the image? None when it cannot say (a recommendation).

    `exclude`: findings an absent claim about "the other teeth" is not about (those the same text
    names for that finding)."""
    if claim.polarity == "recommended":
        return None
    if claim.count is not None:
        return _count_truth(claim, facts)
    cats = claim.categories
    there: bool
    if Category.TOOTH in cats:
        there = bool(_present_teeth(claim, facts))
        if claim.polarity == "absent" and claim.tooth is None:
            present = _present_teeth(claim, facts) - {f.tooth_id for f in exclude}
            return not present
    elif Category.MISSING_TOOTH in cats and not (cats - {Category.MISSING_TOOTH}):
        there = bool(_missing(claim, facts))
    else:
        # "no definite caries" is contradicted, and "definite caries" made true, only by a definite finding
        found = [f for f in matching(claim, facts) if f not in exclude and not (claim.definite_only and f.hedged)]
        there = bool(found)
    return there if claim.asserts else not there


# --- text checks ----------------------------------------------------------------------------------


def _assessed(facts: Facts, category: Category) -> bool:
    """Was the category looked for (`domain.coverage`: a missing-tooth statement needs missing teeth assessed)."""
    return facts.is_assessed(category)


def _quote(claim: Claim) -> str:
    if claim.span == (0, 0):  # a structured answer: the JSON it comes from
        return claim.text[:160]
    return f'"{claim.text[:160]}" [{claim.span[0]}:{claim.span[1]}]'


def _summary(name: str, problems: list[str]) -> Verdict:
    if not problems:
        return ok(name)
    more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
    return fail(name, problems[0] + more)


def grounded_teeth(text: str | Extraction, facts: Facts, absent_ok: Iterable[int] = ()) -> Verdict:
    """Every tooth number a text names is one the attributes know; a tooth name agrees with its number."""
    name = "grounded_teeth"
    ext = text if isinstance(text, Extraction) else C.extract(text)
    known = facts.known_teeth() | set(absent_ok)
    said_absent = {
        c.tooth
        for c in ext.claims
        if c.tooth is not None
        and (
            (c.polarity == "absent" and Category.TOOTH in c.categories)
            or (c.asserts and c.categories == {Category.MISSING_TOOTH})
        )
    }
    if facts.is_assessed(Category.TOOTH):
        known |= said_absent
    problems = []
    for n, numbers, span in ext.mismatches:
        problems.append(f"'{n}' is not tooth {', '.join(map(str, numbers))} [{span[0]}:{span[1]}]")
    bad = [m for m in ext.teeth if not m.valid or m.tooth not in known]
    if bad:
        listed = sorted({m.tooth for m in bad})
        problems.insert(0, f"tooth number(s) not in the attributes: {listed} [{bad[0].span[0]}:{bad[0].span[1]}]")
    return _summary(name, problems)


def _same_line(a: Claim, b: Claim, text: str | None) -> bool:
    if not text:
        return a.span == b.span
    return "\n" not in text[min(a.span[0], b.span[0]) : max(a.span[1], b.span[1])]


def check_claims(
    claims: Sequence[Claim], facts: Facts, *, hedging: bool = True, text: str | None = None
) -> list[Verdict]:
    """coverage, grounding, contradiction and hedging verdicts for a text's claims. `text` (the
    text the claims come from) lets a definite sign and its hedged reading on one line pass
    ("36: periapical radiolucency; a cyst is suspected")."""
    claims = [c for c in claims if not c.question]
    cover, ground, contra, hedge = [], [], [], []
    stated = [c for c in claims if c.asserts and c.count is None]
    for c in claims:
        cats = c.categories
        if c.polarity != "recommended":
            # a specific term needs its own category assessed ("no caries" where caries was looked for);
            # a generic one needs all it covers for an absence ("no pathology") and any for a presence
            needed = {c.category} if c.category is not None else cats
            unassessed = sorted(x.value for x in needed if not _assessed(facts, x))
            if (c.polarity == "absent" and unassessed) or (c.asserts and len(unassessed) == len(needed)):
                cover.append(f"{'/'.join(unassessed)} was not assessed on this image: {_quote(c)}")
                continue
        exclude: list = []
        if c.others:
            exclude = [f for s in stated if s.categories & cats for f in matching(s, facts)]
            exclude_teeth = {s.tooth for s in stated if s.tooth is not None}
            exclude += [Finding(Category.TOOTH, 1.0, t) for t in exclude_teeth]
        t = truth(c, facts, exclude)
        if t is None:
            continue
        if c.count is not None:
            if not t:
                ground.append(f"wrong count of {c.name} ({c.count}) in {c.where}: {_quote(c)}")
            continue
        if c.asserts and not t:
            if c.definite_only and c.count is None and matching(c, facts):
                hedge.append(f"suspected {c.name} on {c.where} stated as definite: {_quote(c)}")
            elif Category.TOOTH in cats:
                ground.append(f"{c.where} is not present in the attributes: {_quote(c)}")
            elif c.tooth is not None and c.tooth not in facts.teeth and Category.MISSING_TOOTH not in cats:
                ground.append(f"tooth {c.tooth} is not present, so it has no {c.name}: {_quote(c)}")
            else:
                ground.append(f"no {c.name} on {c.where} in the attributes: {_quote(c)}")
        elif c.polarity == "absent" and not t:
            ground_truth = [f for f in matching(c, facts) if f not in exclude and not (c.definite_only and f.hedged)]
            what = ground_truth[0].name if ground_truth else c.name
            contra.append(f"says no {c.name} on {c.where}, but the attributes have {what} there: {_quote(c)}")
        elif (
            hedging
            and c.asserts
            and not c.inferred
            and not (cats & (ANATOMY | {Category.TOOTH, Category.MISSING_TOOTH}))
        ):
            found = matching(c, facts)
            if found and c.polarity == "present" and all(f.score < HEDGE_THRESHOLD for f in found):
                if any(
                    o.polarity == "suspected"
                    and o.tooth in (c.tooth, None)
                    and o.region in (c.region, None)
                    and o.categories & cats
                    and _same_line(o, c, text)
                    for o in claims
                ):
                    continue
                hedge.append(f"suspected {c.name} on {c.where} stated as definite: {_quote(c)}")
            elif found and c.polarity == "suspected" and all(f.score >= HEDGE_THRESHOLD for f in found):
                hedge.append(f"definite {c.name} on {c.where} worded as suspicion: {_quote(c)}")
    return [
        _summary("coverage", cover),
        _summary("grounding", ground),
        _summary("contradiction", contra),
        _summary("hedging", hedge),
    ]


def validate_text(text: str, facts: Facts, context: str | None = None, *, hedging: bool = True) -> list[Verdict]:
    """Every claim of one free text (an open answer, a dialogue turn, a report) against the facts."""
    ext = C.extract(text, context)
    return [
        grounded_teeth(ext, facts),
        *check_claims(answer_claims(context, ext) if context else ext.claims, facts, hedging=hedging, text=text),
    ]


def answer_claims(question: str | None, answer: str | Extraction) -> list[Claim]:
    """Claims of an answer read with its question: "Yes"/"No" take the question's findings as
    asserted/denied, and a bare "Tooth 36." gets the finding the question asks about."""
    ext = answer if isinstance(answer, Extraction) else C.extract(answer, question)
    own = [c for c in ext.claims if not c.question]
    if not question:
        return own
    out = list(own)
    q = C.extract(question)
    asked = [c for c in q.claims if c.asserts and Category.TOOTH not in c.categories and c.count is None]
    said = {"text": ext.text[:160], "span": (0, len(ext.text)), "question": False, "inferred": True}
    # "Is 38 erupted?" (impacted tooth absent): "Yes" says so, "No" says it is impacted
    denied = [
        c
        for c in q.claims
        if c.polarity == "absent" and c.categories and Category.TOOTH not in c.categories and c.count is None
    ]
    if ext.particle == "yes":
        pol = "suspected" if C.is_hedged(ext.text) else "present"
        out += [replace(c, polarity=pol, **said) for c in asked] + [replace(c, **said) for c in denied]
    elif ext.particle == "no" and len({c.tooth for c in asked + denied}) <= 1:
        # "No" denies a question about one tooth or place; "Are all third molars erupted? No." says only that some are
        # not
        out += [replace(c, polarity="absent", **said) for c in asked] + [
            replace(c, polarity="present", **said) for c in denied
        ]
    if ext.teeth and not any(c.categories and c.count is None and Category.TOOTH not in c.categories for c in own):
        out += _with_question(question, ext.text)
    if _HOW_MANY.search(question) and not any(c.count is not None for c in own):
        out += _count_answer(question, ext.text, q.claims)  # "How many teeth are present? Twenty-eight."
    return out


def _count_answer(question: str, answer: str, q_claims: Sequence[Claim]) -> list[Claim]:
    """The count a bare number answers a how-many question with ("Six (35-37 and 45-47).", option "28"):
    a count of what the question asks about, where it asks."""
    m = _OPTION_NUMBER.match(answer)
    if not m:
        return []
    v = m.group(1).lower()
    n = int(v) if v.isdigit() else C._NUMBER_WORDS[v]
    base = next((c for c in q_claims if c.category is not None), None)
    cat = base.category if base else Category.TOOTH
    alts = base.alternatives if base else frozenset({Category.TOOTH})
    region = (
        base.region if base and base.region is not None else C.region_in(question)
    )  # "How many teeth ... in the mandible?"
    return [
        Claim(
            cat,
            "present",
            (0, len(answer)),
            None,
            region,
            alts,
            None,
            n,
            False,
            False,
            f"{question} {answer.strip()}",
            base.definite_only if base else False,
        )
    ]


def _with_question(question: str, answer: str) -> list[Claim]:
    """Claims an elliptical answer makes together with its question ("Which tooth ...? #36")."""
    stem = question.strip().rstrip("?").strip()
    combined = C.extract(f"{stem} {answer}")
    asked = {c.key() for c in C.extract(stem).claims}
    hedged = bool(_HEDGED_ANSWER.match(answer))  # "Possibly one, in 34."
    return [
        replace(c, question=False, polarity="suspected" if hedged and c.polarity == "present" else c.polarity)
        for c in combined.claims
        if c.key() not in asked
    ]


_HEDGED_ANSWER = re.compile(
    r"^\W*(?:(?:yes|no)\W+)?(?:possibly|maybe|perhaps|probably|likely|potentially|suspected|questionabl[ey]|it\s+(?:may|might|could)|there\s+(?:may|might|could))\b",
    re.IGNORECASE,
)


# --- report validators ----------------------------------------------------------------------------


def report_sections(text: str) -> Verdict:
    """Exactly three sections, numbered 1-3, in order: teeth, jaw, summary/recommendations."""
    name = "report_sections"
    secs = C.report_sections(text)
    numbers = [s.number for s in secs]
    if numbers != [1, 2, 3]:
        return fail(
            name, f"expected sections 1, 2, 3 (teeth, jaw, summary); found {[n for n in numbers if n] or 'none'}"
        )
    empty = [s.number for s in secs if not s.body.strip()]
    if empty:
        return fail(name, f"empty section(s) {empty}")
    return ok(name)


def report_placement(text: str, claims: Sequence[Claim] | None = None) -> Verdict:
    """No treatment stated under 'Pathological Findings'; bone loss only in the jaw section."""
    name = "report_placement"
    claims = C.extract_claims(text) if claims is None else claims
    secs = C.report_sections(text)
    teeth = next((s for s in secs if s.number == 1), None)
    if teeth is None:
        return ok(name)
    patho = [p for p in teeth.parts if p.kind == "pathology"]
    for c in claims:
        if not c.asserts or c.count is not None:
            continue
        if (
            any(p.start <= c.span[0] < p.end for p in patho)
            and c.categories
            and c.categories <= TREATMENTS
            and not c.landmark
        ):
            return fail(name, f"treatment {c.name} under Pathological Findings: {_quote(c)}")
        if teeth.start <= c.span[0] < teeth.end and c.categories == {Category.BONE_LOSS}:
            return fail(name, f"bone loss outside the jaw section: {_quote(c)}")
    return ok(name)


def no_scores_or_identity(text: str) -> Verdict:
    """No confidence scores, percentages or patient identity in any generated text."""
    name = "no_scores_or_identity"
    if not _might_have_score_or_identity(text):  # fast path: nothing that could be a score or an identity field
        return ok(name)
    m = SCORES.search(text)
    if m:
        return fail(name, f"score-like text {m.group(0)!r}")
    m = IDENTITY.search(text)
    if m:
        return fail(name, f"identity-like text {m.group(0)!r}")
    return ok(name)


def validate_report(text: str, facts: Facts) -> list[Verdict]:
    """Structure, then every claim of every section (summary and recommendations included)."""
    if not text.strip():
        return [fail("report_sections", "empty report")]
    ext = C.extract(text)
    return [
        report_sections(text),
        grounded_teeth(ext, facts),
        *check_claims(ext.claims, facts, text=text),
        report_placement(text, ext.claims),
        no_scores_or_identity(text),
    ]


# --- items ----------------------------------------------------------------------------------------


def _norm(s: str) -> str:
    return re.sub(r"\s+", " ", str(s)).strip().lower().rstrip(".")


def mcq_form(options: Sequence[str], answer_letter: str, answer_text: str | None = None) -> Verdict:
    """Four non-empty distinct options, a letter A-D, and (when given) the letter's option is the answer text."""
    name = "mcq_form"
    if len(options) != 4:
        return fail(name, f"{len(options)} options, need 4")
    normed = [_norm(o) for o in options]
    if any(not o for o in normed):
        return fail(name, "empty option")
    if len(set(normed)) != 4:
        return fail(name, f"options not distinct: {list(options)}")
    if answer_letter not in LETTERS:
        return fail(name, f"answer letter {answer_letter!r} is not A-D")
    if answer_text is not None and answer_text.strip():
        matches = [i for i, o in enumerate(normed) if o == _norm(answer_text)]
        if len(matches) != 1:
            return fail(name, f"answer text {answer_text!r} matches {len(matches)} options")
        if LETTERS[matches[0]] != answer_letter:
            return fail(name, f"answer letter {answer_letter} but answer text is option {LETTERS[matches[0]]}")
    return ok(name)


_NONE_OPTION = re.compile(
    r"^(?:none(?:\s+of\s+(?:the\s+)?(?:above|these|them))?|neither(?:\s+of\s+(?:the\s+)?(?:above|these|them))?|nothing)\.?$",
    re.IGNORECASE,
)
_ALL_OPTION = re.compile(
    r"^(?:all(?:\s+(?:four|of\s+them|of\s+these))?|both(?:\s+of\s+them)?|all\s+of\s+the\s+above)\.?$", re.IGNORECASE
)
_NORMAL_OPTION = re.compile(
    r"^(?:normal(?:\s+(?:anatomy|anatomical\s+structures?|findings?|appearance|structures?|tooth|bone|variant))?|no\s+(?:abnormality|abnormalities|pathology|findings?|lesion)"
    r"|healthy(?:\s+tooth)?|unremarkable|wnl|within\s+normal\s+limits|sound)\.?$",
    re.IGNORECASE,
)
_WHICH_PLACE = re.compile(r"\bwhich\s+(jaw|arch|side|quadrant)\b", re.IGNORECASE)
_BARE_PLACE = re.compile(
    r"^(?:(?:upper|lower|maxillary|mandibular)(?:\s+(?:left|right))?|left|right)\.?$", re.IGNORECASE
)
_YES = re.compile(r"^\s*(?:yes|no)\b", re.IGNORECASE)
_HOW_MANY = re.compile(r"\bhow\s+many\b|\bnumber\s+of\b", re.IGNORECASE)
_YESNO_Q = re.compile(r"^\s*(?:is|are|does|do|did|was|were|has|have|can|could|will)\b", re.IGNORECASE)
_OPTION_NUMBER = re.compile(
    r"^\s*(\d{1,2}|" + "|".join(sorted(C._NUMBER_WORDS, key=len, reverse=True)) + r")\b", re.IGNORECASE
)


def _option_claims(question: str, option: str, q_claims: list[Claim]) -> list[Claim] | str:
    """The claims an option makes when read as the answer to the question; or "none" / "all"."""
    opt = option.strip()
    if _NONE_OPTION.match(opt):
        return "none"
    if _NORMAL_OPTION.match(opt):  # "Normal anatomy" as the diagnosis of a finding: the finding is not there
        denied = [
            replace(c, polarity="absent", question=False)
            for c in q_claims
            if c.asserts and c.count is None and c.categories and Category.TOOTH not in c.categories
        ]
        if denied:
            return denied
    place = _WHICH_PLACE.search(question)
    if place and _BARE_PLACE.match(opt):  # "In which jaw ...? Upper": the upper jaw
        opt = f"{opt.rstrip('.')} {place.group(1)}"
    if _HOW_MANY.search(question):
        counted = _count_answer(question, opt, q_claims)
        if counted:
            return counted
    if _ALL_OPTION.match(opt):
        out = []
        for c in q_claims:
            if c.region is not None and c.category is not None:
                out += [replace(c, region=None, tooth=t, question=False) for t in sorted(c.region.teeth)]
            elif c.category is not None and c.categories <= ANATOMY and opt.lower().startswith("both"):
                out += [replace(c, region=C.region_of(side=s), question=False) for s in ("right", "left")]
        return out or "all"
    if _YESNO_Q.match(question) and _YES.match(opt):
        ext = C.extract(opt, question)
        return answer_claims(question, ext)
    claims = _with_question(question, opt)
    if not claims:
        claims = [replace(c, question=False) for c in C.extract(opt, question).claims]
    return claims


def option_truths(question: str, options: Sequence[str], facts: Facts) -> list[bool | None]:
    """Truth of each option read as the answer (None: cannot tell). An option whose claims are a
    part of another option's ("Upper jaw" beside "Both jaws", "Right" beside "Both") or that says
    "only" means "only that": the other option's extra claims must then be false."""
    if C.is_recommendation_question(question):
        return [None] * len(options)  # a recommendation is advice, not a fact of the image
    q_claims = C.extract(question.strip().rstrip("?")).claims
    read = [_option_claims(question, o, q_claims) for o in options]

    def one(c: Claim) -> bool | None:
        v = truth(c, facts)
        if (
            v
            and c.polarity == "suspected"
            and c.count is None
            and not c.categories & (ANATOMY | {Category.TOOTH, Category.MISSING_TOOTH})
        ):
            # "Which tooth is suspicious for caries?": the hedged finding, not a definite one (the hedging rule)
            v = any(f.hedged for f in matching(c, facts))
        return v

    def holds(cl: list[Claim]) -> bool | None:
        vals = [one(c) for c in cl if c.polarity != "recommended" or c.count is not None]
        vals = [v for v in vals if v is not None]
        if not vals:
            return None
        return all(vals)

    out: list[bool | None] = []
    for i, r in enumerate(read):
        if isinstance(r, str) or not r:
            out.append(None)
            continue
        v = holds(r)
        keys = {c.key()[:3] for c in r}
        only = bool(re.search(r"\bonly\b", options[i], re.IGNORECASE))
        if v:
            for j, other in enumerate(read):
                if j == i or isinstance(other, str):
                    continue
                okeys = {c.key()[:3] for c in other}
                extra = [c for c in other if c.key()[:3] not in keys]
                # "Upper jaw" beside "Both jaws", "Caries only" beside "Deep caries"
                if (keys < okeys or only) and extra and any(truth(c, facts) for c in extra if c.asserts):
                    v = False
        out.append(v)
    for i, r in enumerate(read):
        if r == "none":
            others = [v for j, v in enumerate(out) if j != i]
            out[i] = None if any(v is None for v in others) else not any(others)
        elif r == "all":
            others = [v for j, v in enumerate(out) if j != i]
            out[i] = None if any(v is None for v in others) else all(others)
    return out


def option_truth(question: str, options: Sequence[str], answer_letter: str, facts: Facts) -> Verdict:
    """Exactly one option true for the image: the keyed one."""
    name = "option_truth"
    if answer_letter not in LETTERS or len(options) != 4:
        return ok(name)  # mcq_form reports it
    truths = option_truths(question, options, facts)
    k = LETTERS.index(answer_letter)
    if truths[k] is False:
        return fail(name, f"keyed answer {answer_letter} ({options[k]!r}) is not true for this image: {question!r}")
    also = [LETTERS[i] for i, v in enumerate(truths) if v and i != k]
    if also:
        return fail(
            name,
            f"option(s) {', '.join(also)} ({', '.join(repr(options[LETTERS.index(x)]) for x in also)}) are true as well: {question!r}",  # noqa: E501
        )
    return ok(name)


def validate_closed(
    question: str, options: Sequence[str], answer_letter: str, facts: Facts, answer_text: str | None = None
) -> list[Verdict]:
    """Form, the question, the keyed answer and every distractor."""
    letter = (answer_letter or "").strip().strip("()").upper()[:1]
    keyed = options[LETTERS.index(letter)] if letter in LETTERS and len(options) == 4 else (answer_text or "")
    q_ext = C.extract(question)
    advice = C.is_recommendation_question(question)  # the options recommend; they state nothing about the image
    all_claims = [c for o in options if not advice for c in C.extract(o, question).claims] + [
        replace(c, question=False) for c in q_ext.claims
    ]
    covered = [v for v in check_claims(all_claims, facts) if v.validator == "coverage"]
    return [
        mcq_form(options, letter, answer_text or None),
        question_text(question),
        grounded_teeth(C.extract(f"{question}\n{keyed}"), facts),
        *covered,
        option_truth(question, options, letter, facts),
        no_scores_or_identity(" ".join([question, *options])),
    ]


def validate_open(question: str, answer: str, facts: Facts, max_chars: int = OPEN_ANSWER_MAX_CHARS) -> list[Verdict]:
    ext = C.extract(answer, question)
    return [
        open_answer(answer, max_chars),
        question_text(question),
        grounded_teeth(C.extract(question), facts),
        grounded_teeth(ext, facts),
        *check_claims(answer_claims(question, ext), facts, text=answer),
        no_scores_or_identity(f"{question}\n{answer}"),
    ]


def open_answer(answer: str, max_chars: int = OPEN_ANSWER_MAX_CHARS) -> Verdict:
    name = "open_answer"
    n = len(answer.strip())
    if n == 0:
        return fail(name, "empty answer")
    if n > max_chars:
        return fail(name, f"answer {n} chars > {max_chars}")
    return ok(name)


def question_text(question: str) -> Verdict:
    name = "question_text"
    if not question.strip():
        return fail(name, "empty question")
    if re.search(r"\bcaption\b", question, re.IGNORECASE):
        return fail(name, "question refers to the caption the trained model never sees")
    return ok(name)


PATIENT_ROLES = {"patient", "user"}
DOCTOR_ROLES = {"radiologist", "assistant", "doctor", "dentist"}


def dialogue_form(
    turns: Sequence[dict[str, str]], min_turns: int = MIN_TURNS, max_turns: int | None = MAX_TURNS
) -> Verdict:
    """min-max turns (8-12 for the pipeline's own dialogues), patient first, roles alternating, no empty turn."""
    name = "dialogue_form"
    if len(turns) < min_turns or (max_turns is not None and len(turns) > max_turns):
        return fail(name, f"{len(turns)} turns, need {min_turns}-{max_turns if max_turns is not None else 'any'}")
    for i, t in enumerate(turns):
        role = str(t.get("role", "")).lower()
        want = PATIENT_ROLES if i % 2 == 0 else DOCTOR_ROLES
        if role not in want:
            return fail(name, f"turn {i} has role {role!r}; roles must alternate starting with the patient")
        if not str(t.get("content", "")).strip():
            return fail(name, f"turn {i} is empty")
    return ok(name)


def validate_dialogue(
    turns: Sequence[dict[str, str]], facts: Facts, min_turns: int = MIN_TURNS, max_turns: int | None = MAX_TURNS
) -> list[Verdict]:
    """Form, then every radiologist turn claim by claim (read with the patient's question before
    it); a patient's words are questions and worries, not findings, so only their tooth numbers
    are checked."""
    verdicts = [dialogue_form(turns, min_turns, max_turns)]
    teeth_problems: list[Verdict] = []
    claim_verdicts: dict[str, list[str]] = {}
    prev = ""
    exts = []
    for t in turns:
        content = str(t.get("content", ""))
        exts.append(C.extract(content, prev or None))
        prev = content
    # a tooth one turn asks about and another says is absent is grounded
    said_absent = {
        c.tooth
        for e in exts
        for c in e.claims
        if c.tooth is not None
        and (
            (c.polarity == "absent" and Category.TOOTH in c.categories)
            or (c.asserts and c.categories == {Category.MISSING_TOOTH})
        )
    }
    prev = ""
    for i, (t, ext) in enumerate(zip(turns, exts, strict=True)):
        content = str(t.get("content", ""))
        role = str(t.get("role", "")).lower()
        teeth_problems.append(grounded_teeth(ext, facts, said_absent if facts.is_assessed(Category.TOOTH) else ()))
        if role not in PATIENT_ROLES:
            for v in check_claims(answer_claims(prev or None, ext), facts, text=content):
                if not v.passed:
                    claim_verdicts.setdefault(v.validator, []).append(f"turn {i}: {v.reason}")
        prev = content
    bad_teeth = [v for v in teeth_problems if not v.passed]
    verdicts.append(bad_teeth[0] if bad_teeth else ok("grounded_teeth"))
    for name in ("coverage", "grounding", "contradiction", "hedging"):
        verdicts.append(_summary(name, claim_verdicts.get(name, [])))
    verdicts.append(no_scores_or_identity("\n".join(str(t.get("content", "")) for t in turns)))
    return verdicts


# --- attribute-extraction answers -----------------------------------------------------------------

_BOX_KEYS = C._BOX_KEYS


def _json_boxes(
    node: Any, tooth: int | None = None, out: list | None = None
) -> list[tuple[int, str | None, list[float]]]:
    """(tooth, category or None for the tooth itself, box) for every boxed tooth/condition."""
    out = [] if out is None else out
    if isinstance(node, list):
        for x in node:
            if isinstance(x, (dict, list)):
                _json_boxes(x, tooth, out)
    elif isinstance(node, dict):
        t = tooth
        for k in ("tooth_id", "tooth", "fdi"):
            if k in node and str(node[k]).strip().lstrip("#").isdigit():
                t = int(str(node[k]).strip().lstrip("#"))
        box = next((node[k] for k in _BOX_KEYS if isinstance(node.get(k), list) and len(node[k]) == 4), None)
        cat = node.get("category") if isinstance(node.get("category"), str) else None
        if box is not None and t is not None:
            own_tooth = any(k in node for k in ("tooth_id", "tooth", "fdi"))
            out.append((t, None if own_tooth and cat is None else cat, [float(v) for v in box]))
        for k, v in node.items():
            if isinstance(v, (dict, list)) and k not in _BOX_KEYS:
                _json_boxes(v, t, out)
    return out


def validate_attribute(answer: str, facts: Facts, max_chars: int = JSON_ANSWER_MAX_CHARS) -> list[Verdict]:
    """A structured answer: it parses, every tooth and finding in it is in the attributes (and
    nothing it says absent is there), and its boxes overlap the attributes' boxes (IoU >= 0.5)."""
    try:
        obj = C.parse_json_answer(answer)
    except ValueError as exc:
        return [fail("attribute_json", str(exc))]
    # an empty list answers the question as asked, and attribute questions name only assessed kinds
    claims = [
        replace(c, alternatives=c.alternatives & facts.assessed)
        if c.category is None and c.polarity == "absent" and c.alternatives & facts.assessed
        else c
        for c in C.claims_from_json(obj)
    ]
    teeth = [c.tooth for c in claims if c.tooth is not None]
    known = facts.known_teeth()
    unknown = sorted(
        {
            t
            for t in teeth
            if t not in known
            and not (
                facts.is_assessed(Category.TOOTH)
                and any(c.tooth == t and c.categories == {Category.MISSING_TOOTH} for c in claims)
            )
        }
    )
    teeth_v = (
        fail("grounded_teeth", f"tooth number(s) not in the attributes: {unknown}") if unknown else ok("grounded_teeth")
    )
    box_problems = []
    for tooth, cat, box in _json_boxes(obj):
        if cat is None:
            ref = facts.teeth.get(tooth)
            if ref is not None and iou(ref, box) < 0.5:
                box_problems.append(f"box {box} of tooth {tooth} does not match its box {list(ref)}")
        else:
            term, _ = C._category_of(cat)
            if term is None:
                continue
            refs = [f.bbox for f in facts.findings if f.tooth_id == tooth and f.category in term.alternatives]
            if refs and max(iou(r, box) for r in refs) < 0.5:
                box_problems.append(f"box {box} of {cat} on tooth {tooth} matches no such finding's box")
    verdicts = [open_answer(answer, max_chars), teeth_v, *check_claims(claims, facts, hedging=False)]
    if box_problems:
        verdicts.append(_summary("grounding", box_problems))
    verdicts.append(no_scores_or_identity(answer))
    return verdicts


# --- externally written items (`mmoral validate`) ---------------------------------------------------


class ExternalItem(BaseModel):
    """One line of `mmoral validate` input; unknown keys are ignored."""

    model_config = {"extra": "ignore"}

    image_id: str
    task_type: str
    question: str = ""
    answer: str = ""
    options: list[str] | None = None
    answer_letter: str | None = None
    turns: list[dict[str, str]] | None = None


def validate_item(item: ExternalItem | dict[str, Any], facts: Facts) -> list[Verdict]:
    """Every validator of the item's task type (what the pipeline runs on its own items)."""
    it = item if isinstance(item, ExternalItem) else ExternalItem.model_validate(item)
    if it.task_type == "report":
        return [question_text(it.question) if it.question else ok("question_text"), *validate_report(it.answer, facts)]
    if it.task_type == "vqa_closed":
        return validate_closed(it.question, it.options or [], it.answer_letter or "", facts, it.answer or None)
    if it.task_type == "vqa_open":
        return validate_open(it.question, it.answer, facts)
    if it.task_type == "dialogue":
        return validate_dialogue(it.turns or [], facts, EXTERNAL_MIN_TURNS, None)
    if it.task_type == "attribute":
        return [
            question_text(it.question) if it.question else ok("question_text"),
            *validate_attribute(it.answer, facts, 40_000),
        ]
    return [fail("task_type", f"unknown task_type {it.task_type!r}; use one of {', '.join(TASK_TYPES)}")]


class ItemResult(BaseModel):
    line: int
    passed: bool
    rejected_by: list[str] = Field(default_factory=list)
    reasons: list[str] = Field(default_factory=list)


def item_result(line: int, verdicts: Sequence[Verdict]) -> ItemResult:
    bad = [v for v in verdicts if not v.passed]
    return ItemResult(
        line=line, passed=not bad, rejected_by=[v.validator for v in bad], reasons=[v.reason for v in bad]
    )


def dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
