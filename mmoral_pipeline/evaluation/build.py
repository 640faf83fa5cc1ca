"""Benchmark items from held-out images: 5 closed-ended and 6 open-ended questions per image.

Pure functions over `ImageAttributes` (+ the report text when there is one). Closed-ended
questions are rule-based (counts, locations, findings, treatments, jaw, recommendations) with
distractors in the authors' style (neighbouring teeth, related findings, counts +-1..5, 0, 32,
half, double, "None of the above" when too few distinct options exist). Open-ended: 4
report-based (from the report's facts: teeth, pathology, treatments, jaw or summary), 1
location-based (box of a finding or the tooth at a point), 1 "write the report" from a set of
phrasings. These builders are our own (the generation package had no rule-based builders when
this was written).

Answer letters are balanced exactly across A-D: all closed items are ranked by a content hash
and the i-th gets letter "ABCD"[i % 4] (deterministic, independent of input order).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from mmoral_pipeline.domain.attributes import Condition, ImageAttributes, ToothAttributes
from mmoral_pipeline.domain.fdi import WISDOM_TEETH
from mmoral_pipeline.domain.taxonomy import DISPLAY_NAMES, Category
from mmoral_pipeline.evaluation.items import CLOSED_DIMENSIONS, LETTERS, OPEN_DIMENSIONS, ClosedItem, OpenItem

BUILD_VERSION = "bench-build-v1"
NONE_OF_ABOVE = "None of the above"
CLOSED_PER_IMAGE = 5
REPORT_PHRASINGS: tuple[str, ...] = (
    "Write a complete radiology report for this panoramic dental X-ray.",
    "Please generate a structured diagnostic report for this panoramic radiograph.",
    "Describe all findings in this orthopantomogram as a three-section dental report.",
    "Act as a dental radiologist and write the report for this OPG.",
    "Provide a full report of this panoramic X-ray: teeth, jaw, and clinical summary with recommendations.",
)
TREATMENT_CATEGORIES = (Category.FILLING, Category.CROWN, Category.ROOT_CANAL_TREATMENT, Category.IMPLANT, Category.BRIDGE)
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


def count_distractors(n: int, key: str) -> list[str]:
    """Authors' counting distractors: +-1..5, 0, 32, half, double; three distinct, deterministic."""
    cands = [n + 1, n - 1, n + 2, n - 2, 0, 32, n // 2, n * 2, n + 3, n - 3, n + 4, n + 5]
    seen: list[int] = []
    for c in cands:
        if c >= 0 and c != n and c not in seen:
            seen.append(c)
    pool = seen[:6]
    rot = _h(key) % len(pool)
    picked = (pool[rot:] + pool[:rot])[:3]
    return [str(c) for c in sorted(picked)]


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


# ---------------------------------------------------------------- closed-ended builders
# Each returns None when it does not apply to the image.

def _q_count_teeth(a: ImageAttributes) -> _Candidate:
    n = len(a.teeth)
    return _Candidate("How many teeth are visualized in this panoramic radiograph?", str(n),
                      count_distractors(n, a.image_id + "teeth"), "Teeth", "count_teeth")


def _q_caries_tooth(a: ImageAttributes) -> _Candidate | None:
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


def _q_count_periapical(a: ImageAttributes) -> _Candidate:
    n = len(_teeth_with(a, (Category.PERIAPICAL_LESION,)))
    return _Candidate("How many teeth show periapical lesions in this panoramic X-ray?", str(n),
                      count_distractors(n, a.image_id + "pa"), "Patho", "count_periapical")


def _q_impacted_wisdom(a: ImageAttributes) -> _Candidate | None:
    wisdom = [t for t in a.teeth if t.tooth_id in WISDOM_TEETH]
    if not wisdom:
        return None
    impacted = sorted(t.tooth_id for t in wisdom if t.wisdom_status == "impacted"
                      or any(c.category == Category.IMPACTED_TOOTH for c in t.conditions))
    correct = _join_teeth(impacted) if impacted else "None"
    subsets = [[18, 28], [38, 48], [48], [38], [18], [28], [18, 38], [28, 48], [18, 28, 38, 48]]
    distract = [_join_teeth(s) for s in subsets if sorted(s) != impacted][: 3 if impacted else 3]
    if impacted and "None" not in distract:
        distract = distract[:2] + ["None"]
    return _Candidate("Which of the following wisdom teeth are impacted?", correct, distract, "Teeth", "impacted_wisdom")


def _tooth_findings(a: ImageAttributes) -> list[tuple[ToothAttributes, Condition]]:
    return [(t, c) for t in a.teeth for c in t.conditions if c.category != Category.IMPACTED_TOOTH]


def _q_region_finding(a: ImageAttributes) -> _Candidate | None:
    found = _tooth_findings(a)
    if not found:
        return None
    t, c = found[_h(a.image_id, "region") % len(found)]
    box = [round(v) for v in c.bbox]
    correct = f"{_name(c.category).capitalize()} on tooth {t.tooth_id}"
    other = [x for x in (Category.PERIAPICAL_LESION, Category.CARIES, Category.BONE_LOSS, Category.FILLING,
                         Category.CROWN, Category.RETAINED_ROOT) if x != c.category]
    nb = _neighbours(t.tooth_id, {t.tooth_id})
    distract = [f"{_name(other[0]).capitalize()} on tooth {t.tooth_id}",
                f"{_name(c.category).capitalize()} on tooth {nb[0]}",
                f"{_name(other[1]).capitalize()} on tooth {nb[1]}"]
    dims = "HisT" if c.category in TREATMENT_CATEGORIES else "Patho"
    return _Candidate(f"What finding is present in this region {box}?", correct, distract, dims, "region_finding")


def _q_treatment(a: ImageAttributes) -> _Candidate:
    treated = _teeth_with(a, TREATMENT_CATEGORIES)
    if not treated:
        n = 0
        return _Candidate("How many teeth show historical dental treatments (fillings, crowns, root canal treatment, implants)?",
                          str(n), count_distractors(n, a.image_id + "hist"), "HisT", "count_treatments")
    t = treated[_h(a.image_id, "hist") % len(treated)]
    cat = next(c.category for c in t.conditions if c.category in TREATMENT_CATEGORIES)
    same = {x.tooth_id for x in treated if any(c.category == cat for c in x.conditions)}
    present = {x.tooth_id for x in a.teeth}
    pool = [n for n in _neighbours(t.tooth_id, same) if n in present] + _neighbours(t.tooth_id, same) + sorted(present - same)
    distract = [f"#{d}" for d in list(dict.fromkeys(pool))[:3]]
    return _Candidate(f"Which of the following teeth has a {_name(cat)}?", f"#{t.tooth_id}", distract, "Teeth,HisT", "treatment_tooth")


def _q_bone_loss(a: ImageAttributes) -> _Candidate:
    regions = {(c.region or "").lower() for c in a.jaw.bone_loss}
    if {"upper", "lower"} <= regions:
        correct = "Bone loss in both the upper and lower jaws"
    elif "upper" in regions:
        correct = "Bone loss in the upper jaw"
    elif "lower" in regions or a.jaw.bone_loss:
        correct = "Bone loss in the lower jaw"
    else:
        correct = "No bone loss"
    opts = ["No bone loss", "Bone loss in the upper jaw", "Bone loss in the lower jaw", "Bone loss in both the upper and lower jaws"]
    return _Candidate("Which statement best describes the alveolar bone level in this panoramic X-ray?", correct,
                      [o for o in opts if o != correct], "Jaw", "bone_loss")


def _q_recommendation(a: ImageAttributes) -> _Candidate | None:
    if a.recommendations:
        r = a.recommendations[0]
        nb = [w for w in WISDOM_TEETH if w != r.tooth_id] if r.tooth_id in WISDOM_TEETH else _neighbours(r.tooth_id, {r.tooth_id})
        return _Candidate("Which tooth is recommended for extraction?", f"#{r.tooth_id}", [f"#{x}" for x in nb[:3]],
                          "Teeth,SumRec", "recommend_extraction")
    lesion = _teeth_with(a, (Category.PERIAPICAL_LESION,))
    if lesion:
        return _Candidate(f"What is required for the periapical lesion at tooth {lesion[0].tooth_id}?", "Endodontic evaluation",
                          ["Extraction", "Filling", "Crown restoration"], "Teeth,Patho,SumRec", "recommend_lesion")
    caries = _teeth_with(a, CARIES_CATEGORIES)
    if caries:
        return _Candidate(f"What is the recommended management of the caries on tooth {caries[0].tooth_id}?",
                          "Restorative treatment", ["Extraction", "Implant placement", "No treatment needed"],
                          "Teeth,Patho,SumRec", "recommend_caries")
    return None


def _q_count_missing(a: ImageAttributes) -> _Candidate:
    n = len({tid for m in a.missing_teeth for tid in m.teeth}) or len(a.missing_teeth)
    return _Candidate("How many missing teeth are identified in this panoramic X-ray?", str(n),
                      count_distractors(n, a.image_id + "missing"), "Teeth", "count_missing")


CLOSED_BUILDERS: tuple[Callable[[ImageAttributes], _Candidate | None], ...] = (
    _q_caries_tooth, _q_region_finding, _q_impacted_wisdom, _q_treatment, _q_bone_loss, _q_recommendation,
    _q_count_teeth, _q_count_periapical, _q_count_missing,
)


def _pad_distractors(c: _Candidate) -> list[str]:
    out: list[str] = []
    for d in c.distractors:
        if d != c.correct and d not in out:
            out.append(d)
    while len(out) < 3:
        filler = NONE_OF_ABOVE if NONE_OF_ABOVE not in out and c.correct != NONE_OF_ABOVE else f"Cannot be determined ({len(out)})"
        out.append(filler)
    return out[:3]


def closed_candidates(a: ImageAttributes) -> list[_Candidate]:
    """Five of the applicable builders: a window of the builder list starting at an image-hash
    offset, so the question mix (and dimension coverage) varies across images deterministically."""
    applicable = [c for c in (b(a) for b in CLOSED_BUILDERS) if c is not None]
    start = _h(a.image_id, "closed-mix") % len(applicable)
    rotated = applicable[start:] + applicable[:start]
    return rotated[:CLOSED_PER_IMAGE]


def assign_letters(keys: Sequence[str]) -> list[str]:
    """Exactly balanced A-D letters by hash rank (counts differ by at most one)."""
    order = sorted(range(len(keys)), key=lambda i: (hashlib.sha256(keys[i].encode()).hexdigest(), i))
    letters = [""] * len(keys)
    for rank, i in enumerate(order):
        letters[i] = LETTERS[rank % 4]
    return letters


def build_closed(attrs: Sequence[ImageAttributes], images_b64: Mapping[str, str] | None = None) -> list[ClosedItem]:
    cands = [(a, c) for a in sorted(attrs, key=lambda x: x.image_id) for c in closed_candidates(a)]
    keys = [f"{a.image_id}|{c.builder}|{c.question}" for a, c in cands]
    letters = assign_letters(keys)
    items = []
    for (a, c), key, letter in zip(cands, keys, letters, strict=True):
        distract = _pad_distractors(c)
        pos = LETTERS.index(letter)
        options = distract[:pos] + [c.correct] + distract[pos:]
        items.append(ClosedItem(index=hashlib.sha256(key.encode()).hexdigest()[:12], question=c.question, options=options,
                                answer=letter, category=c.category, image_id=a.image_id, file_name=a.file_name,
                                image=(images_b64 or {}).get(a.image_id, ""), source=f"rule:{c.builder}"))
    return items


# ---------------------------------------------------------------- open-ended builders

def _sentence(s: str) -> str:
    return s[:1].upper() + s[1:]


def _hedge(c: Condition) -> str:
    return "suspicious for " if c.score < 0.8 else ""


def teeth_answer(a: ImageAttributes) -> str:
    present = sorted(t.tooth_id for t in a.teeth)
    parts = [f"{len(present)} teeth are visible."]
    wis = [t for t in a.teeth if t.tooth_id in WISDOM_TEETH]
    imp = sorted(t.tooth_id for t in wis if t.wisdom_status == "impacted" or any(c.category == Category.IMPACTED_TOOTH for c in t.conditions))
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
    s = _findings_sentences(a, (Category.CARIES, Category.DEEP_CARIES, Category.PERIAPICAL_LESION, Category.RETAINED_ROOT))
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
    parts += [f"Endodontic evaluation of tooth {t.tooth_id} for the periapical lesion." for t in _teeth_with(a, (Category.PERIAPICAL_LESION,))]
    parts += [f"Restorative treatment of the caries on tooth {t.tooth_id}." for t in _teeth_with(a, CARIES_CATEGORIES)]
    return " ".join(parts) if parts else "No pathological findings requiring treatment; routine care."


def report_sections(report: str) -> dict[str, str]:
    """Split a three-section report on its numbered headings (1), 2), 3) or '1.' ...)."""
    parts = re.split(r"(?m)^\s*(?:\*\*)?\(?([123])[).]", report or "")
    out: dict[str, str] = {}
    for i in range(1, len(parts) - 1, 2):
        out[parts[i]] = parts[i + 1].strip()
    return out


def attribute_report(a: ImageAttributes) -> str:
    """A three-section report composed from the attributes (used when no LLM report exists)."""
    return (f"1) Teeth-specific observations: {teeth_answer(a)} {patho_answer(a)} {hist_answer(a)}\n"
            f"2) Jaw-specific observations: {jaw_answer(a)}\n"
            f"3) Clinical summary and recommendations: {sumrec_answer(a)}")


def location_item(a: ImageAttributes) -> tuple[str, str, str]:
    found = _tooth_findings(a)
    if found:
        t, c = found[_h(a.image_id, "loc") % len(found)]
        box = [round(v) for v in c.bbox]
        ans = json.dumps([{"box_2d": box, "label": _name(c.category)}])
        dims = "HisT" if c.category in TREATMENT_CATEGORIES else "Patho"
        return f"Where is the {_name(c.category)} on tooth {t.tooth_id}? Answer with a JSON list of box_2d.", ans, f"Teeth,{dims}"
    if a.teeth:
        t = a.teeth[_h(a.image_id, "loc") % len(a.teeth)]
        pt = [round(v) for v in t.center]
        return f"Which tooth is located at point {pt}? Answer with the FDI tooth number.", f"Tooth {t.tooth_id}", "Teeth"
    return "How many teeth are visible in this panoramic X-ray?", "0 teeth are visible.", "Teeth"


def build_open(attrs: Sequence[ImageAttributes], reports: Mapping[str, str] | None = None,
               images_b64: Mapping[str, str] | None = None) -> list[OpenItem]:
    reports = reports or {}
    items: list[OpenItem] = []
    for a in sorted(attrs, key=lambda x: x.image_id):
        report = reports.get(a.image_id) or ""
        sections = report_sections(report)
        fourth = ("Describe the jaw-specific observations (bone level, mandibular canal, maxillary sinus).", jaw_answer(a), "Jaw") \
            if _h(a.image_id, "fourth") % 2 == 0 else \
            ("What is the clinical summary and what treatment is recommended?", sections.get("3") or sumrec_answer(a), "SumRec")
        rows = [
            ("report", "Describe the general condition of the teeth, including wisdom teeth and missing teeth.", teeth_answer(a), "Teeth"),
            ("report", "What pathological findings are present in the teeth?", patho_answer(a), "Teeth,Patho"),
            ("report", "What historical dental treatments are visible?", hist_answer(a), "HisT"),
            ("report", *fourth),
            ("location", *location_item(a)),
            ("write_report", REPORT_PHRASINGS[_h(a.image_id, "phrase") % len(REPORT_PHRASINGS)],
             report or attribute_report(a), "Report"),
        ]
        for kind, q, ans, cat in rows:
            key = f"{a.image_id}|{kind}|{q}"
            items.append(OpenItem(index=hashlib.sha256(key.encode()).hexdigest()[:12], question=q, answer=ans, category=cat,
                                  image_id=a.image_id, file_name=a.file_name, image=(images_b64 or {}).get(a.image_id, ""),
                                  kind=kind, source="report" if (kind == "write_report" and report) else f"rule:{kind}"))
    return items


# ---------------------------------------------------------------- validation

FORBIDDEN = ("follow-up", "follow up", "schedule", "next visit")


def validate_closed_item(it: ClosedItem) -> list[str]:
    problems = []
    if len(set(it.options)) != 4:
        problems.append("options not distinct")
    if it.answer not in LETTERS:
        problems.append("answer not A-D")
    if not it.labels or any(label not in CLOSED_DIMENSIONS for label in it.labels):
        problems.append(f"bad labels {it.category!r}")
    if any(w in it.question.lower() for w in FORBIDDEN):
        problems.append("asks about follow-up scheduling")
    if not it.question.strip():
        problems.append("empty question")
    return problems


def validate_open_item(it: OpenItem) -> list[str]:
    problems = []
    if not it.answer.strip():
        problems.append("empty answer")
    if not it.labels or any(label not in OPEN_DIMENSIONS for label in it.labels):
        problems.append(f"bad labels {it.category!r}")
    if any(w in it.question.lower() for w in FORBIDDEN):
        problems.append("asks about follow-up scheduling")
    return problems


def holdout_attributes(attrs: Sequence[ImageAttributes], fraction: float | None = None,
                       explicit: set[str] | frozenset[str] | None = None) -> list[ImageAttributes]:
    """Only the benchmark hold-out, by the dataset stage's one rule (`dataset.split.is_holdout`)."""
    from mmoral_pipeline.dataset.split import DEFAULT_HOLDOUT_FRACTION, is_holdout

    frac = DEFAULT_HOLDOUT_FRACTION if fraction is None else fraction
    return [a for a in attrs if is_holdout(a.image_id, frac, explicit)]


_COORDS = re.compile(r"\[[\d\s.,\-]+\]")


def _without_coordinates(text: str) -> str:
    """Boxes/points are not tooth numbers (the grounding validator would read '650' as tooth 65)."""
    return _COORDS.sub(" ", text)


def generation_verdicts_closed(it: ClosedItem, attrs: ImageAttributes | None) -> list[str]:
    """The generation stage's validators on a closed item: MCQ form, question text, grounded answer teeth."""
    from mmoral_pipeline.generation import validators as gv
    from mmoral_pipeline.generation.facts import facts_of

    verdicts = [gv.mcq_form(it.options, it.answer, it.answer_text), gv.question_text(it.question)]
    if attrs is not None:  # a count answer ("28") is no tooth number: only the question is checked then
        text = it.question if it.source.startswith("rule:count") else f"{it.question} {it.answer_text}"
        verdicts.append(gv.grounded_teeth(_without_coordinates(text), facts_of(attrs)))
    return [f"{v.validator}: {v.reason}" for v in verdicts if not v.passed]


def generation_verdicts_open(it: OpenItem, attrs: ImageAttributes | None) -> list[str]:
    from mmoral_pipeline.generation import validators as gv
    from mmoral_pipeline.generation.facts import facts_of

    limit = gv.JSON_ANSWER_MAX_CHARS if it.kind in ("write_report", "location") else gv.OPEN_ANSWER_MAX_CHARS
    verdicts = [gv.open_answer(it.answer, max_chars=limit), gv.question_text(it.question)]
    if attrs is not None:
        verdicts.append(gv.grounded_teeth(_without_coordinates(it.answer), facts_of(attrs)))
    return [f"{v.validator}: {v.reason}" for v in verdicts if not v.passed]


def build_benchmark(attrs: Sequence[ImageAttributes], reports: Mapping[str, str] | None = None,
                    images_b64: Mapping[str, str] | None = None) -> tuple[list[ClosedItem], list[OpenItem], list[dict]]:
    """Held-out images' attributes -> (closed, open, rejected rows with reasons).

    Every item passes our benchmark rules (`validate_*_item`) and the generation stage's validators
    (MCQ form, question text, open-answer length, tooth numbers grounded in the attributes).
    """
    by_id = {a.image_id: a for a in attrs}
    closed = build_closed(attrs, images_b64)
    open_ = build_open(attrs, reports, images_b64)
    rejected: list[dict] = []
    keep_c, keep_o = [], []
    for it in closed:
        p = validate_closed_item(it) + generation_verdicts_closed(it, by_id.get(it.image_id))
        (rejected.append({"index": it.index, "image_id": it.image_id, "kind": "closed", "problems": p}) if p else keep_c.append(it))
    for it in open_:
        p = validate_open_item(it) + generation_verdicts_open(it, by_id.get(it.image_id))
        (rejected.append({"index": it.index, "image_id": it.image_id, "kind": "open", "problems": p}) if p else keep_o.append(it))
    return keep_c, keep_o, rejected
