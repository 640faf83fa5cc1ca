"""Benchmark items from held-out images: 5 closed-ended and 6 open-ended questions per image.

Pure functions over `ImageAttributes` (+ the generated report and closed VQA when there are some). Counting
and location questions come from the generation package's rules (`generation.location_vqa`: `count_options`,
`true_count`, `build_rule_items`), so the benchmark and the training data share one definition and
each such item carries a `RuleItem` that `verify_rule_item` re-checks against the attributes.

Closed-ended, as in the paper (report-based VQA + location-based rules): each image's pool (`closed_pool`)
holds its generated closed VQA (`vqa_items` rows, already through the generation validators, in the
families and wording the training data uses), the location rules, every counting target and the
benchmark's own builders (caries / treatment tooth, impacted wisdom teeth, bone level, recommendations;
distractors in the authors' style). `selection.select_closed` then picks 5 per image, 3 generated + 2
rules as the target, preferring questions whose answer differs between images, and balances the set so
that the question-wording prior fitted on the training split (`evaluation.prior`) scores chance on it.

Open-ended: 4 report-based (teeth, pathology, treatments, jaw or summary), 1 location-based (a
generation `loc_open` rule item: box_2d / point_2d JSON), 1 "write the report": its answer is the
image's generated report (source `report:<item_id>`; the summary question takes the report's section 3),
or a report composed from the attributes when the image has none (source `rule:write_report`).

Answer letters are balanced exactly across A-D: the chosen closed items are ranked by a content hash
and the i-th gets letter "ABCD"[i % 4] (deterministic, independent of input order).

Every item passes the benchmark's own rules (dimension labels, no follow-up scheduling) and the
generation validators (`generation.validators`: MCQ form, question text, open answer non-empty and
bounded, no scores or identity, tooth numbers grounded; `verify_rule_item` for rule items). Every closed
candidate is validated before the choice; `build_benchmark` returns the failures, and `rejection_counts`
counts them per validator.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from mmoral_pipeline.domain.attributes import Condition, ImageAttributes, ToothAttributes
from mmoral_pipeline.domain.coverage import asks_only_assessed
from mmoral_pipeline.domain.fdi import WISDOM_TEETH
from mmoral_pipeline.domain.taxonomy import DISPLAY_NAMES, Category
from mmoral_pipeline.evaluation.items import (
    CLOSED_DIMENSIONS,
    LETTERS,
    OPEN_DIMENSIONS,
    ClosedItem,
    OpenItem,
    split_labels,
)
from mmoral_pipeline.evaluation.prior import QuestionPrior, question_template
from mmoral_pipeline.evaluation.selection import BUILDER, GENERATED, RULE, Choice, SelectionReport, select_closed
from mmoral_pipeline.generation import claims
from mmoral_pipeline.generation import validators as gv
from mmoral_pipeline.generation.facts import Facts, facts_of
from mmoral_pipeline.generation.location_vqa import (
    COUNT_NEEDS,
    COUNT_TARGETS,
    NONE_OF_THE_ABOVE,
    RULES_VERSION,
    RuleItem,
    build_rule_items,
    count_options,
    true_count,
    verify_rule_item,
)

BUILD_VERSION = f"bench-build-v4+{RULES_VERSION}"
NONE_OF_ABOVE = NONE_OF_THE_ABOVE
REPORT_PHRASINGS: tuple[str, ...] = (
    "Write a complete radiology report for this panoramic dental X-ray.",
    "Please generate a structured diagnostic report for this panoramic radiograph.",
    "Describe all findings in this orthopantomogram as a three-section dental report.",
    "Act as a dental radiologist and write the report for this OPG.",
    "Provide a full report of this panoramic X-ray: teeth, jaw, and clinical summary with recommendations.",
)
TREATMENT_CATEGORIES = (
    Category.FILLING,
    Category.CROWN,
    Category.ROOT_CANAL_TREATMENT,
    Category.IMPLANT,
    Category.BRIDGE,
)
CARIES_CATEGORIES = (Category.CARIES, Category.DEEP_CARIES)


def _h(*parts: object) -> int:
    return int(hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()[:16], 16)


def _name(c: Category | str) -> str:
    return DISPLAY_NAMES.get(Category(c), str(c)) if c in Category._value2member_map_ else str(c)


def _teeth_with(attrs: ImageAttributes, cats: Sequence[Category]) -> list[ToothAttributes]:
    return [t for t in attrs.teeth if any(c.category in cats for c in t.conditions)]


def _join_teeth(ids: Sequence[int], hash_sign: bool = True) -> str:
    s = [f"#{i}" if hash_sign else str(i) for i in sorted(ids)]
    return s[0] if len(s) == 1 else ", ".join(s[:-1]) + " and " + s[-1]


def _neighbours(tooth: int, exclude: set[int]) -> list[int]:
    q, p = divmod(tooth, 10)
    cands = [q * 10 + p + d for d in (1, -1, 2, -2, 3)] + [((q % 4) + 1) * 10 + p, ((q + 1) % 4 + 1) * 10 + p]
    return [c for c in cands if 1 <= c % 10 <= 8 and 1 <= c // 10 <= 4 and c not in exclude]


@dataclass
class _Candidate:
    question: str
    correct: str
    distractors: list[str]
    category: str
    builder: str
    rule: RuleItem | None = None  # generation rule item behind it: re-checked by verify_rule_item
    slot: str = BUILDER  # selection.GENERATED / RULE / BUILDER: where the question comes from


def _count(a: ImageAttributes, facts: Facts, target: str) -> _Candidate | None:
    """A generation counting question (`COUNT_TARGETS`, `true_count`, `count_options`), seeded by the image."""
    if not asks_only_assessed(COUNT_NEEDS[target], facts.assessed):
        return None
    question, cap, dims = COUNT_TARGETS[target]
    n = true_count(target, facts)
    if n > cap:
        return None
    opts = count_options(n, random.Random(_h(a.image_id, "count", target)), cap)
    rule = RuleItem(task_type="count_closed", builder="count", question=question, answer=opts[0], options=opts,
                    answer_letter="A", dimensions=dims, fact={"kind": "count", "target": target, "n": n})
    return _Candidate(question, opts[0], opts[1:], ",".join(dims), f"count_{target}", rule, slot=RULE)


def _rule_items(a: ImageAttributes, facts: Facts, purpose: str, closed: int = 0, open_: int = 0) -> list[RuleItem]:
    """Generation location rule items for one image, from an rng seeded by the image and purpose."""
    return build_rule_items(
        facts, random.Random(_h(a.image_id, purpose)), max_loc_closed=closed, max_loc_open=open_, max_count=0
    )


# ---------------------------------------------------------------- closed-ended builders
# Each returns None when it does not apply to the image.

def _q_caries_tooth(a: ImageAttributes, facts: Facts) -> _Candidate | None:
    hit = _teeth_with(a, CARIES_CATEGORIES)
    if not hit:
        return None
    ids = {t.tooth_id for t in hit}
    target = min(ids)
    present = {t.tooth_id for t in a.teeth}
    pool = [n for n in _neighbours(target, ids) if n in present] + _neighbours(target, ids) + sorted(present - ids)
    distract = list(dict.fromkeys(pool))[:3]
    return _Candidate("Which of the following teeth shows caries?", f"#{target}", [f"#{d}" for d in distract],
                      "Teeth,Patho", "caries_tooth")


def _q_impacted_wisdom(a: ImageAttributes, facts: Facts) -> _Candidate | None:
    wisdom = [t for t in a.teeth if t.tooth_id in WISDOM_TEETH]
    if not wisdom:
        return None
    impacted = sorted(t.tooth_id for t in wisdom if t.wisdom_status == "impacted"
                      or any(c.category == Category.IMPACTED_TOOTH for c in t.conditions))
    correct = _join_teeth(impacted) if impacted else "None"
    subsets = [[18, 28], [38, 48], [48], [38], [18], [28], [18, 38], [28, 48], [18, 28, 38, 48]]
    distract = [_join_teeth(s) for s in subsets if sorted(s) != impacted][:3]
    if impacted and "None" not in distract:
        distract = distract[:2] + ["None"]
    return _Candidate(
        "Which of the following wisdom teeth are impacted?", correct, distract, "Teeth", "impacted_wisdom"
    )


def _q_treatment(a: ImageAttributes, facts: Facts) -> _Candidate | None:
    treated = _teeth_with(a, TREATMENT_CATEGORIES)
    if not treated:  # no treatment at all: the generation counting rule ("How many teeth have fillings?" -> 0)
        return _count(a, facts, "filling")
    t = treated[_h(a.image_id, "hist") % len(treated)]
    cat = next(c.category for c in t.conditions if c.category in TREATMENT_CATEGORIES)
    same = {x.tooth_id for x in treated if any(c.category == cat for c in x.conditions)}
    present = {x.tooth_id for x in a.teeth}
    pool = (
        [n for n in _neighbours(t.tooth_id, same) if n in present]
        + _neighbours(t.tooth_id, same)
        + sorted(present - same)
    )
    distract = [f"#{d}" for d in list(dict.fromkeys(pool))[:3]]
    return _Candidate(
        f"Which of the following teeth has a {_name(cat)}?", f"#{t.tooth_id}", distract, "Teeth,HisT", "treatment_tooth"
    )


def _q_bone_loss(a: ImageAttributes, facts: Facts) -> _Candidate:
    regions = {(c.region or "").lower() for c in a.jaw.bone_loss}
    if {"upper", "lower"} <= regions:
        correct = "Bone loss in both the upper and lower jaws"
    elif "upper" in regions:
        correct = "Bone loss in the upper jaw"
    elif "lower" in regions or a.jaw.bone_loss:
        correct = "Bone loss in the lower jaw"
    else:
        correct = "No bone loss"
    opts = [
        "No bone loss",
        "Bone loss in the upper jaw",
        "Bone loss in the lower jaw",
        "Bone loss in both the upper and lower jaws",
    ]
    return _Candidate("Which statement best describes the alveolar bone level in this panoramic X-ray?", correct,
                      [o for o in opts if o != correct], "Jaw", "bone_loss")


def _q_recommendation(a: ImageAttributes, facts: Facts) -> _Candidate | None:
    if a.recommendations:
        r = a.recommendations[0]
        nb = (
            [w for w in WISDOM_TEETH if w != r.tooth_id]
            if r.tooth_id in WISDOM_TEETH
            else _neighbours(r.tooth_id, {r.tooth_id})
        )
        return _Candidate("Which tooth is recommended for extraction?", f"#{r.tooth_id}", [f"#{x}" for x in nb[:3]],
                          "Teeth,SumRec", "recommend_extraction")
    lesion = _teeth_with(a, (Category.PERIAPICAL_LESION,))
    if lesion:
        return _Candidate(
            f"What is required for the periapical lesion at tooth {lesion[0].tooth_id}?",
            "Endodontic evaluation",
            ["Extraction", "Filling", "Crown restoration"],
            "Teeth,Patho,SumRec",
            "recommend_lesion",
        )
    caries = _teeth_with(a, CARIES_CATEGORIES)
    if caries:
        return _Candidate(f"What is the recommended management of the caries on tooth {caries[0].tooth_id}?",
                          "Restorative treatment", ["Extraction", "Implant placement", "No treatment needed"],
                          "Teeth,Patho,SumRec", "recommend_caries")
    return None


# Label coverage: what each builder's question (and its distractors) involves; it is asked only where
# all of it was assessed (`domain.coverage.asks_only_assessed`). Counts and location items check their own.
BUILDER_NEEDS: dict[str, frozenset[Category]] = {
    "_q_caries_tooth": frozenset({Category.TOOTH, Category.CARIES}),
    "_q_impacted_wisdom": frozenset({Category.TOOTH, Category.IMPACTED_TOOTH}),
    "_q_treatment": frozenset({Category.TOOTH}),
    "_q_bone_loss": frozenset({Category.BONE_LOSS}),
    "_q_recommendation": frozenset({Category.TOOTH}),
}
OPEN_NEEDS: dict[str, frozenset[Category]] = {  # open rows: their answers also say what is absent
    "teeth": frozenset({Category.TOOTH, Category.IMPACTED_TOOTH, Category.MISSING_TOOTH}),
    "patho": frozenset(
        {Category.TOOTH, Category.CARIES, Category.DEEP_CARIES, Category.PERIAPICAL_LESION, Category.RETAINED_ROOT}
    ),
    "hist": frozenset({Category.TOOTH, *TREATMENT_CATEGORIES}),
    "jaw": frozenset({Category.BONE_LOSS, Category.MANDIBULAR_CANAL, Category.MAXILLARY_SINUS}),
    "sumrec": frozenset(
        {Category.TOOTH, Category.CARIES, Category.DEEP_CARIES, Category.PERIAPICAL_LESION, Category.RETAINED_ROOT}
    ),
    "attribute_report": frozenset(Category),
}

# The benchmark's own builders: used where an image lacks generated VQA or rule questions that vary.
OWN_BUILDERS: tuple[Callable[[ImageAttributes, Facts], _Candidate | None], ...] = (
    _q_caries_tooth, _q_impacted_wisdom, _q_treatment, _q_bone_loss, _q_recommendation,
)
LOCATION_POOL = 6  # location questions per image offered to the selection


@dataclass
class GeneratedClosed:
    """One generated closed-ended VQA item of a held-out image (a `vqa_items` row of task type vqa_closed)."""

    item_id: str
    question: str
    options: list[str]
    answer_text: str
    dimensions: list[str]


def _from_generated(g: GeneratedClosed) -> _Candidate:
    return _Candidate(g.question, g.answer_text, [o for o in g.options if o != g.answer_text], ",".join(g.dimensions),
                      f"vqa:{g.item_id}", slot=GENERATED)


def closed_pool(
    a: ImageAttributes, facts: Facts | None = None, generated: Sequence[GeneratedClosed] = ()
) -> list[_Candidate]:
    """Every closed question one image offers, one per wording: its generated VQA (4 options, the answer among
    them), the generation's location rules and every counting target, then the benchmark's own builders."""
    facts = facts or facts_of(a)
    out: list[_Candidate] = [_from_generated(g) for g in sorted(generated, key=lambda g: g.item_id)
                             if g.answer_text in g.options and len(set(g.options)) == 4]
    for r in _rule_items(a, facts, "loc-closed", closed=LOCATION_POOL):
        out.append(
            _Candidate(
                r.question,
                r.answer,
                [o for o in r.options or [] if o != r.answer],
                ",".join(r.dimensions),
                f"loc_{r.builder}",
                r,
                slot=RULE,
            )
        )
    out += [c for c in (_count(a, facts, t) for t in COUNT_TARGETS) if c is not None]
    own = [b for b in OWN_BUILDERS if asks_only_assessed(BUILDER_NEEDS.get(b.__name__, ()), facts.assessed)]
    out += [c for c in (b(a, facts) for b in own) if c is not None]
    seen: set[str] = set()
    return [c for c in out if not (c.question in seen or seen.add(c.question))]  # type: ignore[func-returns-value]


def _pad_distractors(c: _Candidate) -> list[str]:
    out: list[str] = []
    for d in c.distractors:
        if d != c.correct and d not in out:
            out.append(d)
    while len(out) < 3:
        filler = (
            NONE_OF_ABOVE
            if NONE_OF_ABOVE not in out and c.correct != NONE_OF_ABOVE
            else f"Cannot be determined ({len(out)})"
        )
        out.append(filler)
    return out[:3]


def assign_letters(keys: Sequence[str]) -> list[str]:
    """Exactly balanced A-D letters by hash rank (counts differ by at most one)."""
    order = sorted(range(len(keys)), key=lambda i: (hashlib.sha256(keys[i].encode()).hexdigest(), i))
    letters = [""] * len(keys)
    for rank, i in enumerate(order):
        letters[i] = LETTERS[rank % 4]
    return letters


def _closed_item(a: ImageAttributes, c: _Candidate, letter: str, images_b64: Mapping[str, str] | None
                 ) -> tuple[ClosedItem, RuleItem | None]:
    """The item with the right answer at `letter`, and its rule item re-lettered to match (or None)."""
    key = f"{a.image_id}|{c.builder}|{c.question}"
    distract = _pad_distractors(c)
    pos = LETTERS.index(letter)
    options = distract[:pos] + [c.correct] + distract[pos:]
    item = ClosedItem(index=hashlib.sha256(key.encode()).hexdigest()[:12], question=c.question, options=options,
                      answer=letter, category=c.category, image_id=a.image_id, file_name=a.file_name,
                      image=(images_b64 or {}).get(a.image_id, ""),
                      source=c.builder if c.builder.startswith("vqa:") else f"rule:{c.builder}")
    rule = c.rule.model_copy(update={"options": options, "answer_letter": letter}) if c.rule is not None else None
    return item, rule


def _answer_spreads(pools: Mapping[str, Sequence[_Candidate]], prior: QuestionPrior | None) -> dict[str, float]:
    """Template -> spread of its answers: from the training split when the prior has enough answers for it, else
    across the held-out pool (a template seen on fewer than 3 images counts as varying)."""
    golds: dict[str, Counter] = {}
    for pool in pools.values():
        for c in pool:
            golds.setdefault(question_template(c.question), Counter())[c.correct] += 1
    spreads = {}
    for template, counts in golds.items():
        trained = prior.answer_spread(template) if prior is not None else None
        total = sum(counts.values())
        spreads[template] = (
            trained if trained is not None else (1.0 - max(counts.values()) / total if total >= 3 else 1.0)
        )
    return spreads


@dataclass
class ClosedBuild:
    items: list[tuple[ClosedItem, RuleItem | None]]
    rejected: list[dict]
    selection: SelectionReport


def _build_closed(attrs: Sequence[ImageAttributes], images_b64: Mapping[str, str] | None = None,
                  generated: Mapping[str, Sequence[GeneratedClosed]] | None = None, prior: QuestionPrior | None = None,
                  balance: bool = True) -> ClosedBuild:
    """Closed items (with their rule items): every candidate validated, the set chosen by `selection.select_closed`
    (against `prior` when given), letters balanced A-D over the chosen set."""
    rejected: list[dict] = []
    pools: dict[str, list[_Candidate]] = {}
    by_id = {a.image_id: a for a in attrs}
    for a in sorted(attrs, key=lambda x: x.image_id):
        valid = []
        for c in closed_pool(a, generated=(generated or {}).get(a.image_id, ())):
            item, rule = _closed_item(a, c, "A", None)
            problems = validate_closed_item(item, a, rule)
            if problems:
                rejected.append({"index": item.index, "image_id": a.image_id, "kind": "closed", "problems": problems})
            else:
                valid.append(c)
        pools[a.image_id] = valid
    spreads = _answer_spreads(pools, prior)
    choices: dict[str, list[Choice]] = {}
    by_key: dict[tuple[str, str], _Candidate] = {}
    for image_id, pool in pools.items():
        choices[image_id] = []
        for c in pool:
            right = (
                None
                if prior is None
                else prior.closed_choice(c.question, [c.correct, *_pad_distractors(c)]) == c.correct
            )
            choices[image_id].append(
                Choice(
                    image_id=image_id,
                    key=c.question,
                    slot=c.slot,
                    template=question_template(c.question),
                    spread=spreads[question_template(c.question)],
                    prior_right=right,
                    dims=frozenset(split_labels(c.category)),
                )
            )
            by_key[(image_id, c.question)] = c
    picked, report = select_closed(choices, balance=balance)
    chosen = [(by_id[i], by_key[(i, ch.key)]) for i in sorted(picked) for ch in picked[i]]
    letters = assign_letters([f"{a.image_id}|{c.builder}|{c.question}" for a, c in chosen])
    return ClosedBuild([_closed_item(a, c, letter, images_b64) for (a, c), letter in zip(chosen, letters, strict=True)],
                       rejected, report)


def build_closed(attrs: Sequence[ImageAttributes], images_b64: Mapping[str, str] | None = None,
                 generated: Mapping[str, Sequence[GeneratedClosed]] | None = None,
                 prior: QuestionPrior | None = None) -> list[ClosedItem]:
    return [it for it, _ in _build_closed(attrs, images_b64, generated, prior).items]


# ---------------------------------------------------------------- open-ended builders

def _sentence(s: str) -> str:
    return s[:1].upper() + s[1:]


def _hedge(c: Condition) -> str:
    return "suspicious for " if c.score < 0.8 else ""


def teeth_answer(a: ImageAttributes) -> str:
    present = sorted(t.tooth_id for t in a.teeth)
    parts = [f"{len(present)} teeth are visible."]
    wis = [t for t in a.teeth if t.tooth_id in WISDOM_TEETH]
    imp = sorted(
        t.tooth_id
        for t in wis
        if t.wisdom_status == "impacted" or any(c.category == Category.IMPACTED_TOOTH for c in t.conditions)
    )
    erupted = sorted(t.tooth_id for t in wis if t.tooth_id not in imp)
    if imp:
        parts.append(f"Wisdom teeth {_join_teeth(imp, False)} impacted.")
    if erupted:
        parts.append(f"Wisdom teeth {_join_teeth(erupted, False)} erupted.")
    missing = sorted({tid for m in a.missing_teeth for tid in m.teeth})
    if missing:
        parts.append(f"Missing teeth region: {_join_teeth(missing, False)}.")
    return " ".join(parts)


def _findings_sentences(a: ImageAttributes, cats: Sequence[Category]) -> list[str]:
    by: dict[tuple[Category, str, str], list[int]] = {}
    for t in a.teeth:
        for c in t.conditions:
            if c.category in cats:
                kind = f" ({c.type})" if c.type else ""
                by.setdefault((c.category, _hedge(c), kind), []).append(t.tooth_id)
    return [_sentence(f"{hedge}{_name(cat)}{kind} on tooth {_join_teeth(ids, False)}.")
            for (cat, hedge, kind), ids in sorted(by.items(), key=lambda kv: (kv[0][0].value, kv[0][1]))]


def patho_answer(a: ImageAttributes) -> str:
    s = _findings_sentences(
        a, (Category.CARIES, Category.DEEP_CARIES, Category.PERIAPICAL_LESION, Category.RETAINED_ROOT)
    )
    return " ".join(s) if s else "No caries, periapical lesions or retained roots are detected."


def hist_answer(a: ImageAttributes) -> str:
    s = _findings_sentences(a, TREATMENT_CATEGORIES)
    return " ".join(s) if s else "No historical treatments are present."


def jaw_answer(a: ImageAttributes) -> str:
    regions = sorted({(c.region or "lower") for c in a.jaw.bone_loss})
    parts = [f"Bone loss in the {' and '.join(regions)} jaw." if regions else "No bone loss is observed."]
    if a.jaw.mandibular_canal:
        parts.append(f"Mandibular canal visible ({len(a.jaw.mandibular_canal)}).")
    if a.jaw.maxillary_sinus:
        parts.append(f"Maxillary sinus visible ({len(a.jaw.maxillary_sinus)}).")
    return " ".join(parts)


def sumrec_answer(a: ImageAttributes) -> str:
    parts = [f"Extraction of tooth {r.tooth_id} is recommended ({r.reason})." for r in a.recommendations]
    parts += [
        f"Endodontic evaluation of tooth {t.tooth_id} for the periapical lesion."
        for t in _teeth_with(a, (Category.PERIAPICAL_LESION,))
    ]
    parts += [f"Restorative treatment of the caries on tooth {t.tooth_id}." for t in _teeth_with(a, CARIES_CATEGORIES)]
    return " ".join(parts) if parts else "No pathological findings requiring treatment; routine care."


def report_sections(report: str) -> dict[str, str]:
    """Section number ("1"-"3") -> body, by the one report-section parser (generation.claims)."""
    return {str(s.number): s.body.strip() for s in claims.report_sections(report or "") if s.number}


def attribute_report(a: ImageAttributes) -> str:
    """A three-section report composed from the attributes (used when no LLM report exists)."""
    return (f"1) Teeth-specific observations: {teeth_answer(a)} {patho_answer(a)} {hist_answer(a)}\n"
            f"2) Jaw-specific observations: {jaw_answer(a)}\n"
            f"3) Clinical summary and recommendations: {sumrec_answer(a)}")


def location_item(a: ImageAttributes, facts: Facts | None = None) -> tuple[str, str, str, RuleItem | None]:
    """(question, JSON answer, labels, rule item): one generation `loc_open` item picked by the image hash."""
    facts = facts or facts_of(a)
    items = _rule_items(a, facts, "loc-open", open_=10)
    if items:
        r = items[_h(a.image_id, "loc") % len(items)]
        return r.question, r.answer, ",".join(r.dimensions), r
    question, _cap, dims = COUNT_TARGETS["teeth"]  # no tooth and no finding: nothing to locate
    n = true_count("teeth", facts)
    return question, f"{n} teeth are visible.", ",".join(dims), RuleItem(
        task_type="count_closed", builder="count", question=question, answer=str(n), dimensions=dims,
        fact={"kind": "count", "target": "teeth", "n": n})


@dataclass
class GeneratedReport:
    """An image's generated report (a `reports` row that passed the generation validators)."""

    item_id: str
    text: str


