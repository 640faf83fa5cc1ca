"""Label coverage: which categories were looked for on an image, and what that allows a text to say.

Real sources label only some categories (DC1000: caries; UFBA: teeth; AKUDENTAL: teeth and
restorations). A category outside an image's coverage was not assessed: nothing may be said about
it, neither present nor absent. This module is the one home for

- reading a `covers:` list from the sources file (`parse_coverage`),
- what a statement needs assessed before it may be made (`STATEMENT_NEEDS`, `may_state`), e.g. a
  tooth count needs `tooth`, "the wisdom tooth is erupted" needs `tooth` and `impacted_tooth`,
- the sentence that tells a reader what was assessed (`coverage_sentence`), and how to recognise
  it (`is_coverage_statement`: validators and claim parsers must not read "X was not assessed" as
  a negative finding about X).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from mmoral_pipeline.domain.taxonomy import ANATOMY, PATHOLOGY, TREATMENTS, Category, unify_category

ALL_CATEGORIES: frozenset[Category] = frozenset(Category)

# What a kind of statement needs assessed (all of it). One table, used by the caption, the offline
# writer, the rule-based VQA, the attribute tasks and the benchmark builders.
STATEMENT_NEEDS: dict[str, frozenset[Category]] = {
    "teeth": frozenset({Category.TOOTH}),  # tooth count, which teeth are present, wisdom teeth present
    "wisdom_status": frozenset({Category.TOOTH, Category.IMPACTED_TOOTH}),  # impacted / erupted
    "missing": frozenset({Category.MISSING_TOOTH}),
    "no_pathology": PATHOLOGY - {Category.BONE_LOSS, Category.MISSING_TOOTH},  # "no pathological findings on the teeth"
    "no_treatment": TREATMENTS,  # "no historical treatments are present"
    "jaw": frozenset({Category.BONE_LOSS}) | ANATOMY,  # the whole jaw section
    "extraction_rule": frozenset({Category.TOOTH}),  # the wisdom-tooth extraction recommendation
}


def parse_coverage(value: object) -> frozenset[Category]:
    """A `covers:` value: 'all', or a list of category names or synonyms ('teeth', 'root canal')."""
    if isinstance(value, str):
        if value.strip().lower() == "all":
            return ALL_CATEGORIES
        value = [value]
    if not isinstance(value, (list, tuple, set, frozenset)):
        raise ValueError(f"covers must be 'all' or a list of categories, got {value!r}")
    out: set[Category] = set()
    for item in value:
        unified = unify_category(str(item))
        if unified is None:
            raise ValueError(f"covers: unknown category {item!r}; known: {sorted(c.value for c in Category)}")
        out.add(unified[0])
    if not out:
        raise ValueError("covers is empty: a source that assesses nothing has nothing to contribute")
    return frozenset(out)


def sorted_categories(categories: Iterable[Category | str]) -> list[Category]:
    """Categories in the taxonomy's order (stable lists in tables and documents)."""
    order = {c: i for i, c in enumerate(Category)}
    return sorted({Category(c) for c in categories}, key=order.__getitem__)


def asks_only_assessed(needs: Iterable[Category], assessed: Iterable[Category]) -> bool:
    """True when a question (or statement) that involves `needs` may be made: all of it was assessed.
    The one rule every question builder applies (generation rules, attribute tasks, benchmark items)."""
    return frozenset(needs) <= frozenset(assessed)


def may_state(statement: str, assessed: Iterable[Category]) -> bool:
    """True when every category the statement kind needs (`STATEMENT_NEEDS`) was assessed."""
    return asks_only_assessed(STATEMENT_NEEDS[statement], assessed)


def any_assessed(categories: Iterable[Category], assessed: Iterable[Category]) -> bool:
    return bool(frozenset(categories) & frozenset(assessed))


# --------------------------------------------------------------------------- wording

