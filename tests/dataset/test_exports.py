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

from .world import H, W, generated


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
    return {
        r["sample_id"]: message_texts(json.loads(r["messages"]))
        for r in samples.filter(pl.col("split") == split).iter_rows(named=True)
    }


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
    rows = {r["sample_id"]: r for r in samples.iter_rows(named=True)}
    for r in trl:
        (rel,) = r["images"]
        sha = rows[r["sample_id"]]["image_sha256"]
        assert rel == f"images/{sha[:2]}/{sha}.png" and not Path(rel).is_absolute()
        for folder in ("trl", "llamafactory"):
            assert (out / folder / rel).read_bytes() == Path(rows[r["sample_id"]]["image_path"]).read_bytes()


def test_sharegpt_layout_and_dataset_info(out) -> None:
    info = json.loads((out / "llamafactory" / "dataset_info.json").read_text())
    assert set(info) == {"mmoral_train", "mmoral_val"}
    entry = info["mmoral_train"]
    assert entry["formatting"] == "sharegpt" and entry["columns"] == {"messages": "messages", "images": "images"}
    assert entry["tags"]["user_tag"] == "user" and entry["tags"]["assistant_tag"] == "assistant"
    for e in info.values():
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


def test_each_export_folder_holds_exactly_its_images_once(samples, out) -> None:
    trainval = samples.filter(pl.col("split") != "bench")
    for folder in ("llamafactory", "trl"):
        files = sorted(p for p in (out / folder / "images").rglob("*") if p.is_file())
        assert len(files) == trainval["image_id"].n_unique() == len({p.read_bytes() for p in files})
        assert {p.stem for p in files} == set(trainval["image_sha256"])  # no held-out X-ray travels with training data


def test_images_with_the_same_file_name_do_not_collide_and_stale_images_go(samples, tmp_path: Path) -> None:
    trainval = samples.filter(pl.col("split") == "train")
    first, second = trainval["image_path"].unique().sort().to_list()[:2]
    same_name = {first: tmp_path / "a" / "x.png", second: tmp_path / "b" / "x.png"}
    for src, dst in same_name.items():
        dst.parent.mkdir()
        dst.write_bytes(Path(src).read_bytes())
    renamed = trainval.with_columns(pl.col("image_path").replace({k: str(v) for k, v in same_name.items()}))
    info = write_trl(renamed, tmp_path / "trl", hf_dataset=False)
    rows = read_jsonl(tmp_path / "trl" / "train.jsonl")
    by_source = {str(same_name[p]): set() for p in same_name}
    for r, path in zip(rows, renamed["image_path"], strict=True):
        if path in by_source:
            by_source[path].add(r["images"][0])
    assert all(len(v) == 1 for v in by_source.values()) and len(set().union(*by_source.values())) == 2
    assert (
        info["images"]["images"] == renamed["image_id"].n_unique()
        and info["images"]["linked"] + info["images"]["copied"] > 0
    )
    # a second export of fewer samples removes the images nobody references any more
    fewer = renamed.filter(pl.col("image_path") == str(same_name[first]))
    again = write_trl(fewer, tmp_path / "trl", hf_dataset=False)
    assert again["images"]["removed"] == renamed["image_id"].n_unique() - 1
    assert len([p for p in (tmp_path / "trl" / "images").rglob("*") if p.is_file()]) == 1


def test_an_export_moved_to_another_machine_loads_there(samples, out, tmp_path: Path) -> None:
    """tar the export folders, unpack them elsewhere with the original images gone, load with every loader."""
    import shutil
    import tarfile

    import datasets

    from mmoral_pipeline.training.data import load_image
    from mmoral_pipeline.training.data import read_jsonl as training_read

    archive = tmp_path / "exports.tar"
    with tarfile.open(archive, "w") as tar:
        for folder in ("llamafactory", "trl", "bench"):
            tar.add(out / folder, arcname=folder)
    originals = Path(samples["image_path"][0]).parent
    hidden = originals.with_name(originals.name + "_away")
    originals.rename(hidden)  # the machine that made the export is out of reach
    try:
        there = tmp_path / "training_machine"
        with tarfile.open(archive) as tar:
            tar.extractall(there, filter="data")
        # LLaMA-Factory's layout: dataset_dir = the folder; relative images under it
        info = json.loads((there / "llamafactory" / "dataset_info.json").read_text())
        for entry in info.values():
            records = json.loads((there / "llamafactory" / entry["file_name"]).read_text())
            assert records and all((there / "llamafactory" / r["images"][0]).is_file() for r in records)
        lf = datasets.load_dataset("json", data_files=str(there / "llamafactory" / "mmoral_train.json"), split="train")
        assert lf.num_rows == samples.filter(pl.col("split") == "train").height
        # the project's training loader resolves the JSONL's relative images and opens them
        rows = training_read(there / "trl" / "train.jsonl")
        assert rows and all(Path(r["images"][0]).is_relative_to(there) for r in rows)
        assert load_image(rows[0]["images"][0]).size == (W, H)
        # the HF dataset: the same relative images, next to it
        dd = datasets.load_from_disk(str(there / "trl" / "hf_dataset"))
        assert dd["train"]["images"] == [[str(Path(r["images"][0]).relative_to(there / "trl"))] for r in rows]
        assert all((there / "trl" / r[0]).is_file() for r in dd["val"]["images"])
        # bench TSVs carry their images inside
        assert decode_image(read_closed_tsv(there / "bench" / "closed_ended.tsv")[0].image).size[0] > 0
        shutil.rmtree(there)
    finally:
        hidden.rename(originals)
