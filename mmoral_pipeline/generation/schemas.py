"""Pydantic schemas of the JSON replies (audit, report VQA, dialogue), shared by every backend.

`ChatRequest.json_schema` names one of these; the OpenAI backend validates replies against it (with
a bounded retry) and the offline backend emits exactly these shapes.
"""

from __future__ import annotations

import json
import re
from typing import Literal

from pydantic import BaseModel, Field, ValidationError


class AuditReply(BaseModel):
    verdict: Literal["no revision needed", "revised"]
    revised_report: str | None = None
    revision_log: list[str] = Field(default_factory=list)


class ClosedQA(BaseModel):
    question: str
    options: list[str]
    answer: str  # letter A-D
    answer_text: str = ""
    dimensions: list[str] = Field(default_factory=list)


class OpenQA(BaseModel):
    question: str
    answer: str
    dimensions: list[str] = Field(default_factory=list)


class VQAReply(BaseModel):
    closed: list[ClosedQA] = Field(default_factory=list)
    open: list[OpenQA] = Field(default_factory=list)


class Turn(BaseModel):
    role: str  # "patient" / "radiologist"
    content: str


class DialogueReply(BaseModel):
    turns: list[Turn]


SCHEMAS: dict[str, type[BaseModel]] = {"audit": AuditReply, "vqa": VQAReply, "dialogue": DialogueReply}

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


def extract_json(text: str) -> str:
    """The JSON part of a reply: inside a ``` fence if there is one, else from the first brace."""
    m = _FENCE.search(text)
    if m:
        return m.group(1).strip()
    start = min((i for i in (text.find("{"), text.find("[")) if i >= 0), default=-1)
    end = max(text.rfind("}"), text.rfind("]"))
    return text[start : end + 1] if start >= 0 and end > start else text


def parse_reply(schema: str, text: str) -> BaseModel:
    """Validate a reply against a named schema; raises ValueError with a short reason."""
    model = SCHEMAS[schema]
    try:
        return model.model_validate(json.loads(extract_json(text)))
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc.msg} at {exc.pos}") from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ValueError(f"schema {schema}: {'.'.join(map(str, first['loc']))}: {first['msg']}") from exc


def schema_error(schema: str | None, text: str) -> str | None:
    if schema is None:
        return None
    try:
        parse_reply(schema, text)
    except ValueError as exc:
        return str(exc)
    return None
