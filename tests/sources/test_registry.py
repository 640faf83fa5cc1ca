"""The format registry and the two entry points the Dagster shell calls."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from mmoral_pipeline.sources import READERS, get_reader, list_source_items, read_source

from .conftest import make_sources

FORMATS = {
    "coco",
    "dentex",
    "labelme",
    "yolo",
    "ufba_masks",
    "dc1000_masks",
    "tufts",
    "mmoral_json",
    "manifest",
    "dicom",
    "images",
}


def test_every_format_is_registered_and_follows_the_contract():
    assert set(READERS) == FORMATS
    for fmt, target in READERS.items():
        module, cls = target.split(":")
        reader = get_reader(fmt)
        assert isinstance(reader, getattr(importlib.import_module(module), cls))
        assert callable(reader.list_items) and callable(reader.read)


def test_unknown_format_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown source format 'pascal_voc'"):
        get_reader("pascal_voc")


@pytest.mark.parametrize("fmt", sorted(FORMATS - {"yolo"}))
def test_an_empty_folder_reads_as_an_empty_balanced_batch(tmp_path: Path, fmt: str):
    spec, sf = make_sources(tmp_path, fmt)
    items = list_source_items(spec, sf)
    batch = read_source(spec, sf)
    ok, _ = batch.counts_balance()
    assert ok and not batch.images and not batch.annotations
    # single-file formats report their missing file once, in a document item; folders are just empty
    assert len(batch.rejections) == len(items) <= 1


def test_read_source_reads_only_the_given_items(tmp_path: Path, write_image):
    for name in ("a", "b", "c"):
        write_image(tmp_path / f"{name}.png", (10, 10))
        (tmp_path / f"{name}.json").write_text(f'{{"shapes": [], "imagePath": "{name}.png"}}')
    spec, sf = make_sources(tmp_path, "labelme")
    assert list_source_items(spec, sf) == ["a.json", "b.json", "c.json"]
    batch = read_source(spec, sf, ["c.json", "a.json"])
    assert [i.file_name for i in batch.images] == ["a.png", "c.png"]
    assert read_source(spec, sf, []).images_seen == 0
