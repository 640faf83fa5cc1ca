"""MMOral-OPG-Bench TSV import/export (closed and open), with base64 JPEG images.

Layout of the released files:
- closed: index, image, question, option1..option4, answer (A-D), category, image_id, file_name, type
- open:   index, image, question, answer, category

Quirk of the official closed file: a blank option cell stands for the literal option "None"
(in one row that blank option is the right answer), so blanks become "None" on import.
"""

from __future__ import annotations

import base64
import csv
import io
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mmoral_pipeline.evaluation.items import ClosedItem, OpenItem

CLOSED_COLUMNS: tuple[str, ...] = (
    "index", "image", "question", "option1", "option2", "option3", "option4",
    "answer", "category", "image_id", "file_name", "type",
)
OPEN_COLUMNS: tuple[str, ...] = ("index", "image", "question", "answer", "category")

csv.field_size_limit(sys.maxsize)  # base64 images are far longer than csv's 128 KiB default


def encode_image_jpeg(image: Any, max_side: int | None = None, quality: int = 90) -> str:
    """PIL image, path or raw bytes -> base64 JPEG string (optionally downscaled)."""
    from PIL import Image

    if isinstance(image, (str, Path)):
        img = Image.open(image)
    elif isinstance(image, (bytes, bytearray)):
        img = Image.open(io.BytesIO(image))
    else:
        img = image
    img = img.convert("RGB")
    if max_side and max(img.size) > max_side:
        scale = max_side / max(img.size)
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def decode_image(b64: str):
    """base64 (JPEG/PNG) -> RGB PIL image."""
    from PIL import Image

    return Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB")


def _read_rows(path: str | Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return [dict(r) for r in csv.DictReader(fh, delimiter="\t")]


def is_closed_tsv(path: str | Path) -> bool:
    with open(path, newline="", encoding="utf-8") as fh:
        header = next(csv.reader(fh, delimiter="\t"), [])
    return "option1" in header


def read_closed_tsv(path: str | Path) -> list[ClosedItem]:
    """Official or exported closed-ended TSV -> ClosedItem rows (blank option -> "None")."""
    items = []
    for r in _read_rows(path):
        items.append(
            ClosedItem(
                index=str(r["index"]),
                image=r.get("image") or "",
                question=r["question"],
                options=[r.get(f"option{i}") or "" for i in range(1, 5)],
                answer=r["answer"].strip().upper(),
                category=r.get("category") or "",
                image_id=r.get("image_id") or "",
                file_name=r.get("file_name") or "",
                type=r.get("type") or "MCQ",
                source="official" if not r.get("source") else r["source"],
            )
        )
    return items


def read_open_tsv(path: str | Path) -> list[OpenItem]:
    return [
        OpenItem(
            index=str(r["index"]),
            image=r.get("image") or "",
            question=r["question"],
            answer=r.get("answer") or "",
            category=r.get("category") or "",
            image_id=r.get("image_id") or "",
            file_name=r.get("file_name") or "",
            source="official",
        )
        for r in _read_rows(path)
    ]


def read_bench_tsv(path: str | Path) -> list[ClosedItem] | list[OpenItem]:
    """Either kind, told apart by the header (closed files have option1..option4)."""
    return read_closed_tsv(path) if is_closed_tsv(path) else read_open_tsv(path)


def write_closed_tsv(items: Iterable[ClosedItem], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, delimiter="\t", lineterminator="\n")
        w.writerow(CLOSED_COLUMNS)
        for it in items:
            w.writerow([it.index, it.image, it.question, *it.options, it.answer, it.category, it.image_id, it.file_name, it.type])
    return path


def write_open_tsv(items: Iterable[OpenItem], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, delimiter="\t", lineterminator="\n")
        w.writerow(OPEN_COLUMNS)
        for it in items:
            w.writerow([it.index, it.image, it.question, it.answer, it.category])
    return path
