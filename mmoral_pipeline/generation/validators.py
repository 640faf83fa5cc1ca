"""Validators: pure functions that say whether a generated text may become an instruction item.

Each returns a `Verdict` (validator name, passed, reason). A failing item goes to
`rejected_generations` with the first failing verdict's validator and reason. The text checks are
clause-level heuristics written for the report layout the prompts ask for; they err on the side of
rejecting (a lost item is cheap, a hallucinated one is taught to the model).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import NamedTuple

from pydantic import BaseModel

from mmoral_pipeline.domain import fdi
from mmoral_pipeline.domain.coverage import is_coverage_statement
from mmoral_pipeline.domain.taxonomy import ANATOMY, JAW_LEVEL, TREATMENTS, Category
from mmoral_pipeline.generation.facts import Facts

LETTERS = ("A", "B", "C", "D")
MIN_TURNS, MAX_TURNS = 8, 12
OPEN_ANSWER_MAX_CHARS = 600
JSON_ANSWER_MAX_CHARS = 4000


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
    return Verdict(validator=name, passed=False, reason=reason[:300])


def first_failure(verdicts: Iterable[Verdict]) -> Verdict | None:
    return next((v for v in verdicts if not v.passed), None)


# --- lexicon --------------------------------------------------------------------------------

# Order matters: longer phrases are consumed first so "deep caries" is not also "caries" and
# "root canal filling" is not also "filling".
TERMS: list[tuple[Category, re.Pattern[str]]] = [
    (Category.DEEP_CARIES, re.compile(r"\bdeep(?:ly)?\s+(?:carious|caries|cavit\w*|decay)\b", re.I)),
    (Category.ROOT_CANAL_TREATMENT, re.compile(r"\broot[\s-]canal(?:s)?(?:\s+(?:treatment|therapy|filling|treated|obturation)s?)?|\bendodontic(?:ally)?\s+(?:treat\w*|filled|therapy)|\bRCT\b", re.I)),
    (Category.MANDIBULAR_CANAL, re.compile(r"\bmandibular\s+canals?\b|\binferior\s+alveolar\s+(?:nerve\s+)?canals?\b", re.I)),
    (Category.MAXILLARY_SINUS, re.compile(r"\bmaxillary\s+sinus(?:es)?\b|\bsinus(?:es)?\b", re.I)),
    (Category.RETAINED_ROOT, re.compile(r"\bretained\s+roots?\b|\broot\s+(?:remnants?|pieces?|fragments?|tips?)\b|\bresidual\s+roots?\b", re.I)),
    (Category.PERIAPICAL_LESION, re.compile(r"\bperiapical\b|\bapical\s+(?:lesion|radiolucenc\w*|periodontitis)\b|\bgranulomas?\b|\bcysts?\b|\babscess(?:es)?\b", re.I)),
    (Category.BONE_LOSS, re.compile(r"\bbone\s+(?:loss|resorption|level\s+reduction)\b", re.I)),
    (Category.CARIES, re.compile(r"\bcari(?:es|ous)\b|\bdecay(?:ed)?\b|\bcavit(?:y|ies)\b", re.I)),
    (Category.IMPACTED_TOOTH, re.compile(r"\bimpact(?:ed|ion)\b", re.I)),
    (Category.MISSING_TOOTH, re.compile(r"\bmissing\b|\bedentulous\b", re.I)),
    (Category.FILLING, re.compile(r"\bfillings?\b|\bfilled\b", re.I)),
    (Category.CROWN, re.compile(r"\bcrowns?\b|\bcrowned\b", re.I)),
    (Category.IMPLANT, re.compile(r"\bimplants?\b", re.I)),
    (Category.BRIDGE, re.compile(r"\bbridges?\b|\bbridgework\b", re.I)),
]
HEDGE = re.compile(
    r"suspic\w*|suspect\w*|\bpossib\w*|\bprobabl\w*|\bmay\s+(?:be|represent|indicate|suggest|have)\b|\bmight\b"
    r"|suggestive\s+of|cannot\s+be\s+(?:excluded|ruled\s+out)|re-?evaluat\w*|\bquestionable\b|\blikely\b"
    r"|\bindeterminate\b|\bequivocal\b|\bpotential\b|\bapparent\b",
    re.I,
)
NEGATION = re.compile(r"\b(?:no|not|without|absent|absence|none|free\s+of|neither|nor|ruled\s+out)\b", re.I)
RECOMMEND = re.compile(r"\brecommend\w*|\bsuggested\s+(?:for|that|to)\b|\badvis\w*|\bconsider\w*|\bshould\b|\breferr\w*|\bplanning\b", re.I)
# A two-digit FDI-like number that is not a count ("28 teeth", "32 visible teeth"), a decimal or a coordinate.
_TOOTH_NUMBER = re.compile(
    r"(?<![\d.\[\w])#?([1-8][1-8])(?![\d.]\d|\s*%|\s*(?:(?:visible|permanent|erupted|primary|remaining|natural|present"
    r"|identifiable|identified|detected)\s+)?(?:teeth|tooth)\b|\s*(?:mm|cm|years?)\b)",
    re.I,
)
SCORES = re.compile(r"(?<![\w.])0?\.\d+|\b\d{1,3}(?:\.\d+)?\s?%|\bconfidence\b|\bscores?\b|\bscored\b|\bprobability\b", re.I)
IDENTITY = re.compile(
    r"\bpatient(?:'s)?\s+(?:name|id|identifier|number)\b|\bname\s*:|\bdate\s+of\s+birth\b|\bDOB\b|\bMRN\b"
    r"|\bmedical\s+record\s+(?:number|no)\b|\bage\s*:|\bsex\s*:|\bgender\s*:|\b(?:Mr|Mrs|Ms|Miss)\.?\s+[A-Z]",
)

# Cheap screen: every SCORES / IDENTITY match contains one of these.
_SCREEN_WORDS = ("%", "confiden", "score", "probab", "patient", "name", "birth", "dob", "mrn", "record", "sex", "gender")
_SCREEN_RE = re.compile(r"\.\d|\bM(?:r|rs|s|iss)\b")


def _might_have_score_or_identity(text: str) -> bool:
    low = text.lower()
    return (any(w in low for w in _SCREEN_WORDS) or ("age" in low and ":" in low)
            or _SCREEN_RE.search(text) is not None)

SECTION_KEYWORDS = (
    re.compile(r"teeth|tooth|dental", re.I),
    re.compile(r"jaw|bone|maxill|mandib", re.I),
    re.compile(r"summary|recommend|impression|conclusion", re.I),
)
_HEADING = re.compile(r"^\s*(?:#{1,6}\s*)?(?:\*\*)?\s*([1-9])\s*[.)]\s*(?:\*\*)?\s*(.{3,70}?)\s*(?:\*\*)?\s*:?\s*(?:\*\*)?\s*$")
_SUBLABEL = re.compile(r"^\s*(?:[-*•]\s*)?(?:\*\*)?\s*(general\s+condition|patholog\w*(?:\s+findings?)?|historical\s+(?:interventions?|treatments?)|(?:previous\s+)?(?:treatments?|interventions?))\s*(?:\*\*)?\s*[:\-]", re.I | re.M)


# --- text helpers ---------------------------------------------------------------------------

def mentioned_teeth(text: str) -> list[int]:
    """FDI numbers a text names as teeth (counts, decimals, coordinates and invalid numbers excluded)."""
    out = []
    for m in _TOOTH_NUMBER.finditer(text):
        n = int(m.group(1))
        if fdi.is_valid_fdi(n) and n not in out:
            out.append(n)
    return out


_ANY_TERM = re.compile("|".join(f"(?:{p.pattern})" for _, p in TERMS), re.I)


def categories_in(text: str) -> list[Category]:
    found: list[Category] = []
    if not _ANY_TERM.search(text):
        return found
    rest = text
    for cat, pattern in TERMS:
        if pattern.search(rest):
            found.append(cat)
            rest = pattern.sub(" ", rest)
    return found


def clauses(text: str) -> list[str]:
    parts = re.split(r"(?<=[.!?])\s+|\n+|;\s*", text)
    return [p.strip() for p in parts if p and p.strip()]


class ClauseInfo(NamedTuple):
    negated: bool
    recommends: bool
    hedged: bool
    teeth: tuple[int, ...]
    categories: tuple[Category, ...]


@lru_cache(maxsize=16384)
def clause_info(clause: str) -> ClauseInfo:
    """What one clause says (memoised: the three report validators and the offline auditor share it)."""
    return ClauseInfo(
        negated=NEGATION.search(clause) is not None,
        recommends=RECOMMEND.search(clause) is not None,
        hedged=HEDGE.search(clause) is not None,
        teeth=tuple(mentioned_teeth(clause)),
        categories=tuple(categories_in(clause)),
    )


@lru_cache(maxsize=1024)
def sections(text: str) -> list[tuple[int, str, str]]:
    """Top-level numbered sections whose heading names teeth / jaw / summary: (number, heading, body)."""
    heads: list[tuple[int, int, int, str]] = []  # (line index, number, kind, heading)
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = _HEADING.match(line)
        if not m:
            continue
        n, heading = int(m.group(1)), m.group(2)
        if 1 <= n <= 3 and SECTION_KEYWORDS[n - 1].search(heading):
            heads.append((i, n, n, heading))
    out = []
    for j, (i, n, _, heading) in enumerate(heads):
        end = heads[j + 1][0] if j + 1 < len(heads) else len(lines)
        out.append((n, heading, "\n".join(lines[i + 1 : end])))
    return out


def observation_text(text: str) -> str:
    """Sections 1 and 2 (the observations); the whole text when the sections cannot be found."""
    secs = sections(text)
    obs = [body for n, _, body in secs if n in (1, 2)]
    return "\n".join(obs) if obs else text


def _subsection(body: str, label: re.Pattern[str]) -> str:
    marks = list(_SUBLABEL.finditer(body))
    for k, m in enumerate(marks):
        if label.match(m.group(1)):
            end = marks[k + 1].start() if k + 1 < len(marks) else len(body)
            return body[m.end() : end]
    return ""


def _has(by_tooth: dict[int, dict[Category, float]], tooth: int, cat: Category) -> float | None:
    cats = by_tooth.get(tooth, {})
    if cat in cats:
        return cats[cat]
    if cat == Category.CARIES and Category.DEEP_CARIES in cats:
        return cats[Category.DEEP_CARIES]
    return None


# --- report validators ----------------------------------------------------------------------

def report_sections(text: str) -> Verdict:
    """Exactly three sections, numbered 1-3, in order: teeth, jaw, summary/recommendations."""
    name = "report_sections"
    secs = sections(text)
    numbers = [n for n, _, _ in secs]
    if numbers != [1, 2, 3]:
        return fail(name, f"expected sections 1, 2, 3 (teeth, jaw, summary); found {numbers or 'none'}")
    empty = [n for n, _, body in secs if not body.strip()]
    if empty:
        return fail(name, f"empty section(s) {empty}")
    return ok(name)


def report_grounding(text: str, facts: Facts) -> Verdict:
    """Only teeth and findings present in the attributes; a finding named with a tooth must be on that tooth."""
    name = "report_grounding"
    known = facts.known_teeth()
    unknown = [t for t in mentioned_teeth(text) if t not in known]
    if unknown:
        return fail(name, f"tooth number(s) not in the attributes: {unknown}")
    by_tooth = facts.categories_by_tooth()
    present = facts.categories_present()
    if Category.DEEP_CARIES in present:
        present.add(Category.CARIES)
    for clause in clauses(observation_text(text)):
        info = clause_info(clause)
        if info.negated or info.recommends or is_coverage_statement(clause):
            continue
        teeth = info.teeth
        for cat in info.categories:
            if cat not in present:
                return fail(name, f"{cat.value} is not in the attributes: {clause!r}")
            if teeth and cat not in JAW_LEVEL and not any(_has(by_tooth, t, cat) is not None for t in teeth):
                return fail(name, f"{cat.value} is not on tooth/teeth {teeth}: {clause!r}")
    return ok(name)


def report_hedging(text: str, facts: Facts, threshold: float = 0.80) -> Verdict:
    """Findings below `threshold` worded as suspicion, the others as definite (anatomy and missing teeth excepted)."""
    name = "report_hedging"
    by_tooth = facts.categories_by_tooth()
    for clause in clauses(observation_text(text)):
        info = clause_info(clause)
        if info.negated or is_coverage_statement(clause):
            continue
        hedged, teeth = info.hedged, info.teeth
        for cat in info.categories:
            if cat in ANATOMY or cat == Category.MISSING_TOOTH:
                continue
            if teeth and cat not in JAW_LEVEL:
                scores = [s for t in teeth if (s := _has(by_tooth, t, cat)) is not None]
            else:
                wanted = {cat, Category.DEEP_CARIES} if cat == Category.CARIES else {cat}
                scores = [f.score for f in facts.findings if f.category in wanted and f.tooth_id is None]
            if not scores:
                continue
            if all(s < threshold for s in scores) and not hedged:
                return fail(name, f"suspected {cat.value} stated as definite: {clause!r}")
            if all(s >= threshold for s in scores) and hedged:
                return fail(name, f"definite {cat.value} worded as suspicion: {clause!r}")
    return ok(name)


def report_placement(text: str) -> Verdict:
    """No treatment under 'Pathological Findings'; bone loss only in the jaw section."""
    name = "report_placement"
    secs = {n: body for n, _, body in sections(text)}
    teeth_body = secs.get(1, "")
    patho = _subsection(teeth_body, re.compile(r"patholog", re.I))
    for clause in clauses(patho):
        info = clause_info(clause)
        if info.negated or is_coverage_statement(clause):
            continue
        treat = [c.value for c in info.categories if c in TREATMENTS]
        if treat:
            return fail(name, f"treatment {treat} under Pathological Findings: {clause!r}")
    for clause in clauses(teeth_body):
        info = clause_info(clause)
        if not info.negated and not is_coverage_statement(clause) and Category.BONE_LOSS in info.categories:
            return fail(name, f"bone loss outside the jaw section: {clause!r}")
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
    if not text.strip():
        return [fail("report_sections", "empty report")]
    return [
        report_sections(text),
        report_grounding(text, facts),
        report_hedging(text, facts),
        report_placement(text),
        no_scores_or_identity(text),
    ]


# --- items ----------------------------------------------------------------------------------

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
    if re.search(r"\bcaption\b", question, re.I):
        return fail(name, "question refers to the caption the trained model never sees")
    return ok(name)


def grounded_teeth(text: str, facts: Facts) -> Verdict:
    """Every tooth number in a text is one the attributes know."""
    name = "grounded_teeth"
    unknown = [t for t in mentioned_teeth(text) if t not in facts.known_teeth()]
    return fail(name, f"tooth number(s) not in the attributes: {unknown}") if unknown else ok(name)


PATIENT_ROLES = {"patient", "user"}
DOCTOR_ROLES = {"radiologist", "assistant", "doctor", "dentist"}


def dialogue_form(turns: Sequence[dict[str, str]]) -> Verdict:
    """8-12 turns, patient first, roles alternating, no empty turn."""
    name = "dialogue_form"
    if not MIN_TURNS <= len(turns) <= MAX_TURNS:
        return fail(name, f"{len(turns)} turns, need {MIN_TURNS}-{MAX_TURNS}")
    for i, t in enumerate(turns):
        role = str(t.get("role", "")).lower()
        want = PATIENT_ROLES if i % 2 == 0 else DOCTOR_ROLES
        if role not in want:
            return fail(name, f"turn {i} has role {role!r}; roles must alternate starting with the patient")
        if not str(t.get("content", "")).strip():
            return fail(name, f"turn {i} is empty")
    return ok(name)