def _build_open(attrs: Sequence[ImageAttributes], reports: Mapping[str, GeneratedReport | str] | None = None,
                images_b64: Mapping[str, str] | None = None) -> list[tuple[OpenItem, RuleItem | None]]:
    reports = reports or {}
    out: list[tuple[OpenItem, RuleItem | None]] = []
    for a in sorted(attrs, key=lambda x: x.image_id):
        given = reports.get(a.image_id)
        report = given if isinstance(given, GeneratedReport) else GeneratedReport("", given or "")
        from_report = f"report:{report.item_id}" if report.item_id else "report"
        sections = report_sections(report.text)
        summary = sections.get("3")
        fourth = (
            (
                "Describe the jaw-specific observations (bone level, mandibular canal, maxillary sinus).",
                jaw_answer(a),
                "Jaw",
                "rule:report",
            )
            if _h(a.image_id, "fourth") % 2 == 0
            else (
                "What is the clinical summary and what treatment is recommended?",
                summary or sumrec_answer(a),
                "SumRec",
                f"{from_report}#3" if summary else "rule:report",
            )
        )
        loc_q, loc_a, loc_cat, loc_rule = location_item(a)
        needs = [OPEN_NEEDS["teeth"], OPEN_NEEDS["patho"], OPEN_NEEDS["hist"], OPEN_NEEDS[fourth[2].lower()],
                 COUNT_NEEDS["teeth"] if loc_rule is not None and loc_rule.builder == "count" else frozenset(),
                 frozenset() if report.text else OPEN_NEEDS["attribute_report"]]
        rows = [
            (
                "report",
                "Describe the general condition of the teeth, including wisdom teeth and missing teeth.",
                teeth_answer(a),
                "Teeth",
                "rule:report",
                None,
            ),
            (
                "report",
                "What pathological findings are present in the teeth?",
                patho_answer(a),
                "Teeth,Patho",
                "rule:report",
                None,
            ),
            ("report", "What historical dental treatments are visible?", hist_answer(a), "HisT", "rule:report", None),
            ("report", *fourth, None),
            ("location", loc_q, loc_a, loc_cat, "rule:location", loc_rule),
            (
                "write_report",
                REPORT_PHRASINGS[_h(a.image_id, "phrase") % len(REPORT_PHRASINGS)],
                report.text or attribute_report(a),
                "Report",
                from_report if report.text else "rule:write_report",
                None,
            ),
        ]
        for (kind, q, ans, cat, source, rule), need in zip(rows, needs, strict=True):
            if not asks_only_assessed(need, a.assessed):  # label coverage: nothing about what was not looked for
                continue
            key = f"{a.image_id}|{kind}|{q}"
            item = OpenItem(index=hashlib.sha256(key.encode()).hexdigest()[:12], question=q, answer=ans, category=cat,
                            image_id=a.image_id, file_name=a.file_name, image=(images_b64 or {}).get(a.image_id, ""),
                            kind=kind, source=source)
            out.append((item, rule))
    return out