PLURAL: dict[Category, str] = {
    Category.TOOTH: "the teeth",
    Category.CARIES: "caries",
    Category.DEEP_CARIES: "deep caries",
    Category.PERIAPICAL_LESION: "periapical lesions",
    Category.IMPACTED_TOOTH: "impacted teeth",
    Category.MISSING_TOOTH: "missing teeth",
    Category.RETAINED_ROOT: "retained roots",
    Category.BONE_LOSS: "bone loss",
    Category.FILLING: "fillings",
    Category.CROWN: "crowns",
    Category.ROOT_CANAL_TREATMENT: "root canal treatments",
    Category.IMPLANT: "implants",
    Category.BRIDGE: "bridges",
    Category.MANDIBULAR_CANAL: "the mandibular canals",
    Category.MAXILLARY_SINUS: "the maxillary sinuses",
}
_GROUPS: tuple[tuple[str, str, frozenset[Category]], ...] = (
    # (name when none of the group was assessed, name of the rest when part was, members)
    ("pathology", "other pathology", PATHOLOGY),
    ("previous treatments", "other treatments", TREATMENTS),
    ("jaw anatomy", "", ANATOMY),
)
COVERAGE_MARKER = "not assessed"
# A clause that declares coverage: "... were not assessed", "This review covers X only", "assessed in this review".
_COVERAGE_CLAUSE = re.compile(
    r"\bnot assessed\b|\bthis review (?:covers|assessed)\b|\bassessed in this review\b", re.IGNORECASE
)


def join_words(words: list[str]) -> str:
    if not words:
        return ""
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + f" and {words[-1]}"


def not_assessed_parts(assessed: Iterable[Category]) -> list[str]:
    """What was not assessed, in groups a reader understands ('tooth numbering', 'jaw anatomy')."""
    have = frozenset(assessed)
    parts = [] if Category.TOOTH in have else ["tooth numbering"]
    for none_name, rest_name, members in _GROUPS:
        missing = [PLURAL[c] for c in sorted_categories(members - have)]
        if not missing:
            continue
        if len(missing) == len(members):
            parts.append(none_name)
        elif len(missing) == 1 or not rest_name:
            parts.append(join_words(missing))
        elif len(missing) > 3:
            parts.append(rest_name)
        else:
            parts.append(f"{rest_name} ({join_words(missing)})")
    return parts


_MASS_NOUNS = ("caries", "bone loss")


def coverage_sentence(assessed: Iterable[Category]) -> str | None:
    """'This review covers caries only; tooth numbering, other pathology, previous treatments and jaw
    anatomy were not assessed.' None when everything was assessed (nothing to declare)."""
    have = sorted_categories(assessed)
    if frozenset(have) == ALL_CATEGORIES:
        return None
    missing = not_assessed_parts(have)
    plural = len(missing) > 1 or (missing[0].endswith("s") and not missing[0].endswith(_MASS_NOUNS))
    tail = f"{join_words(missing)} {'were' if plural else 'was'} {COVERAGE_MARKER}."
    if not have:  # a folder of images no expert labelled
        return f"This review assessed nothing; {tail}"
    if len(have) >= len(ALL_CATEGORIES) - 3:
        verb = "were" if plural else "was"
        return (
            f"This review assessed every finding category except {join_words(missing)}, which {verb} {COVERAGE_MARKER}."
        )
    covered = [PLURAL[c] for c in have]
    if Category.TOOTH in have:
        covered[0] = "the teeth (presence and FDI numbering)" if len(have) == 1 else "the teeth"
    return f"This review covers {join_words(covered)} only; {tail}"


def is_coverage_statement(sentence: str) -> bool:
    """A sentence or clause that declares coverage ('This review covers caries only', '... were not
    assessed'): not a finding, positive or negative. Claim parsers and validators skip it."""
    return _COVERAGE_CLAUSE.search(sentence) is not None


def plural_names(categories: Iterable[Category]) -> list[str]:
    """'caries', 'the teeth', 'fillings' ... in taxonomy order (captions and prompts)."""
    return [PLURAL[c] for c in sorted_categories(categories)]
