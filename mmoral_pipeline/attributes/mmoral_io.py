"""Write documents as MMOral per-image attribute JSON files (the reader is sources/mmoral_json.py)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path

from mmoral_pipeline.domain.attributes import ImageAttributes


def mmoral_json_name(image_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", image_id) + ".json"


def write_mmoral_json(docs: Iterable[ImageAttributes], folder: str | Path) -> list[Path]:
    """One `<image_id>.json` per document (`ImageAttributes.to_mmoral_json()`); returns the paths."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for doc in docs:
        path = out / mmoral_json_name(doc.image_id)
        path.write_text(json.dumps(doc.to_mmoral_json(), indent=1, sort_keys=True) + "\n")
        paths.append(path)
    return paths
