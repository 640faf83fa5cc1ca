"""Closed-ended answer extraction in the authors' order: "(A)", then a bare letter, then option text.

Unlike the authors' script there is no random fallback: an answer nothing matches is `failed`,
scored wrong, and counted in the extraction-failure rate, so the same predictions always give
the same score.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel

from mmoral_pipeline.evaluation.items import LETTERS

Method = Literal["paren", "letter", "option_text", "failed"]

_PAREN = re.compile(r"\(\s*([A-D])\s*\)")
# Explicit answer phrases first ("The answer is C", "Answer: B", "option D").
_ANSWER_PHRASE = re.compile(
    r"(?:answer|option|choice)\s*(?:is|:|=)?\s*[:\-]?\s*\**\s*([A-D])\b(?![\w'])", re.IGNORECASE
)
_LEADING = re.compile(r"^\W*([A-D])(?:\s*$|[\s.):,;\]\-*])")
_TOKEN = re.compile(r"(?<![A-Za-z0-9'])([A-D])(?![A-Za-z0-9'])")


class Extraction(BaseModel):
    letter: str | None
    method: Method


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^\w#\[\],. ]+", " ", text.lower())).strip(" .")


def _single(found: list[str]) -> str | None:
    distinct = sorted(set(found))
    return distinct[0] if len(distinct) == 1 else None


def _bare_letter(text: str) -> str | None:
    m = _LEADING.match(text)
    if m and not (m.group(1) == "A" and re.match(r"\W*A\s+[a-z]", text)):
        return m.group(1)
    phrase = _single([m.upper() for m in _ANSWER_PHRASE.findall(text)])
    if phrase:
        return phrase
    found = []
    for m in _TOKEN.finditer(text):
        letter = m.group(1)
        rest = text[m.end():]
        # "A filling on tooth 36": the article, not an option letter.
        if letter == "A" and re.match(r"\s+[a-z]", rest):
            continue
        found.append(letter)
    return _single(found)


def _option_text(text: str, options: list[str]) -> str | None:
    t = f" {_norm(text)} "
    hits = []
    for letter, opt in zip(LETTERS, options, strict=True):
        o = _norm(opt)
        if o and re.search(rf"(?<![\w#]){re.escape(o)}(?!\w)", t):
            hits.append((letter, o))
    # Drop an option whose text is only part of another matching option ("#48" inside "#38 and #48").
    hits = [(letter, o) for letter, o in hits if not any(o != o2 and o in o2 for _, o2 in hits)]
    return _single([letter for letter, _ in hits])


def extract_choice(output: str, options: list[str]) -> Extraction:
    """Model output + the four option texts -> letter and how it was found (or failed)."""
    text = (output or "").strip()
    if not text:
        return Extraction(letter=None, method="failed")
    paren = _single(_PAREN.findall(text))
    if paren:
        return Extraction(letter=paren, method="paren")
    letter = _bare_letter(text)
    if letter:
        return Extraction(letter=letter, method="letter")
    by_text = _option_text(text, options)
    if by_text:
        return Extraction(letter=by_text, method="option_text")
    return Extraction(letter=None, method="failed")