def build_open(attrs: Sequence[ImageAttributes], reports: Mapping[str, GeneratedReport | str] | None = None,
               images_b64: Mapping[str, str] | None = None) -> list[OpenItem]:
    return [it for it, _ in _build_open(attrs, reports, images_b64)]


def holdout_attributes(attrs: Sequence[ImageAttributes], fraction: float | None = None,
                       explicit: set[str] | frozenset[str] | None = None) -> list[ImageAttributes]:
    """Only the benchmark hold-out, by the dataset stage's one rule (`dataset.split.is_holdout`)."""
    held = set(holdout_ids([a.image_id for a in attrs], fraction, explicit))
    return [a for a in attrs if a.image_id in held]


def holdout_ids(image_ids: Sequence[str], fraction: float | None = None,
                explicit: set[str] | frozenset[str] | None = None) -> list[str]:
    """The ids of `image_ids` the benchmark hold-out rule picks (`dataset.split.is_holdout`)."""
    from mmoral_pipeline.dataset.split import DEFAULT_HOLDOUT_FRACTION, is_holdout

    frac = DEFAULT_HOLDOUT_FRACTION if fraction is None else fraction
    return [i for i in image_ids if is_holdout(i, frac, explicit)]


# ---------------------------------------------------------------- validation

FORBIDDEN = ("follow-up", "follow up", "schedule", "next visit")
_COORDS = re.compile(r"\[[\d\s.,\-]+\]")


