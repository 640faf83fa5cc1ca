"""Benchmark rows: the closed-ended and open-ended MMOral-Bench question records.

Both follow the released MMOral-OPG-Bench TSV columns, so an imported official row and a row we
generated are the same object. `image` is base64 JPEG (may be empty when the benchmark is kept
without pixels, e.g. in Parquet before export).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator

LETTERS: tuple[str, ...] = ("A", "B", "C", "D")
# The five closed-ended dimensions of MMOral-Bench, in the paper's column order; open-ended adds Report.
CLOSED_DIMENSIONS: tuple[str, ...] = ("Teeth", "Patho", "HisT", "Jaw", "SumRec")
OPEN_DIMENSIONS: tuple[str, ...] = ("Teeth", "Patho", "HisT", "Jaw", "SumRec", "Report")
BLANK_OPTION = "None"  # the official TSV leaves a cell blank where the option is the literal "None"


def split_labels(category: str) -> list[str]:
    """'Teeth,Patho' -> ['Teeth', 'Patho'] (a question counts in each of its labels)."""
    return [c.strip() for c in str(category or "").split(",") if c.strip()]


class ClosedItem(BaseModel):
    """One 4-option multiple-choice question."""

    index: str
    question: str
    options: list[str] = Field(min_length=4, max_length=4)
    answer: Literal["A", "B", "C", "D"]
    category: str  # comma-joined dimension labels
    image_id: str = ""
    file_name: str = ""
    type: str = "MCQ"
    image: str = ""  # base64 JPEG
    source: str = ""  # "official" / "vqa:<item_id>" (generated VQA) / "rule:<builder>": how the row was made

    @field_validator("options")
    @classmethod
    def _blank_is_none(cls, v: list[str]) -> list[str]:
        return [BLANK_OPTION if (o is None or str(o).strip() == "") else str(o) for o in v]

    @property
    def labels(self) -> list[str]:
        return split_labels(self.category)

    @property
    def answer_text(self) -> str:
        return self.options[LETTERS.index(self.answer)]


class OpenItem(BaseModel):
    """One open-ended question with its free-text ground truth."""

    index: str
    question: str
    answer: str
    category: str
    image_id: str = ""
    file_name: str = ""
    image: str = ""
    kind: str = ""  # "report" / "location" / "write_report" (generated rows); "" for official rows
    source: str = ""  # "official" / "report:<reports item_id>[#3]" (the generated report) / "rule:<kind>"

    @property
    def labels(self) -> list[str]:
        return split_labels(self.category)
