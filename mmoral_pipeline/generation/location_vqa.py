"""Rule-based location and counting questions (no LLM), with answers checked against the attributes.

Pure functions, reused by the evaluation contributor for benchmark items:

- `build_rule_items(facts, rng, ...) -> list[RuleItem]`: location-closed ("which tooth is at
  point_2d [x, y]?", "where is tooth 36?", "what is inside box_2d [...]?"), location-open (answers
  are JSON lists of `{"box_2d": [x1, y1, x2, y2], "label": ...}` or `{"point_2d": [x, y], ...}`
  in the original image's pixels) and counting questions with distractors drawn from +-1..5, 0,
  32, half and double the true count ("None of the above" fills up when fewer than four distinct
  options exist).
- `verify_rule_item(item, facts) -> Verdict`: recomputes the answer from the attributes.
- Only assessed categories are asked about (`Facts.assessed`): a count needs what it counts
  labelled (`COUNT_NEEDS`; "how many teeth" needs tooth labels), and a distractor never names an
  unassessed category.
- `count_options(n, rng, cap)`: the counting distractor rule on its own.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, Field

from mmoral_pipeline.domain import fdi
from mmoral_pipeline.domain.coverage import asks_only_assessed
from mmoral_pipeline.domain.taxonomy import DISPLAY_NAMES, JAW_LEVEL, TREATMENTS, Category
from mmoral_pipeline.generation.facts import Facts
from mmoral_pipeline.generation.validators import LETTERS, Verdict, fail, ok

RULES_VERSION = "location-rules-v2"  # v2: only assessed categories (label coverage)
NONE_OF_THE_ABOVE = "None of the above"


class RuleItem(BaseModel):
    task_type: Literal["loc_closed", "loc_open", "count_closed"]
    builder: str
    question: str
    answer: str  # closed: the correct option's text; open: JSON
    options: list[str] | None = None
    answer_letter: str | None = None
    dimensions: list[str]
    fact: dict[str, Any] = Field(default_factory=dict)  # what the rule asserts; verify_rule_item re-checks it


def _ibox(b) -> list[int]:
    return [int(round(v)) for v in b]


def _inside(p, b) -> bool:
    return b[0] <= p[0] <= b[2] and b[1] <= p[1] <= b[3]


def dims_for(category: Category | None) -> list[str]:
    if category is None or category == Category.TOOTH:
        return ["Teeth"]
    if category in JAW_LEVEL:
        return ["Jaw"] if category != Category.BONE_LOSS else ["Jaw", "Patho"]
    if category in TREATMENTS:
        return ["Teeth", "HisT"]
    return ["Teeth", "Patho"]


def _closed(
    builder: str,
    task: str,
    question: str,
    correct: str,
    distractors: list[str],
    dims: list[str],
    fact: dict,
    rng: random.Random,
) -> RuleItem | None:
    seen = {correct.lower()}
    opts = [correct]
    for d in distractors:
        if d.lower() not in seen:
            seen.add(d.lower())
            opts.append(d)
        if len(opts) == 4:
            break
    if len(opts) < 4:
        return None
    rng.shuffle(opts)
    return RuleItem(task_type=task, builder=builder, question=question, answer=correct, options=opts,
                    answer_letter=LETTERS[opts.index(correct)], dimensions=dims, fact=fact)  # type: ignore[arg-type]


# --- counting --------------------------------------------------------------------------------

def count_options(n: int, rng: random.Random, cap: int = 32) -> list[str]:
    """Correct count first, then three distractors from +-1..5, 0, 32, half, double (within 0..cap).

    When fewer than three distinct distractors exist, "None of the above" fills the last place.
    """
    pool = [n + d for d in (1, -1, 2, -2, 3, -3, 4, -4, 5, -5)] + [0, 32, n // 2, n * 2]
    cands = [c for c in dict.fromkeys(pool) if 0 <= c <= cap and c != n]
    near = cands[:4]
    rng.shuffle(near)
    far = cands[4:]
    rng.shuffle(far)
    picks = (near[:2] + far[:1] + near[2:] + far[1:])[:3]
    opts = [str(n)] + [str(c) for c in picks]
    if len(opts) < 4:
        opts.append(NONE_OF_THE_ABOVE)
    while len(opts) < 4:  # cannot happen for cap >= 2, kept so the contract always holds
        opts.append(f"More than {cap}")
    return opts


# What a count needs assessed (a count of 0 is a claim too): tooth-level counts count teeth, so they
# also need the teeth labelled.
COUNT_NEEDS: dict[str, frozenset[Category]] = {
    "teeth": frozenset({Category.TOOTH}),
    "wisdom": frozenset({Category.TOOTH}),
    "missing": frozenset({Category.MISSING_TOOTH}),
    "caries": frozenset({Category.TOOTH, Category.CARIES}),
    "periapical_lesion": frozenset({Category.TOOTH, Category.PERIAPICAL_LESION}),
    "impacted_tooth": frozenset({Category.TOOTH, Category.IMPACTED_TOOTH}),
    "filling": frozenset({Category.TOOTH, Category.FILLING}),
    "crown": frozenset({Category.TOOTH, Category.CROWN}),
    "root_canal_treatment": frozenset({Category.TOOTH, Category.ROOT_CANAL_TREATMENT}),
    "implant": frozenset({Category.TOOTH, Category.IMPLANT}),
    "mandibular_canal": frozenset({Category.MANDIBULAR_CANAL}),
    "maxillary_sinus": frozenset({Category.MAXILLARY_SINUS}),
}


def count_answerable(target: str, facts: Facts) -> bool:
    """A count question is asked only when what it counts was assessed on the image."""
    return asks_only_assessed(COUNT_NEEDS[target], facts.assessed)


COUNT_TARGETS: dict[str, tuple[str, int, list[str]]] = {
    # target: (question, cap, dimensions)
    "teeth": ("How many teeth are visible in this panoramic X-ray?", 32, ["Teeth"]),
    "wisdom": ("How many wisdom teeth are present?", 4, ["Teeth"]),
    "missing": ("How many teeth are missing?", 32, ["Teeth"]),
    "caries": ("How many teeth show caries (including deep caries)?", 32, ["Teeth", "Patho"]),
    "periapical_lesion": ("How many teeth have a periapical lesion?", 32, ["Teeth", "Patho"]),
    "impacted_tooth": ("How many impacted teeth are there?", 32, ["Teeth", "Patho"]),
    "filling": ("How many teeth have fillings?", 32, ["Teeth", "HisT"]),
    "crown": ("How many teeth have crowns?", 32, ["Teeth", "HisT"]),
    "root_canal_treatment": ("How many teeth have had root canal treatment?", 32, ["Teeth", "HisT"]),
    "implant": ("How many implants are visible?", 32, ["Teeth", "HisT"]),
    "mandibular_canal": ("How many mandibular canals are visualized?", 2, ["Jaw"]),
    "maxillary_sinus": ("How many maxillary sinuses are visualized?", 2, ["Jaw"]),
}


def true_count(target: str, facts: Facts) -> int:
    if target == "teeth":
        return len(facts.teeth)
    if target == "wisdom":
        return len(facts.wisdom_present())
    if target == "missing":
        return len(facts.missing)
    if target == "caries":
        return len({f.tooth_id for f in facts.of(Category.CARIES, Category.DEEP_CARIES) if f.tooth_id is not None})
    cat = Category(target)
    if cat in (Category.MANDIBULAR_CANAL, Category.MAXILLARY_SINUS):
        return min(2, len(facts.of(cat)))
    return len({f.tooth_id for f in facts.of(cat) if f.tooth_id is not None})


def count_items(facts: Facts, rng: random.Random) -> list[RuleItem]:
    out = []
    for target, (question, cap, dims) in COUNT_TARGETS.items():
        if not count_answerable(target, facts):
            continue
        n = true_count(target, facts)
        if n > cap:
            continue
        opts = count_options(n, rng, cap)
        item = _closed(
            "count", "count_closed", question, opts[0], opts[1:], dims, {"kind": "count", "target": target, "n": n}, rng
        )
        if item:
            out.append(item)
    return out


# --- location --------------------------------------------------------------------------------

def _tooth_at_point(facts: Facts, tooth: int, rng: random.Random) -> RuleItem | None:
    p = [int(round(v)) for v in facts.centers[tooth]]
    others = [t for t in facts.teeth if t != tooth and not _inside(p, facts.teeth[t])]
    others.sort(key=lambda t: abs(facts.centers[t][0] - p[0]) + abs(facts.centers[t][1] - p[1]))
    if len(others) < 3:
        return None
    question = rng.choice(
        [f"Which tooth is located at point_2d {p}?", f"Which tooth contains the point {p} (x, y in pixels)?"]
    )
    return _closed("tooth_at_point", "loc_closed", question, f"#{tooth}", [f"#{t}" for t in others[:3]], ["Teeth"],
                   {"kind": "tooth_at_point", "point": p, "tooth": tooth, "options_teeth": [tooth] + others[:3]}, rng)


def _tooth_box_closed(facts: Facts, tooth: int, rng: random.Random) -> RuleItem | None:
    others = [t for t in facts.teeth if t != tooth]
    rng.shuffle(others)
    if len(others) < 3:
        return None
    box = json.dumps(_ibox(facts.teeth[tooth]))
    return _closed(
        "tooth_box",
        "loc_closed",
        f"Where is tooth {tooth}? Choose its box_2d [x1, y1, x2, y2].",
        box,
        [json.dumps(_ibox(facts.teeth[t])) for t in others[:3]],
        ["Teeth"],
        {"kind": "tooth_box", "tooth": tooth, "box": _ibox(facts.teeth[tooth])},
        rng,
    )


_FINDING_CHOICES = [Category.CARIES, Category.DEEP_CARIES, Category.PERIAPICAL_LESION, Category.RETAINED_ROOT,
                    Category.FILLING, Category.CROWN, Category.ROOT_CANAL_TREATMENT, Category.IMPLANT, Category.BRIDGE]


def _finding_in_box(facts: Facts, idx: int, rng: random.Random) -> RuleItem | None:
    f = facts.findings[idx]
    if f.category not in _FINDING_CHOICES:
        return None
    box = _ibox(f.bbox)
    # distractors: assessed categories with no finding of that kind at this box (an unassessed one
    # offered as wrong would deny it)
    same_box = {g.category for g in facts.findings if _ibox(g.bbox) == box}
    distract = [DISPLAY_NAMES[c].capitalize() for c in _FINDING_CHOICES if c not in same_box and facts.is_assessed(c)]
    rng.shuffle(distract)
    return _closed(
        "finding_in_box",
        "loc_closed",
        f"What is the finding inside box_2d {box}?",
        DISPLAY_NAMES[f.category].capitalize(),
        distract,
        dims_for(f.category),
        {"kind": "finding_in_box", "box": box, "category": f.category.value},
        rng,
    )


def _locate_tooth_open(facts: Facts, tooth: int, rng: random.Random) -> RuleItem:
    box = _ibox(facts.teeth[tooth])
    q = rng.choice(
        [
            f"Where is tooth {tooth} located? Answer with its box_2d.",
            f"Give the bounding box of tooth {tooth} ({fdi.tooth_name(tooth)}) as box_2d.",
        ]
    )
    return RuleItem(
        task_type="loc_open",
        builder="locate_tooth",
        question=q,
        answer=json.dumps([{"box_2d": box, "label": f"tooth {tooth}"}]),
        dimensions=["Teeth"],
        fact={"kind": "tooth_box", "tooth": tooth, "box": box},
    )


def _point_to_tooth_open(facts: Facts, tooth: int, rng: random.Random) -> RuleItem | None:
    p = [int(round(v)) for v in facts.centers[tooth]]
    if sum(_inside(p, b) for b in facts.teeth.values()) != 1:
        return None
    return RuleItem(
        task_type="loc_open",
        builder="point_to_tooth",
        question=f"Which tooth is at point_2d {p}? Answer with the point and the FDI number.",
        answer=json.dumps([{"point_2d": p, "label": str(tooth)}]),
        dimensions=["Teeth"],
        fact={"kind": "tooth_at_point", "point": p, "tooth": tooth, "options_teeth": [tooth]},
    )


def _locate_category_open(facts: Facts, cat: Category) -> RuleItem:
    entries = []
    for f in facts.of(cat):
        label = (
            (
                f"impacted tooth {f.tooth_id}"
                if cat == Category.IMPACTED_TOOTH
                else f"{DISPLAY_NAMES[cat]} on tooth {f.tooth_id}"
            )
            if f.tooth_id is not None
            else (f"{DISPLAY_NAMES[cat]} ({f.region})" if f.region else DISPLAY_NAMES[cat])
        )
        entries.append({"box_2d": _ibox(f.bbox), "label": label})
    entries.sort(key=lambda e: (e["box_2d"][0], e["box_2d"][1]))
    name = DISPLAY_NAMES[cat]
    q = f"Locate every {name} in this panoramic X-ray. Answer with a JSON list of box_2d and labels."
    return RuleItem(
        task_type="loc_open",
        builder="locate_category",
        question=q,
        answer=json.dumps(entries),
        dimensions=dims_for(cat),
        fact={"kind": "find_all", "category": cat.value, "boxes": sorted(e["box_2d"] for e in entries)},
    )


def _treatment_on_tooth_open(facts: Facts, idx: int) -> RuleItem | None:
    f = facts.findings[idx]
    if f.tooth_id is None or f.category not in TREATMENTS:
        return None
    same = [g for g in facts.findings if g.tooth_id == f.tooth_id and g.category == f.category]
    if len(same) != 1:
        return None
    name = DISPLAY_NAMES[f.category]
    box = _ibox(f.bbox)
    return RuleItem(
        task_type="loc_open",
        builder="treatment_on_tooth",
        question=f"Where is the {name} on tooth {f.tooth_id}? Answer with box_2d.",
        answer=json.dumps([{"box_2d": box, "label": f"{name} on tooth {f.tooth_id}"}]),
        dimensions=["Teeth", "HisT"],
        fact={"kind": "finding_box", "tooth": f.tooth_id, "category": f.category.value, "box": box},
    )


def _take(candidates, limit: int) -> list[RuleItem]:
    """The first `limit` non-None items of a lazy sequence of builders (builds no more than needed)."""
    out: list[RuleItem] = []
    for make in candidates:
        if len(out) >= limit:
            break
        item = make()
        if item is not None:
            out.append(item)
    return out


def build_rule_items(
    facts: Facts, rng: random.Random, max_loc_closed: int = 10, max_loc_open: int = 10, max_count: int = 8
) -> list[RuleItem]:
    teeth = sorted(facts.teeth)
    rng.shuffle(teeth)
    finding_idx = list(range(len(facts.findings)))
    rng.shuffle(finding_idx)
    cats = sorted({f.category for f in facts.findings if facts.is_assessed(f.category)}, key=lambda c: c.value)
    # findings first (rarer, more informative), then teeth; alternate the tooth question forms
    closed = _take(
        [lambda i=i: _finding_in_box(facts, i, rng) for i in finding_idx]
        + [
            (lambda t=t: _tooth_at_point(facts, t, rng))
            if k % 2 == 0
            else (lambda t=t: _tooth_box_closed(facts, t, rng))
            for k, t in enumerate(teeth)
        ],
        max_loc_closed,
    )
    opened = _take(
        [lambda c=c: _locate_category_open(facts, c) for c in cats]
        + [lambda i=i: _treatment_on_tooth_open(facts, i) for i in finding_idx]
        + [
            (lambda t=t: _locate_tooth_open(facts, t, rng))
            if k % 2 == 0
            else (lambda t=t: _point_to_tooth_open(facts, t, rng))
            for k, t in enumerate(teeth)
        ],
        max_loc_open,
    )
    counts = count_items(facts, rng)
    rng.shuffle(counts)
    counts.sort(key=lambda i: i.fact["n"] == 0)  # non-zero counts first: more informative
    return closed + opened + counts[:max_count]


# --- verification ----------------------------------------------------------------------------

def verify_rule_item(item: RuleItem, facts: Facts) -> Verdict:
    """Recompute the item's answer from the attributes ('rule_truth')."""
    name = "rule_truth"
    fact = item.fact
    kind = fact.get("kind")
    if kind == "count" and fact.get("target") in COUNT_NEEDS and not count_answerable(fact["target"], facts):
        return fail(name, f"counts {fact['target']}, which was not assessed on this image")
    checks: dict[str, Callable[[], str | None]] = {
        "count": lambda: (
            None
            if true_count(fact["target"], facts) == fact["n"]
            and (item.options is None or item.answer == str(fact["n"]))
            else f"count of {fact['target']} is {true_count(fact['target'], facts)}, item says {item.answer}"
        ),
        "tooth_at_point": lambda: _check_point(fact, facts),
        "tooth_box": lambda: (
            None
            if fact["tooth"] in facts.teeth
            and _ibox(facts.teeth[fact["tooth"]]) == fact["box"]
            and (item.options is None or item.answer == json.dumps(fact["box"]))
            else f"box of tooth {fact['tooth']} disagrees"
        ),
        "finding_in_box": lambda: (
            None
            if any(_ibox(f.bbox) == fact["box"] and f.category.value == fact["category"] for f in facts.findings)
            else f"no {fact['category']} at {fact['box']}"
        ),
        "finding_box": lambda: (
            None
            if any(
                f.tooth_id == fact["tooth"] and f.category.value == fact["category"] and _ibox(f.bbox) == fact["box"]
                for f in facts.findings
            )
            else "finding box disagrees"
        ),
        "find_all": lambda: (
            None
            if sorted(_ibox(f.bbox) for f in facts.of(Category(fact["category"]))) == fact["boxes"]
            else "finding boxes disagree"
        ),
    }
    if kind not in checks:
        return fail(name, f"unknown fact kind {kind!r}")
    problem = checks[kind]()
    if problem is None and item.options is not None and (
        item.answer_letter not in LETTERS or item.options[LETTERS.index(item.answer_letter)] != item.answer
    ):
        problem = "answer letter does not point at the correct option"
    return fail(name, problem) if problem else ok(name)


def _check_point(fact: dict, facts: Facts) -> str | None:
    tooth, p = fact["tooth"], fact["point"]
    if tooth not in facts.teeth or not _inside(p, facts.teeth[tooth]):
        return f"point {p} is not inside tooth {tooth}"
    clash = [t for t in fact.get("options_teeth", []) if t != tooth and t in facts.teeth and _inside(p, facts.teeth[t])]
    return f"point {p} is also inside option teeth {clash}" if clash else None