def _without_coordinates(text: str) -> str:
    """Boxes/points are not tooth numbers (the grounding validator would read '650' as tooth 65)."""
    return _COORDS.sub(" ", text)


def _failures(verdicts: Sequence[gv.Verdict]) -> list[str]:
    return [f"{v.validator}: {v.reason}" for v in verdicts if not v.passed]


def benchmark_rules(it: ClosedItem | OpenItem) -> list[str]:
    """The benchmark's own rules (beyond the generation validators): MMOral-Bench dimension labels, no scheduling
    questions."""
    dims = CLOSED_DIMENSIONS if isinstance(it, ClosedItem) else OPEN_DIMENSIONS
    problems = []
    if not it.labels or any(label not in dims for label in it.labels):
        problems.append(f"benchmark_labels: bad labels {it.category!r}")
    if any(w in it.question.lower() for w in FORBIDDEN):
        problems.append("benchmark_no_followup: asks about follow-up scheduling")
    return problems


def generation_verdicts_closed(
    it: ClosedItem, attrs: ImageAttributes | None, rule: RuleItem | None = None
) -> list[str]:
    """The generation validators on a closed item: MCQ form, question text, no scores/identity,
    grounded tooth numbers and, for a rule item, the answer recomputed from the attributes."""
    text = " ".join([it.question, *it.options])
    verdicts = [
        gv.mcq_form(it.options, it.answer, it.answer_text),
        gv.question_text(it.question),
        gv.no_scores_or_identity(text),
    ]
    if attrs is not None:
        facts = facts_of(attrs)
        # a count answer ("28") is no tooth number: only the question is checked then
        grounded = it.question if it.source.startswith("rule:count") else f"{it.question} {it.answer_text}"
        verdicts.append(gv.grounded_teeth(_without_coordinates(grounded), facts))
        if rule is not None:
            verdicts.append(verify_rule_item(rule, facts))
    elif rule is not None:
        verdicts.append(gv.fail("rule_truth", "no attributes to check the rule item against"))
    return _failures(verdicts)


