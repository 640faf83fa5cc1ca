"""MMOral-OPG-Bench TSV import/export (closed and open), with base64 JPEG images.

Layouts read (told apart by their header):
- closed, MMOral-OPG-Bench: index, image, question, option1..option4, answer (A-D), category, image_id, file_name, type
- closed, VLMEvalKit: index, image, question, A, B, C, D, answer (A-D), category (+ hint, l2-category, ...)
- open:   index, image, question, answer, category (no option columns)
`image` is base64 JPEG/PNG; a row without one may name a file in `image_path`. Written: the MMOral-OPG-Bench layout.

Quirk of the official closed file: a blank option cell stands for the literal option "None"
(in one row that blank option is the right answer; pandas reads the text "None" as missing), so blanks
become "None" on import, in both closed layouts.
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


OPTION_COLUMNS: dict[str, tuple[str, ...]] = {
    "mmoral": ("option1", "option2", "option3", "option4"),
    "vlmevalkit": ("A", "B", "C", "D"),
}


def _header(path: str | Path) -> list[str]:
    with open(path, newline="", encoding="utf-8") as fh:
        return next(csv.reader(fh, delimiter="\t"), [])


def closed_layout(header: list[str]) -> tuple[str, ...] | None:
    """The option columns of a closed-ended header (MMOral-OPG-Bench or VLMEvalKit), None for an open-ended one."""
    return next((cols for cols in OPTION_COLUMNS.values() if set(cols) <= set(header)), None)


def is_closed_tsv(path: str | Path) -> bool:
    return closed_layout(_header(path)) is not None


def _image_of(r: dict[str, str]) -> str:
    if r.get("image"):
        return r["image"]
    path = r.get("image_path") or ""
    return encode_image_jpeg(path) if path and Path(path).is_file() else ""


def read_closed_tsv(path: str | Path) -> list[ClosedItem]:
    """Official, VLMEvalKit-style or exported closed-ended TSV -> ClosedItem rows (blank option -> "None")."""
    columns = closed_layout(_header(path))
    if columns is None:
        raise ValueError(f"{path}: not a closed-ended TSV (no option1-option4 or A-D columns)")
    items = []
    for r in _read_rows(path):
        items.append(
            ClosedItem(
                index=str(r["index"]),
                image=_image_of(r),
                question=r["question"],
                options=[r.get(c) or "" for c in columns],
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
            image=_image_of(r),
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
    """Either kind, told apart by the header: option1-option4 or A-D columns -> closed, else question + answer ->
    open."""
    header = _header(path)
    if closed_layout(header) is not None:
        return read_closed_tsv(path)
    missing = [c for c in ("index", "question", "answer") if c not in header]
    if missing:
        raise ValueError(f"{path}: neither a closed-ended (option1-option4 or A-D) nor an open-ended TSV: "
                         f"no {', '.join(missing)} column")
    return read_open_tsv(path)


def read_bench_tsvs(paths: Iterable[str | Path], limit: int | None = None) -> tuple[list[ClosedItem], list[OpenItem]]:
    """Several TSVs of either kind -> (closed, open) rows; `limit`: the first N rows of each file."""
    closed: list[ClosedItem] = []
    open_: list[OpenItem] = []
    for path in paths:
        rows = read_bench_tsv(path)
        for r in rows[:limit] if limit else rows:
            (closed if isinstance(r, ClosedItem) else open_).append(r)  # type: ignore[arg-type]
    return closed, open_


def write_closed_tsv(items: Iterable[ClosedItem], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, delimiter="\t", lineterminator="\n")
        w.writerow(CLOSED_COLUMNS)
        for it in items:
            w.writerow(
                [
                    it.index,
                    it.image,
                    it.question,
                    *it.options,
                    it.answer,
                    it.category,
                    it.image_id,
                    it.file_name,
                    it.type,
                ]
            )
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
