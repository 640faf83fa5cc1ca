"""Open-ended judges: an offline fact-comparing judge and an LLM judge on any ChatBackend.

Both score on the paper's grid {0.0, 0.1, ..., 1.0}. The offline judge deducts from 1.0 per
fact of the ground truth the prediction gets wrong, with deductions chosen to mirror the
paper's worked examples:

- counting question: exact count 1.0, anything else 0.0 (binary, like "off by one = 0.0");
- a (tooth, finding) fact with the right finding on the wrong tooth: -0.5 ("wrong tooth number = 0.5");
- the right tooth with another status/finding: -0.3 ("one wrong wisdom-tooth status = 0.7");
- a ground-truth clause missing altogether: -0.5 ("missing bone-loss clause = 0.5");
- a box matched by IoU: >= 0.9 free, >= 0.75 -0.1, >= 0.5 -0.2 ("slightly shifted box = 0.8-0.9"), else -0.5;
- each extra finding the ground truth does not have: -0.2.

Deductions count in full for answers with up to 4 facts (the worked examples); for longer answers
(reports) they are scaled by 4 / number of facts, so one slip in a 20-fact report costs 0.1, not 0.5.

Text without any extractable fact falls back to token F1, snapped to the grid. Pure and
deterministic: the same inputs always give the same score.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from mmoral_pipeline.config import PROMPTS_DIR
from mmoral_pipeline.domain.geometry import iou
from mmoral_pipeline.domain.taxonomy import SYNONYMS, Category
from mmoral_pipeline.generation.backends import CachedBackend
from mmoral_pipeline.generation.cache import ResponseCache
from mmoral_pipeline.generation.claims import teeth_in
from mmoral_pipeline.generation.types import ChatBackend, ChatRequest

GRID: tuple[float, ...] = tuple(round(i / 10, 1) for i in range(11))
OFFLINE_JUDGE_VERSION = "offline-facts-v2"
FULL_WEIGHT_FACTS = 4  # up to this many ground-truth facts each deduction counts in full


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


# ---------------------------------------------------------------- fact extraction (offline judge)

_NUM = r"-?\d+(?:\.\d+)?"
_BOX = re.compile(rf"\[\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*\]")
_POINT = re.compile(rf"\[\s*({_NUM})\s*,\s*({_NUM})\s*\]")
_COUNT_Q = re.compile(r"\bhow many\b|\bnumber of\b|\bcount\b", re.IGNORECASE)
_NUMBER_WORDS = {w: i for i, w in enumerate(
    ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty"])}
_NUMBER_WORDS["no"] = 0
_NEGATION = re.compile(r"\b(no|not|without|absent|free of|none|neither|nor|unremarkable)\b")
_EXTRA_FINDINGS = {"erupted": "erupted", "fully erupted": "erupted", "healthy": "normal", "normal": "normal",
                   "intact": "normal", "endodontically treated": Category.ROOT_CANAL_TREATMENT.value}
_FINDINGS: list[tuple[str, str]] = sorted(
    [(k, c.value) for k, (c, _t) in SYNONYMS.items() if c != Category.TOOTH] + list(_EXTRA_FINDINGS.items()),
    key=lambda kv: -len(kv[0]),
)
_FINDING_RE = [(re.compile(rf"\b{re.escape(k)}\b"), v) for k, v in _FINDINGS]
_SPLIT = re.compile(r",|;|\band\b|\bwhile\b|\bbut\b|\bwith\b")


class Facts(BaseModel):
    pairs: list[tuple[int | None, str | None]]
    boxes: list[list[float]]
    points: list[list[float]]
    tokens: list[str]


def _findings(text: str) -> list[str]:
    found: list[str] = []
    for rx, canon in _FINDING_RE:
        if rx.search(text):
            found.append(canon)
            text = rx.sub(" ", text)
    return sorted(set(found))


def _teeth(text: str) -> list[int]:
    return sorted(set(teeth_in(text)))  # the one tooth-number reader (generation.claims)


def extract_facts(text: str) -> Facts:
    """Free text -> (tooth, finding) pairs, boxes, points and tokens."""
    t = str(text or "")
    boxes = [[float(x) for x in m] for m in _BOX.findall(t)]
    t = _BOX.sub(" ", t)
    points = [[float(x) for x in m] for m in _POINT.findall(t)]
    t = _POINT.sub(" ", t).lower()
    t = re.sub(r"[{}\"']|box_2d|point_2d|label", " ", t)
    pairs: set[tuple[int | None, str | None]] = set()
    for sentence in re.split(r"[.\n:]+(?!\d)", t):
        # Pieces split on commas/"and"; a piece without a finding joins the next one that has one
        # ("teeth 18, 28 and 38 are impacted"), a trailing one joins the previous piece.
        pieces: list[str] = []
        pending = ""
        for piece in _SPLIT.split(sentence):
            pending = f"{pending} {piece}"
            if _findings(piece):
                pieces.append(pending)
                pending = ""
        if pending.strip():
            if pieces:
                pieces[-1] = f"{pieces[-1]} {pending}"
            else:
                pieces.append(pending)
        negated_sentence = bool(_NEGATION.search(sentence))
        for piece in pieces:
            finds = _findings(piece)
            negated = bool(_NEGATION.search(piece)) or (negated_sentence and len(pieces) == 1)
            finds = [f"no_{f}" if negated else f for f in finds]
            teeth = _teeth(piece)
            if finds and teeth:
                pairs |= {(tooth, f) for tooth in teeth for f in finds}
            elif finds:
                pairs |= {(None, f) for f in finds}
            else:
                pairs |= {(tooth, None) for tooth in teeth}
    tokens = re.findall(r"[a-z0-9]+", t)
    return Facts(pairs=sorted(pairs, key=lambda p: (p[0] or 0, p[1] or "")), boxes=boxes, points=points, tokens=tokens)


def _first_number(text: str) -> int | None:
    t = _POINT.sub(" ", _BOX.sub(" ", str(text or ""))).lower()
    m = re.search(r"\b(\d+)\b|\b(" + "|".join(_NUMBER_WORDS) + r")\b", t)
    if not m:
        return None
    return int(m.group(1)) if m.group(1) else _NUMBER_WORDS[m.group(2)]


def _box_deduction(best_iou: float) -> float:
    if best_iou >= 0.9:
        return 0.0
    if best_iou >= 0.75:
        return 0.1
    if best_iou >= 0.5:
        return 0.2
    return 0.5


def _point_deduction(dist: float) -> float:
    if dist <= 10:
        return 0.0
    if dist <= 30:
        return 0.1
    if dist <= 60:
        return 0.2
    return 0.5


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
            ok = pred_n == gt_n
            return (1.0 if ok else 0.0), f"count gt={gt_n} pred={pred_n}"
    gt, pr = extract_facts(ground_truth), extract_facts(prediction)
    if not gt.pairs and not gt.boxes and not gt.points:
        f1 = _token_f1(gt.tokens, pr.tokens)
        return snap(f1), f"no facts; token F1 {f1:.2f}"
    deduction, notes = 0.0, []
    unused = list(pr.pairs)
    for t, f in gt.pairs:
        if (t, f) in unused:
            unused.remove((t, f))
            continue
        if t is None:  # finding without a tooth: any mention of the finding counts
            hit = next((p for p in pr.pairs if p[1] == f), None)
            if hit:
                if hit in unused:
                    unused.remove(hit)
                continue
            deduction += 0.5
            notes.append(f"missing {f}")
            continue
        if f is None:  # bare tooth mention
            if any(p[0] == t for p in pr.pairs):
                unused = [p for p in unused if p[0] != t]
                continue
            deduction += 0.5
            wrong = next((p for p in unused if p[1] is None), None)
            if wrong:
                unused.remove(wrong)
            notes.append(f"wrong/missing tooth {t}")
            continue
        same_tooth = next((p for p in unused if p[0] == t and p[1] != f), None)
        if same_tooth:
            unused.remove(same_tooth)
            deduction += 0.3
            notes.append(f"tooth {t}: {same_tooth[1]} instead of {f}")
            continue
        same_finding = next((p for p in unused if p[1] == f and p[0] != t), None)
        if same_finding:
            unused.remove(same_finding)
            deduction += 0.5
            notes.append(f"{f} on {same_finding[0]} instead of {t}")
            continue
        deduction += 0.5
        notes.append(f"missing {f} on {t}")
    gt_findings = {f for _, f in gt.pairs}
    for t, f in unused:
        if f is not None and f not in gt_findings and not any(p[0] == t and p[1] == f for p in gt.pairs):
            deduction += 0.2
            notes.append(f"extra {f}" + (f" on {t}" if t else ""))
    for box in gt.boxes:
        best = max((iou(box, b) for b in pr.boxes), default=0.0)
        d = _box_deduction(best)
        deduction += d
        if d:
            notes.append(f"box IoU {best:.2f}")
    for pt in gt.points:
        dist = min((((pt[0] - q[0]) ** 2 + (pt[1] - q[1]) ** 2) ** 0.5 for q in pr.points), default=1e9)
        d = _point_deduction(dist)
        deduction += d
        if d:
            notes.append(f"point off by {dist:.0f}px")
    n_facts = len(gt.pairs) + len(gt.boxes) + len(gt.points)
    scale = min(1.0, FULL_WEIGHT_FACTS / n_facts)  # long answers (reports): each fact weighs less
    if scale < 1.0:
        notes.append(f"deductions x{scale:.2f} ({n_facts} facts)")
    return snap(1.0 - deduction * scale), "; ".join(notes) or "all facts match"


class OfflineJudge:
    """Deterministic judge: no model, no network; see `offline_score`."""

    name = "offline"
    prompt_version = OFFLINE_JUDGE_VERSION

    def score(self, questions: Sequence[str], ground_truths: Sequence[str], predictions: Sequence[str], repeat: int = 0) -> list[JudgeScore]:
        out = []
        for q, g, p in zip(questions, ground_truths, predictions, strict=True):
            s, why = offline_score(q, g, p)
            out.append(JudgeScore(score=s, judge="offline", prompt_version=OFFLINE_JUDGE_VERSION, rationale=why, repeat=repeat))
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
        self._template = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True).from_string(self.template_text)
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
        return [ChatRequest(messages=[{"role": "user", "content": self.render(q, g, p)}], params=params, tag="judge_open")
                for q, g, p in zip(questions, ground_truths, predictions, strict=True)]

    def score(self, questions: Sequence[str], ground_truths: Sequence[str], predictions: Sequence[str], repeat: int = 0) -> list[JudgeScore]:
        reqs = self.requests(questions, ground_truths, predictions, repeat)
        sent_before = self.backend.stats["sent"]
        responses = self.backend.complete(reqs)
        self.requests_sent += int(self.backend.stats["sent"] - sent_before)
        out = []
        for resp in responses:
            value = parse_judge_score(resp.text) if not resp.error else None
            out.append(JudgeScore(score=value if value is not None else 0.0, judge=self.name, prompt_version=self.prompt_version,
                                  cache_hit=resp.cache_hit, parse_failed=value is None, rationale=resp.text or (resp.error or ""),
                                  repeat=repeat))
        return out