def generation_verdicts_open(it: OpenItem, attrs: ImageAttributes | None, rule: RuleItem | None = None) -> list[str]:
    """The generation validators on an open item: answer non-empty and bounded, question text, no
    scores/identity, grounded tooth numbers and, for a rule item, the answer recomputed from the attributes."""
    limit = gv.JSON_ANSWER_MAX_CHARS if it.kind in ("write_report", "location") else gv.OPEN_ANSWER_MAX_CHARS
    verdicts = [gv.open_answer(it.answer, max_chars=limit), gv.question_text(it.question),
                gv.no_scores_or_identity(f"{it.question} {it.answer}")]
    if attrs is not None:
        facts = facts_of(attrs)
        verdicts.append(gv.grounded_teeth(_without_coordinates(it.answer), facts))
        if rule is not None:
            verdicts.append(verify_rule_item(rule, facts))
    elif rule is not None:
        verdicts.append(gv.fail("rule_truth", "no attributes to check the rule item against"))
    return _failures(verdicts)


def validate_closed_item(
    it: ClosedItem, attrs: ImageAttributes | None = None, rule: RuleItem | None = None
) -> list[str]:
    """Every problem of a closed item ("validator: reason"): benchmark rules + generation validators."""
    return benchmark_rules(it) + generation_verdicts_closed(it, attrs, rule)


