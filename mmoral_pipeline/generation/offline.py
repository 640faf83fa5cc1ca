"""The offline backend: a deterministic natural-language writer from the attributes.

A first-class `ChatBackend`, not a mock: it answers the same requests (report, audit, report VQA,
dialogue) with the same JSON schemas an LLM is asked for, following the same rules (three-section
reports, suspicion wording below 0.80, FDI numbering, no scores), with phrasing varied by a seed
derived from the request hash. It reads the attribute document from `ChatRequest.context` (the
LLM backends read the caption in the messages instead). It says nothing, present or absent, about a
category outside the image's label coverage (`Facts.assessed`); a partly labelled image's report
says once what was assessed (`domain.coverage.coverage_sentence`). Every row it produces says
`backend=offline`, and its model name says what it is.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from collections.abc import Callable, Sequence

from mmoral_pipeline.domain import fdi
from mmoral_pipeline.domain.attributes import ImageAttributes
from mmoral_pipeline.domain.coverage import (
    PLURAL,
    STATEMENT_NEEDS,
    coverage_sentence,
    join_words,
    may_state,
    sorted_categories,
)
from mmoral_pipeline.domain.taxonomy import TREATMENTS, Category
from mmoral_pipeline.generation.facts import Facts, Finding, facts_of
from mmoral_pipeline.generation.types import ChatRequest, ChatResponse

OFFLINE_VERSION = "offline-rules-v1"
OFFLINE_MODEL = f"{OFFLINE_VERSION} (deterministic writer from attributes, no LLM)"

NAMES: dict[Category, str] = {
    Category.CARIES: "caries",
    Category.DEEP_CARIES: "deep caries",
    Category.PERIAPICAL_LESION: "a periapical lesion",
    Category.IMPACTED_TOOTH: "impaction",
    Category.RETAINED_ROOT: "a retained root",
    Category.FILLING: "a filling",
    Category.CROWN: "a crown",
    Category.ROOT_CANAL_TREATMENT: "root canal treatment",
    Category.IMPLANT: "an implant",
    Category.BRIDGE: "a bridge",
    Category.BONE_LOSS: "bone loss",
}
PLAIN: dict[Category, str] = {
    Category.CARIES: "caries",
    Category.DEEP_CARIES: "deep caries",
    Category.PERIAPICAL_LESION: "periapical lesion",
    Category.IMPACTED_TOOTH: "impacted tooth",
    Category.RETAINED_ROOT: "retained root",
    Category.FILLING: "filling",
    Category.CROWN: "crown",
    Category.ROOT_CANAL_TREATMENT: "root canal treatment",
    Category.IMPLANT: "implant",
    Category.BRIDGE: "bridge",
    Category.BONE_LOSS: "bone loss",
}


def teeth_phrase(teeth: Sequence[int]) -> str:
    t = sorted(set(teeth))
    if len(t) == 1:
        return f"tooth {t[0]}"
    return "teeth " + ", ".join(map(str, t[:-1])) + f" and {t[-1]}"


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _name(f: Finding) -> str:
    if f.category == Category.PERIAPICAL_LESION and f.lesion_type:
        return f"a periapical lesion ({f.lesion_type})"
    return NAMES.get(f.category, f.category.value.replace("_", " "))


def _grouped(findings: Sequence[Finding]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = defaultdict(list)
    for f in findings:
        if f.tooth_id is not None and f.tooth_id not in groups[_name(f)]:
            groups[_name(f)].append(f.tooth_id)
    return groups


# --- sentences shared by report and dialogue --------------------------------------------------

def _definite_pathology(name: str, teeth: list[int], rng: random.Random) -> str:
    tp = teeth_phrase(teeth)
    if name == "impaction":
        return rng.choice([f"{_cap(tp)} {'is' if len(teeth) == 1 else 'are'} impacted.", f"Impaction is seen at {tp}."])
    verb = "shows" if len(teeth) == 1 else "show"
    return rng.choice(
        [f"{_cap(name)} is observed on {tp}.", f"{_cap(tp)} {verb} {name}.", f"{_cap(name)} is noted at {tp}."]
    )


def _hedged_finding(f: Finding, rng: random.Random) -> str:
    tp = f"tooth {f.tooth_id}"
    name = _name(f)
    if f.category == Category.IMPACTED_TOOTH:
        return rng.choice(
            [
                f"{_cap(tp)} is possibly impacted; clinical re-evaluation is suggested.",
                f"Impaction of {tp} is suspected.",
            ]
        )
    return rng.choice(
        [
            f"{_cap(tp)} is suspicious for {name}; clinical re-evaluation is suggested.",
            f"Possible {name.removeprefix('a ').removeprefix('an ')} is seen on {tp}.",
            f"{_cap(name)} is suspected on {tp}, suggest clinical re-evaluation.",
        ]
    )


def _unknown_tooth(f: Finding, rng: random.Random) -> str:
    where = f"the {f.region} region" if f.region else "one region"
    name = _name(f)
    if f.hedged:
        return (
            f"Possible {name.removeprefix('a ').removeprefix('an ')} is seen in {where}; the tooth number is unclear."
        )
    return rng.choice(
        [
            f"{_cap(name)} is observed in {where}; the tooth number is unclear.",
            f"In {where}, {name} is seen on a tooth whose number is unclear.",
        ]
    )


def _unnumbered(findings: Sequence[Finding]) -> list[str]:
    """Findings of an image whose teeth were not numbered (no tooth labels): per kind, how many in
    which region, said once (a DC1000 X-ray has ten carious lesions, not ten sentences)."""
    by_kind: dict[tuple[Category, str | None, bool], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for f in findings:
        by_kind[(f.category, f.lesion_type, f.hedged)][f.region or "unknown"] += 1
    out = []
    for (category, lesion, hedged), regions in by_kind.items():
        total = sum(regions.values())
        single = _name(Finding(category, 1.0, lesion_type=lesion)).removeprefix("a ").removeprefix("an ")
        where = sorted(regions.items())
        seen = "suspected" if hedged else "observed"
        if total == 1:
            out.append(f"{_cap(single)} is {seen} in the {where[0][0]} region.")
            continue
        many = PLURAL[category]
        verb = "is" if many.endswith("caries") else "are"
        out.append(f"{'Possible ' + many if hedged else _cap(many)} {verb} {seen} at {total} sites: "
                   + join_words([f"{n} in the {r} region" for r, n in where]) + ".")
    return out


def _unknown_tooth_sentences(facts: Facts, findings: Sequence[Finding], rng: random.Random) -> list[str]:
    if facts.is_assessed(Category.TOOTH):
        return [_unknown_tooth(f, rng) for f in findings]
    return _unnumbered(findings)


def pathology_sentences(facts: Facts, rng: random.Random) -> list[str]:
    tooth_level = [f for f in facts.pathology() if f.tooth_id is not None and f.category != Category.BONE_LOSS]
    out = [
        _definite_pathology(name, teeth, rng)
        for name, teeth in _grouped([f for f in tooth_level if not f.hedged]).items()
    ]
    out += [_hedged_finding(f, rng) for f in tooth_level if f.hedged]
    out += _unknown_tooth_sentences(
        facts, [f for f in facts.pathology() if f.tooth_id is None and f.category != Category.BONE_LOSS], rng
    )
    return out


def _assessed_of(facts: Facts, kinds: frozenset[Category] | set[Category]) -> list[Category]:
    return [c for c in sorted_categories(kinds) if facts.is_assessed(c)]


def _none_found(categories: Sequence[Category], verb: str = "identified") -> str:
    """'No caries is identified.' / 'No fillings or implants are present.' for the assessed categories."""
    names = [PLURAL[c] for c in categories]
    words = names[0] if len(names) == 1 else ", ".join(names[:-1]) + f" or {names[-1]}"
    plural = len(names) > 1 or not names[0].endswith(("caries", "bone loss"))
    return f"No {words} {'are' if plural else 'is'} {verb}."


NOT_ASSESSED = "Not assessed in this review."


def no_pathology_sentence(facts: Facts, rng: random.Random) -> str:
    """What to say when no pathological finding is on the teeth: as much as was assessed, no more."""
    if may_state("no_pathology", facts.assessed):
        return rng.choice(
            [
                "No caries, periapical lesions or other pathological findings are identified.",
                "No pathological findings are identified on the teeth.",
            ]
        )
    assessed = _assessed_of(facts, STATEMENT_NEEDS["no_pathology"])
    return _none_found(assessed) if assessed else NOT_ASSESSED


def _no_pathology_answer(facts: Facts, rng: random.Random) -> str:
    return (
        "No pathological findings are identified on the teeth."
        if may_state("no_pathology", facts.assessed)
        else no_pathology_sentence(facts, rng)
    )


def no_treatment_sentence(facts: Facts) -> str:
    if may_state("no_treatment", facts.assessed):
        return "No historical treatments are present."
    assessed = _assessed_of(facts, TREATMENTS)
    return _none_found(assessed, "present") if assessed else NOT_ASSESSED


def treatment_sentences(facts: Facts, rng: random.Random) -> list[str]:
    per_tooth: dict[int, list[str]] = defaultdict(list)
    out = _unknown_tooth_sentences(facts, [f for f in facts.treatments() if f.tooth_id is None], rng)
    for f in facts.treatments():
        if f.tooth_id is None:
            continue
        elif f.hedged:
            out.append(f"{_cap(f'tooth {f.tooth_id}')} possibly has {_name(f)}.")
        elif _name(f) not in per_tooth[f.tooth_id]:
            per_tooth[f.tooth_id].append(_name(f))
    definite = []
    for tooth, names in sorted(per_tooth.items()):
        things = names[0] if len(names) == 1 else ", ".join(names[:-1]) + f" and {names[-1]}"
        definite.append(
            rng.choice(
                [
                    f"Tooth {tooth} has {things}.",
                    f"{_cap(things)} {'is' if len(names) == 1 else 'are'} present on tooth {tooth}.",
                ]
            )
        )
    return definite + out


JAW_NOT_ASSESSED = (
    "Jaw-level structures (bone levels, mandibular canals, maxillary sinuses) were not assessed in this review."
)


def jaw_sentences(facts: Facts, rng: random.Random) -> list[str]:
    if not any(facts.is_assessed(c) for c in STATEMENT_NEEDS["jaw"]):
        return [JAW_NOT_ASSESSED]
    out = []
    bone = facts.of(Category.BONE_LOSS)
    for f in bone:
        where = f"the {f.region} jaw" if f.region in ("upper", "lower") else "the alveolar bone"
        if f.hedged:
            out.append(
                rng.choice(
                    [
                        f"Possible bone loss is suspected in {where}; clinical re-evaluation is suggested.",
                        f"Bone loss in {where} is suspected.",
                    ]
                )
            )
        else:
            out.append(rng.choice([f"Bone loss is observed in {where}.", f"There is evident bone loss in {where}."]))
    if not bone and facts.is_assessed(Category.BONE_LOSS):
        out.append(rng.choice(["No significant bone loss is evident.", "Alveolar bone levels show no bone loss."]))
    canals = len(facts.of(Category.MANDIBULAR_CANAL))
    sinuses = len(facts.of(Category.MAXILLARY_SINUS))
    if facts.is_assessed(Category.MANDIBULAR_CANAL):
        out.append(
            "Both mandibular canals are visualized." if canals >= 2
            else "One mandibular canal is visualized." if canals == 1
            else "The mandibular canals are not clearly visualized."
        )
    if facts.is_assessed(Category.MAXILLARY_SINUS):
        out.append(
            "Both maxillary sinuses are visible." if sinuses >= 2
            else "One maxillary sinus is visible." if sinuses == 1
            else "The maxillary sinuses are not clearly delineated."
        )
    return out


def recommendation_sentences(facts: Facts, rng: random.Random) -> list[str]:
    definite = [f for f in facts.pathology() if f.tooth_id is not None and not f.hedged]
    by_cat: dict[Category, list[int]] = defaultdict(list)
    for f in definite:
        by_cat[f.category].append(f.tooth_id)  # type: ignore[arg-type]
    out = []
    if by_cat.get(Category.CARIES):
        out.append(
            rng.choice(
                [
                    f"Restorative treatment of {teeth_phrase(by_cat[Category.CARIES])} is recommended.",
                    f"{_cap(teeth_phrase(by_cat[Category.CARIES]))} would benefit from restorations.",
                ]
            )
        )
    endo = sorted(set(by_cat.get(Category.DEEP_CARIES, []) + by_cat.get(Category.PERIAPICAL_LESION, [])))
    if endo:
        out.append(
            rng.choice(
                [
                    f"Endodontic evaluation of {teeth_phrase(endo)} is recommended.",
                    f"{_cap(teeth_phrase(endo))} should be assessed for endodontic therapy.",
                ]
            )
        )
    if by_cat.get(Category.RETAINED_ROOT):
        out.append(
            f"Extraction of the remaining root at {teeth_phrase(by_cat[Category.RETAINED_ROOT])} should be considered."
        )
    if by_cat.get(Category.IMPACTED_TOOTH):
        out.append(f"A surgical consultation for {teeth_phrase(by_cat[Category.IMPACTED_TOOTH])} is advised.")
    hedged = sorted({f.tooth_id for f in facts.findings if f.tooth_id is not None and f.hedged and f.category in NAMES})
    if hedged:
        out.append(
            rng.choice(
                [
                    f"Clinical re-evaluation of {teeth_phrase(hedged)} is suggested to confirm the suspected findings.",
                    f"The suspected findings on {teeth_phrase(hedged)} should be confirmed clinically.",
                ]
            )
        )
    unnumbered = [
        f
        for f in facts.pathology()
        if f.tooth_id is None and not f.hedged and f.category in (Category.CARIES, Category.DEEP_CARIES)
    ]
    if unnumbered and not facts.is_assessed(Category.TOOTH):
        out.append(
            "The carious lesions should be located on the teeth at a clinical examination and restored as needed."
        )
    if facts.of(Category.BONE_LOSS):
        out.append("A periodontal assessment is recommended.")
    for kind, tooth, _ in facts.recommendations:
        if kind == "extraction":
            out.append(f"Extraction of tooth {tooth} should be considered, as its opposing tooth is absent.")
    if not out:
        if may_state("no_pathology", facts.assessed):
            out.append(
                rng.choice(
                    [
                        "No active disease requiring treatment is identified; routine dental care is advised.",
                        "Routine preventive dental care is advised.",
                    ]
                )
            )
        elif _assessed_of(facts, STATEMENT_NEEDS["no_pathology"]):
            out.append("No treatment is indicated for the findings assessed; a clinical examination covers the rest.")
        else:
            out.append(
                "Pathology was not assessed, so this review supports no treatment recommendation; a clinical "
                "examination is advised."
            )
    return out


def summary_sentence(facts: Facts, rng: random.Random) -> str:
    main = _grouped(
        [
            f
            for f in facts.pathology()
            if f.tooth_id is not None and not f.hedged and f.category != Category.IMPACTED_TOOTH
        ]
    )
    parts = [f"{name} on {teeth_phrase(t)}" for name, t in main.items()]
    regions: dict[str, set[str]] = defaultdict(set)
    for f in facts.pathology():
        if f.tooth_id is None and not f.hedged and f.category not in (Category.IMPACTED_TOOTH, Category.BONE_LOSS):
            regions[_name(f).removeprefix("a ").removeprefix("an ")].add(f.region or "unknown")
    parts += [
        f"{name} in the {join_words(sorted(r))} {'region' if len(r) == 1 else 'regions'}" for name, r in regions.items()
    ]
    if not parts:
        # impaction and suspected findings are described above: the summary denies only definite others
        impacted = sorted(
            {f.tooth_id for f in facts.of(Category.IMPACTED_TOOTH) if f.tooth_id is not None and not f.hedged}
        )
        apart = f"apart from the impaction of {teeth_phrase(impacted)}, " if impacted else ""
        if may_state("no_pathology", facts.assessed):
            return rng.choice([f"In summary, {apart}no definite pathological findings are seen on the teeth.",
                               f"Overall, {apart}the dentition shows no definite pathology."])
        assessed = _assessed_of(facts, STATEMENT_NEEDS["no_pathology"])
        if assessed:
            return f"In summary, {apart}no definite " + _none_found(assessed, "seen")[3:]
        return _summary_without_pathology(facts)
    joined = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + f" and {parts[-1]}"
    return rng.choice([f"In summary, the main findings are {joined}.", f"Overall, the radiograph shows {joined}."])


def _summary_without_pathology(facts: Facts) -> str:
    """The summary of a review that assessed no pathology: what it did find, and that pathology was not assessed."""
    numbered = facts.is_assessed(Category.TOOTH)
    found: dict[Category, set] = defaultdict(set)
    for k, f in enumerate(t for t in facts.treatments() if not t.hedged):  # suspected ones are worded as such above
        found[f.category].add(f.tooth_id if numbered and f.tooth_id is not None else ("site", k))
    if found:
        units = ("tooth", "teeth") if numbered else ("site", "sites")
        listed = join_words(
            [f"{PLURAL[c]} ({len(found[c])} {units[len(found[c]) > 1]})" for c in sorted_categories(found)]
        )
        return f"In summary, previous dental work is present: {listed}; pathology was not assessed."
    if numbered:
        return f"In summary, {len(facts.teeth)} teeth are charted; pathology was not assessed."
    return (
        f"In summary, this review is limited to {join_words([PLURAL[c] for c in sorted_categories(facts.assessed)])}."
    )


def general_condition(facts: Facts, rng: random.Random) -> list[str]:
    coverage = coverage_sentence(facts.assessed)
    out = [coverage] if coverage else []
    if facts.is_assessed(Category.TOOTH):
        n = len(facts.teeth)
        out.append(
            rng.choice(
                [
                    f"A total of {n} teeth are visible.",
                    f"{n} teeth are identified on the panoramic image.",
                    f"The image shows {n} teeth.",
                ]
            )
        )
        wisdom = facts.wisdom_present()
        if wisdom:
            listed = ", ".join(map(str, wisdom))
            out.append(
                rng.choice(
                    [
                        f"Wisdom teeth present: {listed}.",
                        f"The wisdom teeth {listed} are present."
                        if len(wisdom) > 1
                        else f"The wisdom tooth {listed} is present.",
                    ]
                )
            )
        else:
            out.append("No wisdom teeth are visible.")
    if facts.missing and facts.is_assessed(Category.MISSING_TOOTH):
        out.append(
            rng.choice(
                [
                    f"Missing teeth are noted in the region of {', '.join(map(str, facts.missing))}.",
                    f"There is a missing-tooth region at {', '.join(map(str, facts.missing))}.",
                ]
            )
        )
    return out


def write_report(facts: Facts, rng: random.Random) -> str:
    patho = pathology_sentences(facts, rng) or [no_pathology_sentence(facts, rng)]
    treat = treatment_sentences(facts, rng) or [no_treatment_sentence(facts)]
    lines = [
        "1. Teeth-Specific Observations",
        "General Condition: " + " ".join(general_condition(facts, rng)),
        "Pathological Findings: " + " ".join(patho),
        "Historical Interventions: " + " ".join(treat),
        "",
        "2. Jaw-Specific Observations",
        " ".join(jaw_sentences(facts, rng)),
        "",
        "3. Clinical Summary & Recommendations",
        summary_sentence(facts, rng) + " " + " ".join(recommendation_sentences(facts, rng)),
    ]
    return "\n".join(lines)


def write_audit(facts: Facts, report: str, rng: random.Random) -> dict:
    from mmoral_pipeline.generation.validators import validate_report

    problems = [v for v in validate_report(report, facts) if not v.passed]
    if not problems:
        return {"verdict": "no revision needed", "revised_report": None, "revision_log": []}
    return {
        "verdict": "revised",
        "revised_report": write_report(facts, rng),
        "revision_log": [f"{v.validator}: {v.reason}" for v in problems] + ["rewrote the report from the caption"],
    }


# --- report-based VQA ------------------------------------------------------------------------

TREATMENT_OPTIONS = ["Filling", "Crown", "Root canal treatment", "Implant", "Bridge"]
PATHO_OPTIONS = ["Caries", "Deep caries", "Periapical lesion", "Retained root", "Impacted tooth"]
_OPTION_OF = {
    Category.FILLING: "Filling",
    Category.CROWN: "Crown",
    Category.ROOT_CANAL_TREATMENT: "Root canal treatment",
    Category.IMPLANT: "Implant",
    Category.BRIDGE: "Bridge",
    Category.CARIES: "Caries",
    Category.DEEP_CARIES: "Deep caries",
    Category.PERIAPICAL_LESION: "Periapical lesion",
    Category.RETAINED_ROOT: "Retained root",
    Category.IMPACTED_TOOTH: "Impacted tooth",
}


def _neighbours(tooth: int, exclude: set[int], rng: random.Random) -> list[int]:
    """Plausible distractor tooth numbers: same quadrant neighbours, then the mirror tooth."""
    q, p = divmod(tooth, 10)
    cands = [q * 10 + p + d for d in (-1, 1, -2, 2, -3, 3) if 1 <= p + d <= 8]
    mirror = {1: 2, 2: 1, 3: 4, 4: 3}.get(q)
    if mirror:
        cands += [mirror * 10 + p, fdi.opposing(tooth) if fdi.is_valid_fdi(tooth) else tooth]
    cands = [c for c in dict.fromkeys(cands) if c not in exclude and c != tooth]
    return cands


def _closed(question: str, correct: str, distractors: list[str], dims: list[str], rng: random.Random) -> dict | None:
    opts = [correct] + [d for d in dict.fromkeys(distractors) if d.lower() != correct.lower()][:3]
    if len(opts) < 4:
        return None
    rng.shuffle(opts)
    return {
        "question": question,
        "options": opts,
        "answer": "ABCD"[opts.index(correct)],
        "answer_text": correct,
        "dimensions": dims,
    }


def vqa_candidates(facts: Facts, rng: random.Random) -> tuple[list[dict], list[dict]]:
    closed: list[dict] = []
    opened: list[dict] = []
    by_tooth = facts.categories_by_tooth()
    definite_tooth = [f for f in facts.findings if f.tooth_id is not None and not f.hedged and f.category in _OPTION_OF]
    # Which tooth shows <pathology>? (exactly one correct: distractors lack that finding)
    for f in [
        g
        for g in definite_tooth
        if g.category in (Category.CARIES, Category.DEEP_CARIES, Category.PERIAPICAL_LESION, Category.RETAINED_ROOT)
    ][:3]:
        related = (
            {f.category, Category.CARIES, Category.DEEP_CARIES}
            if f.category in (Category.CARIES, Category.DEEP_CARIES)
            else {f.category}
        )
        having = {t for t, cats in by_tooth.items() if related & set(cats)}
        others = _neighbours(f.tooth_id, having, rng)  # type: ignore[arg-type]
        item = _closed(
            f"Which tooth shows {PLAIN[f.category]}?",
            f"#{f.tooth_id}",
            [f"#{t}" for t in others],
            ["Teeth", "Patho"],
            rng,
        )
        if item:
            closed.append(item)
    # Which treatment is on tooth t? (teeth with exactly one definite treatment)
    treated: dict[int, set[Category]] = defaultdict(set)
    for f in facts.treatments():
        if f.tooth_id is not None:
            treated[f.tooth_id].add(f.category)
    singles = [(t, next(iter(c))) for t, c in sorted(treated.items()) if len(c) == 1]
    assessed_treatments = [
        _OPTION_OF[c] for c in sorted_categories(TREATMENTS) if facts.is_assessed(c)
    ]  # distractors deny these
    for t, c in singles[:2]:
        if any(f.hedged for f in facts.treatments() if f.tooth_id == t):
            continue
        correct = _OPTION_OF[c]
        item = _closed(
            f"Which historical treatment is present on tooth {t}?",
            correct,
            [o for o in assessed_treatments if o != correct],
            ["Teeth", "HisT"],
            rng,
        )
        if item:
            closed.append(item)
    # Which tooth has a <treatment>?
    for f in [
        g
        for g in definite_tooth
        if g.category in (Category.CROWN, Category.IMPLANT, Category.ROOT_CANAL_TREATMENT, Category.FILLING)
    ][:2]:
        having = {t for t, cats in by_tooth.items() if f.category in cats}
        item = _closed(
            f"Which tooth has {_name(f)}?",
            f"#{f.tooth_id}",
            [f"#{t}" for t in _neighbours(f.tooth_id, having, rng)],
            ["Teeth", "HisT"],
            rng,
        )  # type: ignore[arg-type]
        if item:
            closed.append(item)
    # Jaw questions
    bone_regions = {f.region for f in facts.of(Category.BONE_LOSS) if not f.hedged}
    hedged_bone = any(f.hedged for f in facts.of(Category.BONE_LOSS))
    if not hedged_bone and facts.is_assessed(Category.BONE_LOSS):
        correct = (
            "Both jaws"
            if {"upper", "lower"} <= bone_regions
            else "Upper jaw"
            if "upper" in bone_regions
            else "Lower jaw"
            if "lower" in bone_regions
            else "No bone loss is seen"
        )
        if bone_regions <= {"upper", "lower"}:
            closed.append(
                _closed(
                    "Where is bone loss observed?",
                    correct,
                    ["Upper jaw", "Lower jaw", "Both jaws", "No bone loss is seen"],
                    ["Jaw", "Patho"],
                    rng,
                )
            )  # type: ignore[arg-type]
    canals, sinuses = len(facts.of(Category.MANDIBULAR_CANAL)), len(facts.of(Category.MAXILLARY_SINUS))
    structures = [
        "Mandibular canals only",
        "Maxillary sinuses only",
        "Both mandibular canals and maxillary sinuses",
        "Neither",
    ]
    correct = (
        structures[2]
        if canals and sinuses
        else structures[0]
        if canals
        else structures[1]
        if sinuses
        else structures[3]
    )
    if facts.is_assessed(Category.MANDIBULAR_CANAL) and facts.is_assessed(Category.MAXILLARY_SINUS):
        closed.append(
            _closed("Which anatomical structures are visualized in the radiograph?", correct, structures, ["Jaw"], rng)
        )  # type: ignore[arg-type]
    # Recommendation for a definite finding
    rec_of = {
        Category.CARIES: "Restorative treatment",
        Category.DEEP_CARIES: "Endodontic evaluation",
        Category.PERIAPICAL_LESION: "Endodontic evaluation",
        Category.RETAINED_ROOT: "Extraction of the root remnant",
        Category.IMPACTED_TOOTH: "Surgical consultation",
    }
    recs = [f for f in definite_tooth if f.category in rec_of]
    if recs:
        f = rng.choice(recs)
        correct = rec_of[f.category]
        pool = [
            "Restorative treatment",
            "Endodontic evaluation",
            "Extraction of the root remnant",
            "Surgical consultation",
            "No treatment needed",
        ]
        closed.append(
            _closed(
                f"What is recommended for tooth {f.tooth_id} ({PLAIN[f.category]})?",
                correct,
                [p for p in pool if p != correct],
                ["Patho", "SumRec"],
                rng,
            )
        )  # type: ignore[arg-type]
    # Lesion type
    for f in [g for g in definite_tooth if g.category == Category.PERIAPICAL_LESION and g.lesion_type][:1]:
        types = ["Granuloma", "Cyst", "Abscess", "None of the above"]
        closed.append(
            _closed(
                f"What type of periapical lesion is seen on tooth {f.tooth_id}?",
                f.lesion_type.capitalize(),
                types,
                ["Teeth", "Patho"],
                rng,
            )
        )  # type: ignore[union-attr,arg-type]
    closed = [c for c in closed if c]

    # Open questions
    described = [t for t in sorted(by_tooth) if t in facts.teeth and by_tooth[t]]
    rng.shuffle(described)
    for t in described[:3]:
        fs = [f for f in facts.findings if f.tooth_id == t and f.category in NAMES]
        parts = [
            (f"suspected {_name(f).removeprefix('a ').removeprefix('an ')}" if f.hedged else _name(f))
            for f in sorted(fs, key=lambda f: f.hedged)
        ]
        if not parts:
            continue
        dims = (
            ["Teeth"]
            + (
                ["Patho"]
                if any(
                    f.category in NAMES
                    and f.category
                    not in (
                        Category.FILLING,
                        Category.CROWN,
                        Category.ROOT_CANAL_TREATMENT,
                        Category.IMPLANT,
                        Category.BRIDGE,
                    )
                    for f in fs
                )
                else []
            )
            + (["HisT"] if any(f in facts.treatments() for f in fs) else [])
        )
        parts = list(dict.fromkeys(parts))
        listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + f" and {parts[-1]}"
        opened.append(
            {"question": f"What is seen on tooth {t}?", "answer": f"Tooth {t} shows {listed}.", "dimensions": dims}
        )
    # Whole-topic questions only about what was assessed: their answers (also "none") are then grounded.
    patho = pathology_sentences(facts, rng)
    if _assessed_of(facts, STATEMENT_NEEDS["no_pathology"]):
        where = " on the teeth" if facts.is_assessed(Category.TOOTH) else ""  # no teeth labelled: no teeth presumed
        opened.append(
            {
                "question": f"Which pathological findings are present{where}?",
                "answer": " ".join(patho[:3]) if patho else _no_pathology_answer(facts, rng),
                "dimensions": ["Teeth", "Patho"],
            }
        )
    treat = treatment_sentences(facts, rng)
    if _assessed_of(facts, TREATMENTS):
        opened.append(
            {
                "question": "What historical dental treatments can be seen?",
                "answer": " ".join(treat[:3]) if treat else no_treatment_sentence(facts),
                "dimensions": ["Teeth", "HisT"],
            }
        )
    if any(facts.is_assessed(c) for c in STATEMENT_NEEDS["jaw"]):
        opened.append(
            {
                "question": "Describe the jaw bone and the anatomical structures.",
                "answer": " ".join(jaw_sentences(facts, rng)),
                "dimensions": ["Jaw"],
            }
        )
    if _assessed_of(facts, STATEMENT_NEEDS["no_pathology"]) or facts.recommendations:
        opened.append(
            {
                "question": "What are the main recommendations based on this radiograph?",
                "answer": " ".join(recommendation_sentences(facts, rng)[:2]),
                "dimensions": ["SumRec"],
            }
        )
    if facts.is_assessed(Category.TOOTH):
        wisdom = facts.wisdom_present()
        opened.append(
            {
                "question": "Which wisdom teeth are present?",
                "answer": f"The wisdom teeth {', '.join(map(str, wisdom))} are present."
                if wisdom
                else "No wisdom teeth are visible.",
                "dimensions": ["Teeth"],
            }
        )
    return closed, opened


def write_vqa(facts: Facts, rng: random.Random, n_closed: int, n_open: int) -> dict:
    closed, opened = vqa_candidates(facts, rng)
    return {"closed": closed[:n_closed], "open": opened[:n_open]}


def repair_vqa(facts: Facts, rng: random.Random, items: Sequence[dict], existing: Sequence[str]) -> dict:
    """Replacements for rejected items: as many closed/open items as were rejected, none asked already."""
    closed, opened = vqa_candidates(facts, rng)
    seen = set(existing)
    n_closed = sum(1 for it in items if it.get("kind") == "closed")
    return {"closed": [c for c in closed if c["question"] not in seen][:n_closed],
            "open": [o for o in opened if o["question"] not in seen][: len(items) - n_closed]}


# --- dialogue --------------------------------------------------------------------------------

def write_dialogue(facts: Facts, rng: random.Random, n_turns: int) -> dict:
    n_turns = max(8, min(12, n_turns - n_turns % 2))
    patho = pathology_sentences(facts, rng)
    treat = treatment_sentences(facts, rng)
    full = frozenset(Category) <= facts.assessed
    pairs = [
        (
            rng.choice(
                [
                    "Hello, I just had a panoramic X-ray. What does it show?",
                    "Hi doctor, could you explain my dental X-ray to me?",
                    "Good morning. What did you see on my X-ray?",
                ]
            ),
            " ".join(general_condition(facts, rng)) + " " + summary_sentence(facts, rng),
        ),
    ]
    # A topic the review did not assess is not discussed (nothing is known about it, either way).
    if _assessed_of(facts, STATEMENT_NEEDS["no_pathology"]):
        pairs.append(
            (
                rng.choice(
                    [
                        "Is anything wrong with my teeth?",
                        "Do I have any cavities or infections?",
                        "Are there problems I should know about?",
                    ]
                ),
                " ".join(patho)
                if patho
                else (
                    "I don't see any decay or infection on your teeth, which is good news."
                    if full
                    else no_pathology_sentence(facts, rng)
                ),
            )
        )
    if _assessed_of(facts, TREATMENTS):
        pairs.append(
            (
                rng.choice(
                    [
                        "What about the dental work I had done before?",
                        "Can you see my old fillings or crowns?",
                        "Does the X-ray show my previous treatments?",
                    ]
                )
                if full
                else "Does the X-ray show my previous dental work?",
                " ".join(treat)
                if treat
                else (
                    "I don't see any previous fillings, crowns or other dental work."
                    if full
                    else no_treatment_sentence(facts)
                ),
            )
        )
    if any(facts.is_assessed(c) for c in STATEMENT_NEEDS["jaw"]):
        pairs.append(
            (
                rng.choice(
                    ["And how does my jaw bone look?", "Is my jaw healthy?", "What about the bone around my teeth?"]
                ),
                " ".join(jaw_sentences(facts, rng)),
            )
        )
    pairs.append((rng.choice(["What should I do next?", "Do I need any treatment?", "What do you recommend?"]),
                  " ".join(recommendation_sentences(facts, rng)) + " Please discuss these points with your dentist."))
    if not full:
        pairs.append(("Was everything on my X-ray checked?",
                      f"{coverage_sentence(facts.assessed)} Your dentist will look at the rest when examining you."))
    pairs.append(
        (
            rng.choice(["Should I be worried?", "Is this serious?"]),
            "Most of what we see is common and manageable. Your dentist will examine you and confirm anything that is "
            "only suspected on the X-ray.",
        )
    )
    turns = []
    for q, a in pairs[: n_turns // 2 - 1]:
        turns += [{"role": "patient", "content": q}, {"role": "radiologist", "content": a}]
    turns += [
        {"role": "patient", "content": "Thank you for explaining it so clearly."},
        {
            "role": "radiologist",
            "content": "You're welcome. Take this report to your dentist, and feel free to ask if anything is unclear.",
        },
    ]
    return {"turns": turns[:n_turns]}


# --- the backend -----------------------------------------------------------------------------

def _facts_from_context(req: ChatRequest) -> Facts:
    if isinstance(req.context.get("facts"), Facts):  # the pipeline passes them along: no re-derivation
        return req.context["facts"]
    doc = req.context.get("attributes")
    if doc is None:
        raise ValueError("the offline backend needs ChatRequest.context['attributes'] (the attribute document)")
    attrs = doc if isinstance(doc, ImageAttributes) else ImageAttributes.model_validate(doc)
    return facts_of(attrs)


class OfflineBackend:
    """Deterministic writer; `seed` varies phrasing across otherwise equal requests."""

    name = "offline"

    def __init__(self, seed: int = 0):
        self.seed = seed
        self.model = OFFLINE_MODEL
        self.stats: dict[str, float] = defaultdict(float)

    def _rng(self, request_hash: str) -> random.Random:
        return random.Random(int(request_hash[:16], 16) ^ self.seed)

    def answer(self, req: ChatRequest, request_hash: str) -> str:
        facts = _facts_from_context(req)
        rng = self._rng(request_hash)
        kind = req.tag
        if kind == "report":
            return write_report(facts, rng)
        if kind == "audit":
            return json.dumps(write_audit(facts, req.context.get("report", ""), rng))
        if kind == "vqa_report":
            return json.dumps(
                write_vqa(facts, rng, int(req.context.get("n_closed", 6)), int(req.context.get("n_open", 6)))
            )
        if kind == "dialogue":
            return json.dumps(write_dialogue(facts, rng, int(req.context.get("n_turns", 10))))
        if kind == "repair":  # the audit send-back: write the rejected unit again from the attributes
            what = req.context.get("kind")
            if what == "report":
                return write_report(facts, rng)
            if what == "vqa":
                return json.dumps(repair_vqa(facts, rng, req.context.get("items", []), req.context.get("existing", [])))
            if what == "dialogue":
                return json.dumps(write_dialogue(facts, rng, int(req.context.get("n_turns", 10))))
        raise ValueError(f"the offline backend has no writer for request tag {kind!r}")

    def complete(
        self, requests: list[ChatRequest], on_result: Callable[[int, ChatResponse], None] | None = None
    ) -> list[ChatResponse]:
        out = []
        for i, req in enumerate(requests):
            h = req.request_hash(self.name, self.model)
            try:
                text, error = self.answer(req, h), None
            except (ValueError, KeyError) as exc:
                text, error = "", f"offline: {exc}"
            resp = ChatResponse(text=text, request_hash=h, backend=self.name, model=self.model, error=error)
            self.stats["requests_sent"] += 1
            if on_result is not None and error is None:
                on_result(i, resp)
            out.append(resp)
        return out
