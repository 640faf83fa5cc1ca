"""The question-wording prior: what the training answers alone predict, with no image at all.

Fitted on the training split only. For each question wording it keeps how often each answer text was the
answer; a wording never seen falls back to its template (numbers masked: "Which tooth is located at
point_2d [#, #]?"), and a template never seen to the answers of every training question.

- Closed: of the four options, the one most often the answer at the first level that knows any of them.
  Ties are broken by a hash of (question, option text), so the choice depends on the option set, never on
  which letter holds which option.
- Open: the answer text most often given to the wording (else its template); "" when neither was seen.

It is both a baseline (`QuestionPriorRunner` in `runners`) and what the benchmark's closed set is balanced
against (`evaluation.build.select_closed`): a set this prior passes measures question habits, not X-ray reading.
Training answers come from `instruction_samples` (split == "train") or a training export (TRL JSONL,
LLaMA-Factory sharegpt JSON), closed prompts read back with `runners.parse_closed_prompt`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmoral_pipeline.evaluation.items import LETTERS

_NUMBER = re.compile(r"\b\d+(?:\.\d+)?\b")
CLOSED_TASK_SUFFIX = "_closed"


def question_template(question: str) -> str:
    """The wording with its numbers masked and spaces normalised: one template for every tooth / point / box."""
    return _NUMBER.sub("#", " ".join(str(question or "").split()))


def _tie_key(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def _most_frequent(counts: Mapping[str, int]) -> str:
    """The most frequent answer; ties go to the alphabetically first (deterministic)."""
    return min(counts, key=lambda a: (-counts[a], a))


@dataclass
class QuestionPrior:
    """Answer counts of the training split by wording and by template (see the module docstring)."""

    closed_wording: dict[str, Counter] = field(default_factory=dict)
    closed_template: dict[str, Counter] = field(default_factory=dict)
    closed_all: Counter = field(default_factory=Counter)
    open_wording: dict[str, Counter] = field(default_factory=dict)
    open_template: dict[str, Counter] = field(default_factory=dict)

    @classmethod
    def fit(cls, closed: Iterable[tuple[str, str]] = (), open_: Iterable[tuple[str, str]] = ()) -> QuestionPrior:
        """(question, answer text) pairs of the training split -> the prior."""
        prior = cls()
        for q, a in closed:
            q = " ".join(str(q).split())
            prior.closed_wording.setdefault(q, Counter())[a] += 1
            prior.closed_template.setdefault(question_template(q), Counter())[a] += 1
            prior.closed_all[a] += 1
        for q, a in open_:
            if not str(a or "").strip():
                continue
            q = " ".join(str(q).split())
            prior.open_wording.setdefault(q, Counter())[a] += 1
            prior.open_template.setdefault(question_template(q), Counter())[a] += 1
        return prior

    @property
    def n_closed(self) -> int:
        return sum(self.closed_all.values())

    @property
    def n_open(self) -> int:
        return sum(sum(c.values()) for c in self.open_wording.values())

    def closed_choice(self, question: str, options: Sequence[str]) -> str:
        """The option text the prior picks (see the module docstring)."""
        q = " ".join(str(question).split())
        for counts in (self.closed_wording.get(q), self.closed_template.get(question_template(q)), self.closed_all):
            if counts and any(counts.get(o, 0) for o in options):
                best = max(counts.get(o, 0) for o in options)
                tied = [o for o in options if counts.get(o, 0) == best]
                return min(tied, key=lambda o: _tie_key(q, o))
        return min(options, key=lambda o: _tie_key(q, o))

    def closed_level(self, question: str) -> str:
        """Which level answers a closed question: 'wording', 'template' or 'all'."""
        q = " ".join(str(question).split())
        if q in self.closed_wording:
            return "wording"
        return "template" if question_template(q) in self.closed_template else "all"

    def open_answer(self, question: str) -> str:
        q = " ".join(str(question).split())
        counts = self.open_wording.get(q) or self.open_template.get(question_template(q))
        return _most_frequent(counts) if counts else ""

    def answer_spread(self, question: str, min_answers: int = 10) -> float | None:
        """1 - the share of the template's most frequent training answer: 0 when every image gets the same answer,
        near 1 when the answer differs between images; None when the template has fewer than `min_answers`."""
        counts = self.closed_template.get(question_template(question))
        if not counts or sum(counts.values()) < min_answers:
            return None
        return 1.0 - max(counts.values()) / sum(counts.values())

    def summary(self) -> dict[str, int]:
        return {"closed_answers": self.n_closed, "closed_wordings": len(self.closed_wording),
                "closed_templates": len(self.closed_template), "open_answers": self.n_open,
                "open_wordings": len(self.open_wording)}


# ---------------------------------------------------------------- training answers from tables and exports

def prior_from_samples(samples: Any, split: str = "train") -> QuestionPrior:
    """From an `instruction_samples` frame: closed rows (options + answer_letter) and single-turn open rows of
    `split`."""
    import polars as pl

    df: pl.DataFrame = samples
    if df.height == 0 or "split" not in df.columns:
        return QuestionPrior()
    rows = df.filter(pl.col("split") == split)
    closed, open_ = [], []
    for r in rows.iter_rows(named=True):
        stem = r.get("question_stem") or r.get("question") or ""
        options, letter = r.get("options"), r.get("answer_letter")
        if options is not None and len(options) == 4 and letter in LETTERS:
            closed.append((stem, options[LETTERS.index(letter)]))
        elif (r.get("n_turns") or 2) <= 2 and r.get("answer"):
            open_.append((stem, r["answer"]))
    return QuestionPrior.fit(closed, open_)


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content.replace("<image>", "").strip()
    return "".join(
        p.get("text") or "" for p in content or [] if isinstance(p, dict) and p.get("type") == "text"
    ).strip()


def pairs_from_messages(
    conversations: Iterable[Sequence[Mapping[str, Any]]],
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Chat conversations (TRL or sharegpt messages) -> (closed pairs, open pairs) of their first question and answer.

    A first user turn laid out as the benchmark's closed prompt is closed: its answer letter (or option text) is
    mapped to the option's text."""
    from mmoral_pipeline.evaluation.runners import parse_closed_prompt

    closed, open_ = [], []
    for messages in conversations:
        user = next((m for m in messages if m.get("role") == "user"), None)
        reply = next((m for m in messages if m.get("role") == "assistant"), None)
        if user is None or reply is None:
            continue
        prompt, answer = _text_of(user.get("content")), _text_of(reply.get("content"))
        parsed = parse_closed_prompt(prompt)
        if parsed is None:
            open_.append((prompt, answer))
            continue
        stem, options = parsed
        letter = answer.strip()[:1].upper()
        if letter in options and (len(answer.strip()) == 1 or answer.strip()[1:2] in ".): "):
            closed.append((stem, options[letter]))
        elif answer.strip() in options.values():
            closed.append((stem, answer.strip()))
    return closed, open_


def load_prior(path: str | Path) -> QuestionPrior:
    """A prior from training data on disk: `instruction_samples` Parquet (its train split), TRL JSONL or
    LLaMA-Factory sharegpt JSON (a training export: every row counts)."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"training data {str(p)!r} does not exist")
    if p.suffix == ".parquet":
        import polars as pl

        return prior_from_samples(pl.read_parquet(p))
    if p.suffix == ".jsonl":
        rows = [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
    elif p.suffix == ".json":
        rows = json.loads(p.read_text(encoding="utf-8"))
    else:
        raise ValueError(
            f"training data {str(p)!r}: expected instruction_samples .parquet, TRL .jsonl or LLaMA-Factory .json"
        )
    closed, open_ = pairs_from_messages(r.get("messages") or [] for r in rows)
    return QuestionPrior.fit(closed, open_)
