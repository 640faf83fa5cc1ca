from __future__ import annotations

import csv
import json

from PIL import Image

from mmoral_pipeline.evaluation.items import BLANK_OPTION, ClosedItem, OpenItem
from mmoral_pipeline.evaluation.tsv import (
    CLOSED_COLUMNS,
    OPEN_COLUMNS,
    decode_image,
    encode_image_jpeg,
    read_bench_tsv,
    read_closed_tsv,
    read_open_tsv,
    write_closed_tsv,
    write_open_tsv,
)


def _img(color: int, size=(64, 32)) -> str:
    return encode_image_jpeg(Image.new("RGB", size, (color, color, color)))


def test_blank_option_is_literal_none(tmp_path):
    p = tmp_path / "closed.tsv"
    with open(p, "w", newline="") as fh:
        w = csv.writer(fh, delimiter="\t")
        w.writerow(CLOSED_COLUMNS)
        w.writerow(
            ["7", _img(10), "Which tooth is missing?", "#36", "", "#46", "#26", "B", "Teeth", "1.0", "001.jpg", "MCQ"]
        )
    [item] = read_closed_tsv(p)
    assert item.options == ["#36", BLANK_OPTION, "#46", "#26"]
    assert item.answer_text == "None"


def test_closed_round_trip_keeps_rows_and_images(tmp_path):
    items = [
        ClosedItem(
            index=str(i),
            image=_img(40 * i),
            question=f"Question {i}?\twith tab",
            options=["1", "2", "None", f"opt {i}"],
            answer="ABCD"[i % 4],
            category="Teeth,Patho" if i % 2 else "Jaw",
            image_id=f"im{i}",
            file_name=f"im{i}.jpg",
        )
        for i in range(5)
    ]
    p = write_closed_tsv(items, tmp_path / "c.tsv")
    with open(p) as fh:
        assert next(csv.reader(fh, delimiter="\t")) == list(CLOSED_COLUMNS)
    back = read_bench_tsv(p)
    keep = ("index", "image", "question", "options", "answer", "category", "image_id", "file_name", "type")
    assert [b.model_dump(include=set(keep)) for b in back] == [it.model_dump(include=set(keep)) for it in items]
    assert decode_image(back[3].image).size == (64, 32)


def test_open_round_trip_with_multiline_answers(tmp_path):
    items = [
        OpenItem(
            index=str(i),
            image=_img(9 * i),
            question=f"Q{i}",
            category="Report",
            answer=f'1) Teeth: caries on tooth 3{i}.\n2) Jaw: no bone loss.\n3) Summary: "restore".',
        )
        for i in range(3)
    ]
    p = write_open_tsv(items, tmp_path / "o.tsv")
    with open(p) as fh:
        assert next(csv.reader(fh, delimiter="\t")) == list(OPEN_COLUMNS)
    back = read_open_tsv(p)
    assert [(b.index, b.question, b.answer, b.category, b.image) for b in back] == [
        (i.index, i.question, i.answer, i.category, i.image) for i in items]
    assert isinstance(read_bench_tsv(p)[0], OpenItem)
    assert decode_image(back[0].image).mode == "RGB"


def test_official_closed_sample_imports(closed_sample_tsv):
    items = read_closed_tsv(closed_sample_tsv)
    assert len(items) == 4
    assert [it.index for it in items] == ["1", "11", "100", "264"]
    for it in items:
        assert it.answer in "ABCD" and len(it.options) == 4 and it.labels
        img = decode_image(it.image)
        assert max(img.size) <= 1100 and min(img.size) > 100  # downscaled OPG, landscape
        assert img.width > img.height
    assert items[3].question.startswith("What disease is present in this region [1833, 815, 1903, 888]")


def test_official_question_list_blank_options_become_none(official_questions_json, tmp_path):
    # The no-image JSON carries the same rows; the blank-option row must import as "None" and be answerable.
    rows = json.loads(official_questions_json.read_text())

    def cell(v):  # the JSON was written by pandas: a blank TSV cell became NaN
        return "" if isinstance(v, float) else str(v)

    p = tmp_path / "official_no_images.tsv"
    with open(p, "w", newline="") as fh:
        w = csv.writer(fh, delimiter="\t")
        w.writerow(CLOSED_COLUMNS)
        for r in rows:
            w.writerow([r["index"], "", r["question"], *(cell(r[f"option{k}"]) for k in range(1, 5)), r["answer"],
                        r["category"], r["image_id"], r["file_name"], r["type"]])
    items = read_closed_tsv(p)
    assert len(items) == len(rows)
    blank_rows = [it for it in items if BLANK_OPTION in it.options and
                  any(cell(r[f"option{k}"]).strip() == "" for r in rows if r["index"] == it.index for k in range(1, 5))]
    assert len(blank_rows) >= 30  # 38 blank cells in the released file
    # Row 41 ("None" = no treatment) has its blank option as the right answer.
    assert "41" in [it.index for it in blank_rows if it.answer_text == "None"]
