"""Content hashes of the code and templates that shape the attribute tables.

The Dagster assets use them as `code_version`, so the UI marks the tables stale when a rule or
the caption template changes; every row also carries them for lineage.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from mmoral_pipeline.config import PROMPTS_DIR

_HERE = Path(__file__).resolve().parent
_DOMAIN = _HERE.parent / "domain"

RULE_FILES = (
    _HERE / "rules.py",
    _HERE / "build.py",
    _HERE / "settings.py",
    _HERE / "frames.py",
    _HERE / "stage.py",
    _DOMAIN / "attributes.py",
    _DOMAIN / "fdi.py",
    _DOMAIN / "taxonomy.py",
    _DOMAIN / "geometry.py",
)
CAPTION_TEMPLATE = PROMPTS_DIR / "location_caption.j2"
CAPTION_FILES = (CAPTION_TEMPLATE, _HERE / "caption.py")


def files_hash(paths: tuple[Path, ...], length: int = 12) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.name.encode())
        h.update(b"\0")
        h.update(p.read_bytes())
        h.update(b"\0")
    return h.hexdigest()[:length]


RULES_VERSION = f"attributes-{files_hash(RULE_FILES)}"
