"""Exports round-trip: sharegpt and TRL give the same samples; the HF dataset and the bench TSVs read back."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import polars as pl
import pytest

from mmoral_pipeline.dataset.assemble import CLOSED_TASKS, OPEN_BENCH_TASKS, assemble_samples, message_texts
from mmoral_pipeline.dataset.exports import (
    IMAGE_PLACEHOLDER,
    conversation_of,
    read_jsonl,
    write_bench_tsvs,
    write_llamafactory,
    write_trl,
)
from mmoral_pipeline.evaluation.tsv import CLOSED_COLUMNS, OPEN_COLUMNS, decode_image, read_closed_tsv, read_open_tsv

from .world import generated


@pytest.fixture(scope="module")
def samples(world) -> pl.DataFrame:
    frame, _ = assemble_samples(generated(world), world.tables["raw_images"], val_fraction=0.2, holdout_fraction=0.25)
    return frame


@pytest.fixture(scope="module")
def out(samples, tmp_path_factory) -> Path:
    root = Path(tmp_path_factory.mktemp("exports"))
    write_llamafactory(samples, root / "llamafactory")
    write_trl(samples, root / "trl", hf_dataset=True)
    write_bench_tsvs(samples, root / "bench", image_max_side=64)
    return root


def _expected(samples: pl.DataFrame, split: str) -> dict[str, list[tuple[str, str]]]:
    return {r["sample_id"]: message_texts(json.loads(r["messages"])) for r in samples.filter(pl.col("split") == split).iter_rows(named=True)}


@pytest.mark.parametrize("split", ["train", "val"])
def test_sharegpt_and_trl_hold_the_same_samples(samples, out, split) -> None:
    name = "mmoral_train" if split == "train" else "mmoral_val"
    sharegpt = json.loads((out / "llamafactory" / f"{name}.json").read_text())
    trl = read_jsonl(out / "trl" / f"{split}.jsonl")
    expected = _expected(samples, split)
    assert expected, f"no {split} samples in the test world"
    assert {r["sample_id"]: conversation_of(r) for r in sharegpt} == expected
    assert {r["sample_id"]: conversation_of(r) for r in trl} == expected
    assert [r["images"] for r in sharegpt] == [r["images"] for r in trl]
    paths = dict(zip(samples["sample_id"], samples["image_path"], strict=True))
    for r in trl:
        assert r["images"] == [str(Path(paths[r["sample_id"]]).resolve())] and Path(r["images"][0]).is_absolute()


def test_sharegpt_layout_and_dataset_info(out) -> None:
    info = json.loads((out / "llamafactory" / "dataset_info.json").read_text())
    assert set(info) == {"mmoral_train", "mmoral_val"}
    entry = info["mmoral_train"]
    assert entry["formatting"] == "sharegpt" and entry["columns"] == {"messages": "messages", "images": "images"}
    assert entry["tags"]["user_tag"] == "user" and entry["tags"]["assistant_tag"] == "assistant"
    for name, e in info.items():
        records = json.loads((out / "llamafactory" / e["file_name"]).read_text())
        for r in records:
            assert r["messages"][0]["content"].startswith(IMAGE_PLACEHOLDER)
            assert sum(m["content"].count(IMAGE_PLACEHOLDER) for m in r["messages"]) == len(r["images"]) == 1
            assert all(isinstance(m["content"], str) for m in r["messages"])


def test_trl_rows_have_exactly_the_training_layout(out) -> None:
    rows = read_jsonl(out / "trl" / "train.jsonl")
    for r in rows:
        assert list(r) == ["sample_id", "task_type", "images", "messages"]
        first = r["messages"][0]
        assert first["role"] == "user" and first["content"][0] == {"type": "image"}
        assert first["content"][1]["type"] == "text" and first["content"][1]["text"]
        for m in r["messages"][1:]:
            assert all(p["type"] == "text" and set(p) == {"type", "text"} for p in m["content"])
    assert {r["task_type"] for r in rows} >= {"report", "dialogue", "vqa_closed"}


def test_hf_dataset_loads_back_with_datasets(out) -> None:
    import datasets

    dd = datasets.load_from_disk(str(out / "trl" / "hf_dataset"))
    assert set(dd) == {"train", "val"}
    for split in ("train", "val"):
        jsonl = read_jsonl(out / "trl" / f"{split}.jsonl")
        ds = dd[split]
        assert ds.num_rows == len(jsonl)
        assert ds["sample_id"] == [r["sample_id"] for r in jsonl]
        assert [conversation_of(r) for r in ds] == [conversation_of(r) for r in jsonl]
        assert ds[0]["images"] == jsonl[0]["images"]


def test_training_reader_accepts_the_jsonl(out) -> None:
    from mmoral_pipeline.training.data import normalise_messages
    from mmoral_pipeline.training.data import read_jsonl as training_read

    rows = training_read(out / "trl" / "train.jsonl")
    assert rows and all(Path(r["images"][0]).exists() for r in rows)
    parts = normalise_messages(rows[0]["messages"])
    assert parts[0]["content"][0] == {"type": "image"}


def test_bench_tsvs_read_back(samples, out) -> None:
    bench = samples.filter(pl.col("split") == "bench")
    closed_path, open_path = out / "bench" / "closed_ended.tsv", out / "bench" / "open_ended.tsv"
    with open(closed_path, newline="") as fh:
        assert tuple(next(csv.reader(fh, delimiter="\t"))) == CLOSED_COLUMNS
    with open(open_path, newline="") as fh:
        assert tuple(next(csv.reader(fh, delimiter="\t"))) == OPEN_COLUMNS
    closed = read_closed_tsv(closed_path)
    opened = read_open_tsv(open_path)
    assert len(closed) == bench.filter(pl.col("task_type").is_in(list(CLOSED_TASKS))).height > 0
    assert len(opened) == bench.filter(pl.col("task_type").is_in(list(OPEN_BENCH_TASKS))).height > 0
    bench_images = set(bench["image_id"])
    for it in closed:
        assert it.image_id in bench_images and it.answer in "ABCD" and len(it.options) == 4
        img = decode_image(it.image)
        assert max(img.size) == 64
    assert all(decode_image(it.image).size[0] > 0 for it in opened)
    assert any(it.category == "Report" for it in opened)
    # the benchmark never contains a train/val image
    trainval = set(samples.filter(pl.col("split") != "bench")["image_id"])
    assert not ({it.image_id for it in closed} & trainval)
    stems = set(bench["question_stem"])
    assert all(it.question in stems for it in closed)