def validate_open_item(it: OpenItem, attrs: ImageAttributes | None = None, rule: RuleItem | None = None) -> list[str]:
    return benchmark_rules(it) + generation_verdicts_open(it, attrs, rule)


def rejection_counts(rejected: Sequence[Mapping]) -> dict[str, int]:
    """Failed checks per validator name over `build_benchmark`'s rejected rows (an item can fail several)."""
    counts = Counter(p.split(":", 1)[0] for row in rejected for p in row["problems"])
    return dict(sorted(counts.items()))


@dataclass
class BenchmarkBuild:
    closed: list[ClosedItem]
    open: list[OpenItem]
    rejected: list[dict]  # {index, image_id, kind, problems}: closed candidates and open items that failed validation
    selection: SelectionReport


def build_benchmark_items(attrs: Sequence[ImageAttributes], reports: Mapping[str, GeneratedReport | str] | None = None,
                          images_b64: Mapping[str, str] | None = None,
                          generated: Mapping[str, Sequence[GeneratedClosed]] | None = None,
                          prior: QuestionPrior | None = None, balance: bool = True) -> BenchmarkBuild:
    """Held-out images' attributes (+ their reports and generated closed VQA by image id, the question-wording prior
    of the training split) -> the benchmark, the rejected rows with reasons and what the closed selection did.

    Every item goes through `validate_closed_item` / `validate_open_item` (benchmark rules and the
    generation validators, rule items re-verified against the attributes); failures are rejected
    rows {index, image_id, kind, problems}, counted per validator by `rejection_counts`.
    """
    by_id = {a.image_id: a for a in attrs}
    closed = _build_closed(attrs, images_b64, generated, prior, balance)
    rejected = list(closed.rejected)
    keep_c, keep_o = [], []
    for it, rule in closed.items:
        p = validate_closed_item(it, by_id.get(it.image_id), rule)  # chosen from validated candidates: a re-check
        (
            rejected.append({"index": it.index, "image_id": it.image_id, "kind": "closed", "problems": p})
            if p
            else keep_c.append(it)
        )
    for it, rule in _build_open(attrs, reports, images_b64):
        p = validate_open_item(it, by_id.get(it.image_id), rule)
        (
            rejected.append({"index": it.index, "image_id": it.image_id, "kind": "open", "problems": p})
            if p
            else keep_o.append(it)
        )
    return BenchmarkBuild(keep_c, keep_o, rejected, closed.selection)


def build_benchmark(attrs: Sequence[ImageAttributes], reports: Mapping[str, GeneratedReport | str] | None = None,
                    images_b64: Mapping[str, str] | None = None,
                    generated: Mapping[str, Sequence[GeneratedClosed]] | None = None,
                    prior: QuestionPrior | None = None, balance: bool = True,
                    ) -> tuple[list[ClosedItem], list[OpenItem], list[dict]]:
    """`build_benchmark_items` as (closed, open, rejected)."""
    b = build_benchmark_items(attrs, reports, images_b64, generated, prior, balance)
    return b.closed, b.open, b.rejected
