"""Prompt templates: Jinja2 files in `prompts/`, each versioned by the hash of its content.

The version feeds the `code_version` of the assets whose output the template shapes, so editing
one template marks only its dependants stale in the Dagster UI.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

from mmoral_pipeline.config import PROMPTS_DIR

HEDGE_THRESHOLD = 0.80  # findings below this score are worded as suspicion (MMOral stage 5)


@lru_cache(maxsize=8)
def _environment(root: str) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(root),
        undefined=jinja2.StrictUndefined,  # a missing variable is an error, not an empty string
        keep_trailing_newline=False,
        autoescape=False,
    )


def template_path(template_id: str, root: Path | None = None) -> Path:
    return (root or PROMPTS_DIR) / f"{template_id}.j2"


def prompt_version(template_id: str, root: Path | None = None) -> str:
    """Content hash of one template file (first 12 hex digits of sha256)."""
    return hashlib.sha256(template_path(template_id, root).read_bytes()).hexdigest()[:12]


def combined_version(*parts: str) -> str:
    """One version string for an asset shaped by several templates and rule versions."""
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:12]


def render(template_id: str, root: Path | None = None, **variables: Any) -> str:
    if all(
        isinstance(v, (int, float, type(None))) or (isinstance(v, str) and len(v) < 200) for v in variables.values()
    ):
        return _render_cached(template_id, str(root or PROMPTS_DIR), tuple(sorted(variables.items())))
    return _render(template_id, str(root or PROMPTS_DIR), variables)


@lru_cache(maxsize=65536)
def _render_cached(template_id: str, root: str, items: tuple) -> str:
    return _render(template_id, root, dict(items))


def _render(template_id: str, root: str, variables: dict[str, Any]) -> str:
    env = _environment(root)
    return env.get_template(f"{template_id}.j2").render(hedge_threshold=f"{HEDGE_THRESHOLD:.2f}", **variables).strip()


def chat_messages(template_id: str, root: Path | None = None, **variables: Any) -> list[dict[str, str]]:
    """System prompt + one user turn rendered from `template_id` (OpenAI chat format)."""
    return [
        {"role": "system", "content": render("system", root)},
        {"role": "user", "content": render(template_id, root, **variables)},
    ]
