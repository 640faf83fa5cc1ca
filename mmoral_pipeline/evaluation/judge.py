"""Open-ended judges: an offline claim-matching judge and an LLM judge on any ChatBackend.

Both score on the paper's grid {0.0, 0.1, ..., 1.0}. The offline judge gives nothing for nothing: it reads
the facts of the ground truth and of the prediction with the one claim extractor (`generation.claims`:
tooth or region, finding, present / suspected / absent / recommended, lesion type, count; tooth names and
paraphrases read as numbers and categories) plus boxes and points, and credits only facts matched:

- an empty answer, or one with no fact at all ("I don't know.", "xyz"): 0.0;
- an answer that contradicts the key (a finding the key denies, or denies one the key states, on the same
  tooth, region or the whole image; another count): 0.0;
- counting question: exact count 1.0, anything else 0.0 (binary, like the paper's "off by one = 0.0");
- else credit / max(key facts, answer facts), each key fact matched at most once by its best answer fact:
  the same fact 1.0; the right finding at another tooth or region 0.5 (the paper's "wrong tooth number =
  0.5"); a box by IoU (>= 0.9: 1.0, >= 0.75: 0.9, >= 0.5: 0.8), a point by distance (<= 10 px: 1.0, <= 30:
  0.9, <= 60: 0.8). So a missing fact earns nothing (the paper's "missing bone-loss clause = 0.5" on two
  facts) and padding with facts the key does not have lowers the score.

A key without any fact (free text: "routine care") is compared by token F1. Pure and
deterministic: the same inputs always give the same score.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from mmoral_pipeline.config import PROMPTS_DIR
from mmoral_pipeline.domain.geometry import iou
from mmoral_pipeline.domain.taxonomy import Category
from mmoral_pipeline.generation.backends import CachedBackend
from mmoral_pipeline.generation.cache import ResponseCache
from mmoral_pipeline.generation.claims import Claim, extract
from mmoral_pipeline.generation.types import ChatBackend, ChatRequest

GRID: tuple[float, ...] = tuple(round(i / 10, 1) for i in range(11))
OFFLINE_JUDGE_VERSION = "offline-claims-v3"


def snap(score: float) -> float:
    """Clip to [0, 1] and round to the 0.1 grid."""
    return round(min(1.0, max(0.0, float(score))) * 10) / 10


class JudgeScore(BaseModel):
    score: float
    judge: str  # "offline" or "<backend>:<model>"
    prompt_version: str
    cache_hit: bool = False
    parse_failed: bool = False
    rationale: str = ""
    repeat: int = 0


# ---------------------------------------------------------------- offline judge: facts from the claim extractor

_NUM = r"-?\d+(?:\.\d+)?"
_BOX = re.compile(rf"\[\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*\]")
_POINT = re.compile(rf"\[\s*({_NUM})\s*,\s*({_NUM})\s*\]")
_JSON_SYNTAX = re.compile(r"[{}\[\]\"']|\bbox_2d\b|\bpoint_2d\b|\blabel\b")
_COUNT_Q = re.compile(r"\bhow many\b|\bnumber of\b|\bcount\b", re.IGNORECASE)
_COUNT_WORDS = {w: i for i, w in enumerate(
    ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
     "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty"])}
_COUNT_WORDS["no"] = 0
_ASSERTS = ("present", "suspected")


class Located(BaseModel):
    """A box or a point of a location answer, with what its label says (claims and teeth, as comparable keys)."""

    kind: str  # "box" / "point"
    coords: list[float]
    label: frozenset = frozenset()


class Facts(BaseModel):
    """What one text states, as the offline judge compares it."""

    model_config = {"arbitrary_types_allowed": True}

    claims: list[Claim]
    located: list[Located]
    tokens: list[str]

    @property
    def size(self) -> int:
        return len(self.claims) + len(self.located)


def _text_claims(text: str, question: str | None) -> list[Claim]:
    """Claims of a text (not those said in a question), plus a bare mention of a tooth no claim covers ("It is tooth
    36."), as 'tooth 36 is there', all de-duplicated (a lesion with its type is one fact, not two)."""
    ex = extract(text, context=question)
    typed = {(_place(c), c.categories, c.polarity) for c in ex.claims if c.lesion_type}
    out: list[Claim] = []
    seen: set[tuple] = set()
    for c in ex.claims:
        if c.question or c.key() in seen or (not c.lesion_type and (_place(c), c.categories, c.polarity) in typed):
            continue  # asked, not stated; said twice; or the untyped twin of "periapical lesion (granuloma)"
        seen.add(c.key())
        out.append(c)
    claimed = {c.tooth for c in out}
    for m in ex.teeth:
        if m.valid and m.tooth not in claimed:
            claimed.add(m.tooth)
            out.append(
                Claim(
                    category=Category.TOOTH,
                    polarity="present",
                    span=m.span,
                    tooth=m.tooth,
                    text=text[m.span[0] : m.span[1]],
                )
            )
    return out


def _label_key(label: str) -> frozenset:
    return frozenset((_place(c), c.categories, c.polarity in _ASSERTS) for c in _text_claims(label, None))


def _located(text: str) -> list[Located] | None:
    """The entries of a box_2d / point_2d JSON answer, or None when the text is not one."""
    try:
        obj = json.loads(text)
    except (ValueError, TypeError):
        return None
    entries = obj if isinstance(obj, list) else [obj]
    out = []
    for e in entries:
        if not isinstance(e, dict):
            return None
        kind = "box" if "box_2d" in e else "point" if "point_2d" in e else None
        coords = e.get("box_2d") if kind == "box" else e.get("point_2d")
        if kind is None or not isinstance(coords, list) or len(coords) != (4 if kind == "box" else 2):
            return None
        try:
            out.append(
                Located(kind=kind, coords=[float(x) for x in coords], label=_label_key(str(e.get("label") or "")))
            )
        except (TypeError, ValueError):
            return None
    return out


def extract_facts(text: str, question: str | None = None) -> Facts:
    """Free text or a box_2d / point_2d JSON answer -> its claims (`generation.claims`), located boxes and points
    (a JSON answer's labels go with their box or point), tokens."""
    t = str(text or "").strip()
    located = _located(t)
    if located is not None:
        return Facts(claims=[], located=located, tokens=re.findall(r"[a-z0-9]+", t.lower()))
    located = [Located(kind="box", coords=[float(x) for x in m]) for m in _BOX.findall(t)]
    t = _BOX.sub(" ", t)
    located += [Located(kind="point", coords=[float(x) for x in m]) for m in _POINT.findall(t)]
    t = _JSON_SYNTAX.sub(" ", _POINT.sub(" ", t))
    return Facts(claims=_text_claims(t, question), located=located, tokens=re.findall(r"[a-z0-9]+", t.lower()))


def _first_number(text: str) -> int | None:
    """The count a counting answer gives ("28", "two teeth"); boxes and points are no counts."""
    t = _POINT.sub(" ", _BOX.sub(" ", str(text or ""))).lower()
    m = re.search(r"\b(\d+)\b|\b(" + "|".join(_COUNT_WORDS) + r")\b", t)
    if not m:
        return None
    return int(m.group(1)) if m.group(1) else _COUNT_WORDS[m.group(2)]


def _place(c: Claim) -> tuple[str, object]:
    if c.tooth is not None:
        return ("tooth", c.tooth)
    if c.region is not None:
        return ("region", c.region.name)
    return ("image", None)


def _said(c: Claim) -> str:
    return f"{c.polarity} {c.name}{f' x{c.count}' if c.count is not None else ''} at {c.where}"


def _covers(absent: Claim, present: Claim) -> bool:
    """Does the absent-claim's place include the present-claim's? (the whole image, a region's teeth, one tooth)"""
    if absent.tooth is None and absent.region is None:
        return True
    if absent.tooth is not None:
        return present.tooth == absent.tooth
    if present.tooth is not None:
        return present.tooth in absent.region.teeth  # type: ignore[union-attr]
    return present.region is not None and present.region.name == absent.region.name  # type: ignore[union-attr]


def contradiction(key: Claim, answer: Claim) -> bool:
    """The answer denies what the key states, states what the key denies, or gives another count, for the same
    finding and place."""
    if not key.categories & answer.categories:
        return False
    if key.count is not None and answer.count is not None and _place(key) == _place(answer) \
            and key.polarity == answer.polarity and key.count != answer.count:
        return True
    for present, absent in ((key, answer), (answer, key)):
        if present.polarity in _ASSERTS and absent.polarity == "absent" and _covers(absent, present):
            return not (absent.definite_only and present.polarity == "suspected")
    return False


def _claim_credit(key: Claim, answer: Claim) -> float:
    """1.0 the same fact; 0.5 the right finding (and polarity) at another tooth or region; else 0."""
    if not key.categories & answer.categories:
        return 0.0
    same_sense = (key.polarity in _ASSERTS) == (answer.polarity in _ASSERTS) and \
        (key.polarity == "recommended") == (answer.polarity == "recommended")
    if not same_sense or (key.count is not None and key.count != answer.count):
        return 0.0
    if key.lesion_type and key.lesion_type != answer.lesion_type:
        return 0.0
    return 1.0 if _place(key) == _place(answer) else 0.5


def _box_credit(iou_value: float) -> float:
    return 1.0 if iou_value >= 0.9 else 0.9 if iou_value >= 0.75 else 0.8 if iou_value >= 0.5 else 0.0


def _point_credit(dist: float) -> float:
    return 1.0 if dist <= 10 else 0.9 if dist <= 30 else 0.8 if dist <= 60 else 0.0


def _matched_credit(key: Facts, answer: Facts) -> tuple[float, list[str]]:
    """Best one-to-one matching of key facts to answer facts (greedy by credit), summed; notes on partial credit."""
    pairs: list[tuple[float, str, int, int, str]] = []
    for i, k in enumerate(key.claims):
        for j, a in enumerate(answer.claims):
            if (c := _claim_credit(k, a)) > 0:
                pairs.append((c, "c", i, j, "" if c == 1.0 else f"{k.name} at {a.where} instead of {k.where}"))
    for i, k in enumerate(key.located):
        for j, a in enumerate(answer.located):
            if k.kind != a.kind:
                continue
            if k.kind == "box":
                geo, what = _box_credit(iou(k.coords, a.coords)), f"box IoU {iou(k.coords, a.coords):.2f}"
            else:
                dist = ((k.coords[0] - a.coords[0]) ** 2 + (k.coords[1] - a.coords[1]) ** 2) ** 0.5
                geo, what = _point_credit(dist), f"point off by {dist:.0f}px"
            c = geo * (1.0 if k.label == a.label else 0.5)
            if c > 0:
                notes_ = [what] if geo < 1.0 else []
                if k.label != a.label:
                    notes_.append("another label")
                pairs.append((c, "l", i, j, ", ".join(notes_)))
    used_k: set[tuple[str, int]] = set()
    used_a: set[tuple[str, int]] = set()
    total, notes = 0.0, []
    for c, kind, i, j, note in sorted(pairs, key=lambda p: (-p[0], p[1], p[2], p[3])):
        if (kind, i) in used_k or (kind, j) in used_a:
            continue
        used_k.add((kind, i))
        used_a.add((kind, j))
        total += c
        if note:
            notes.append(note)
    return total, notes


def _token_f1(a: list[str], b: list[str]) -> float:
    if not a or not b:
        return 0.0
    from collections import Counter

    common = sum((Counter(a) & Counter(b)).values())
    if not common:
        return 0.0
    p, r = common / len(b), common / len(a)
    return 2 * p * r / (p + r)


def offline_score(question: str, ground_truth: str, prediction: str) -> tuple[float, str]:
    """One open-ended answer -> (grid score, rationale). See the module docstring for the rules."""
    if not str(prediction or "").strip():
        return 0.0, "empty prediction"
    if _COUNT_Q.search(question or ""):
        gt_n = _first_number(ground_truth)
        if gt_n is not None:
            pred_n = _first_number(prediction)
            return (1.0 if pred_n == gt_n else 0.0), f"count gt={gt_n} pred={pred_n}"
    gt, pr = extract_facts(ground_truth, question), extract_facts(prediction, question)
    if not gt.size:  # free text ("routine care"): nothing to match but the words
        f1 = _token_f1(gt.tokens, pr.tokens)
        return snap(f1), f"no facts in the key; token F1 {f1:.2f}"
    if not pr.size:
        return 0.0, "no facts in the answer"
    clash = next(((k, a) for k in gt.claims for a in pr.claims if contradiction(k, a)), None)
    if clash:
        return 0.0, f"contradicts the key: {_said(clash[1])} vs {_said(clash[0])}"
    credit, notes = _matched_credit(gt, pr)
    denominator = max(gt.size, pr.size)
    why = f"{credit:g} of {gt.size} key facts matched, {pr.size} in the answer"
    return snap(credit / denominator), "; ".join([why, *notes])


class OfflineJudge:
    """Deterministic judge: no model, no network; see `offline_score`."""

    name = "offline"
    prompt_version = OFFLINE_JUDGE_VERSION

    def score(
        self, questions: Sequence[str], ground_truths: Sequence[str], predictions: Sequence[str], repeat: int = 0
    ) -> list[JudgeScore]:
        out = []
        for q, g, p in zip(questions, ground_truths, predictions, strict=True):
            s, why = offline_score(q, g, p)
            out.append(
                JudgeScore(score=s, judge="offline", prompt_version=OFFLINE_JUDGE_VERSION, rationale=why, repeat=repeat)
            )
        return out


# ---------------------------------------------------------------- LLM judge

JUDGE_TEMPLATE = "judge_open.j2"
_SCORE_RE = re.compile(r"(?:score|rating)\s*[:=]?\s*\**\s*([01](?:\.\d+)?)", re.IGNORECASE)
_ANY_SCORE_RE = re.compile(r"(?<![\d.])(0(?:\.\d+)?|1(?:\.0+)?)(?![\d.])")


def load_judge_template(prompts_dir: Path | None = None) -> tuple[str, str]:
    """(template text, prompt version = first 12 hex of its sha256)."""
    text = ((prompts_dir or PROMPTS_DIR) / JUDGE_TEMPLATE).read_text(encoding="utf-8")
    return text, "judge_open@" + hashlib.sha256(text.encode()).hexdigest()[:12]


def parse_judge_score(text: str) -> float | None:
    """Judge reply -> grid score; the last "Score: x" wins, else the last bare 0..1 number."""
    hits = _SCORE_RE.findall(text or "") or _ANY_SCORE_RE.findall(text or "")
    if not hits:
        return None
    v = float(hits[-1])
    return snap(v) if 0.0 <= v <= 1.0 else None


class LLMJudge:
    """Scores with the rubric in prompts/judge_open.j2 on any ChatBackend.

    Scores are cached by the generation package's SQLite `ResponseCache` (via `CachedBackend`):
    the request hash covers the judge model, the rendered rubric (so the prompt version, question,
    ground truth and prediction) and the parameters, so re-scoring sends nothing. A backend that is
    already a `CachedBackend` (e.g. from `evaluation.backends.openai_backend`) is used as it is;
    any other backend is wrapped in one with `ResponseCache(cache_path)` (None: the project default
    `$MMORAL_HOME/llm_cache.sqlite`).

    Repeat k > 0 is a re-scoring: `seed` = k makes it a distinct request (its own cache entry, never
    served repeat 0's answer), used to report the spread of the LLM judge. An unparseable judge
    reply scores 0.0 and is flagged; a transport failure is flagged too and never cached.
    """

    def __init__(self, backend: ChatBackend, cache_path: str | Path | None = None, temperature: float = 0.0,
                 max_tokens: int = 256, prompts_dir: Path | None = None):
        import jinja2

        if isinstance(backend, CachedBackend):
            if cache_path is not None and (backend.cache is None or Path(cache_path) != backend.cache.path):
                raise ValueError("backend already has its cache; do not pass cache_path as well")
            self.backend = backend
        else:
            self.backend = CachedBackend(backend, ResponseCache(cache_path))
        self.template_text, self.prompt_version = load_judge_template(prompts_dir)
        self._template = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True).from_string(
            self.template_text
        )
        self.name = f"{self.backend.name}:{self.backend.model}"
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.requests_sent = 0  # requests that missed the cache and went to the backend

    def render(self, question: str, ground_truth: str, prediction: str) -> str:
        return self._template.render(question=question, ground_truth=ground_truth, prediction=prediction)

    def requests(self, questions: Sequence[str], ground_truths: Sequence[str], predictions: Sequence[str],
                 repeat: int = 0) -> list[ChatRequest]:
        """The judge requests for one scoring pass; repeat k > 0 carries seed k (a distinct cache key)."""
        params: dict[str, Any] = {"temperature": self.temperature, "max_tokens": self.max_tokens}
        if repeat:
            params["seed"] = repeat
        return [
            ChatRequest(messages=[{"role": "user", "content": self.render(q, g, p)}], params=params, tag="judge_open")
            for q, g, p in zip(questions, ground_truths, predictions, strict=True)
        ]

    def score(
        self, questions: Sequence[str], ground_truths: Sequence[str], predictions: Sequence[str], repeat: int = 0
    ) -> list[JudgeScore]:
        reqs = self.requests(questions, ground_truths, predictions, repeat)
        sent_before = self.backend.stats["sent"]
        responses = self.backend.complete(reqs)
        self.requests_sent += int(self.backend.stats["sent"] - sent_before)
        out = []
        for resp in responses:
            value = parse_judge_score(resp.text) if not resp.error else None
            out.append(
                JudgeScore(
                    score=value if value is not None else 0.0,
                    judge=self.name,
                    prompt_version=self.prompt_version,
                    cache_hit=resp.cache_hit,
                    parse_failed=value is None,
                    rationale=resp.text or (resp.error or ""),
                    repeat=repeat,
                )
            )
        return out
