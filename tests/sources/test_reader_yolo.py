"""YOLO reader: class maps, dataset.yaml, polygons, scores, pairing of labels and images."""

from __future__ import annotations

import pytest

from mmoral_pipeline.domain.taxonomy import Category
from mmoral_pipeline.sources.yolo import parse_yolo_line

from .conftest import make_sources, reasons


def test_parse_yolo_line():
    assert parse_yolo_line("3 0.5 0.5 0.1 0.2") == (3, [0.5, 0.5, 0.1, 0.2], None, False)
    assert parse_yolo_line("3 0.5 0.5 0.1 0.2 0.87") == (3, [0.5, 0.5, 0.1, 0.2], 0.87, False)
    assert parse_yolo_line("1 0.1 0.1 0.2 0.1 0.2 0.3")[3] is True
    assert isinstance(parse_yolo_line("1.5 0.1 0.1 0.2 0.1"), str)
    assert isinstance(parse_yolo_line("a b c d e"), str)
    assert isinstance(parse_yolo_line("1 0.1 0.1 0.2 0.1 0.2 0.3 0.4"), str)


def test_yolo_boxes_polygons_scores_and_pairing(tmp_path, write_image, ingest):
    root = tmp_path / "y"
    write_image(root / "images" / "a.png", (200, 100))
    write_image(root / "images" / "sub" / "b.jpg", (100, 100))
    write_image(root / "images" / "neg.png", (100, 100))  # no label file: no findings
    (root / "labels" / "sub").mkdir(parents=True)
    (root / "labels" / "a.txt").write_text("0 0.5 0.5 0.1 0.2 0.9\n\n1 0.1 0.1 0.3 0.1 0.3 0.3\n")
    (root / "labels" / "sub" / "b.txt").write_text("2 0.25 0.5 0.1 0.4")
    (root / "labels" / "orphan.txt").write_text("0 0.5 0.5 0.1 0.1\n0 0.5 0.5 0.1 0.1\n")
    (root / "labels" / "classes.txt").write_text("caries\nbridge\n")
    batch = ingest(root, "yolo", options={"class_map": {"0": "caries", "1": "bridge", "2": "Tooth 46"}})
    s, sf = make_sources(root, "yolo", options={"class_map": {0: "x"}})
    from mmoral_pipeline.sources import list_source_items

    assert list_source_items(s, sf) == ["a", "neg", "orphan", "sub/b"]
    assert sorted(i.file_name for i in batch.images) == ["images/a.png", "images/neg.png", "images/sub/b.jpg"]
    caries, bridge, tooth = batch.annotations
    assert (caries.category, caries.score, caries.box, caries.record) == (
        Category.CARIES,
        0.9,
        [90.0, 40.0, 110.0, 60.0],
        "line 1",
    )
    assert (
        bridge.record == "line 3"
        and bridge.polygon == [20.0, 10.0, 60.0, 10.0, 60.0, 30.0]
        and bridge.box == [20.0, 10.0, 60.0, 30.0]
    )
    assert (tooth.category, tooth.fdi, tooth.source_file) == (Category.TOOTH, 46, "labels/sub/b.txt")
    assert tooth.box == [20.0, 30.0, 30.0, 70.0]
    assert reasons(batch) == {"image_missing": 3}  # orphan.txt: its image and its 2 lines


def test_dataset_yaml_list_names(tmp_path, write_image, ingest):
    root = tmp_path / "y"
    write_image(root / "images" / "a.png", (100, 100))
    (root / "labels").mkdir()
    (root / "labels" / "a.txt").write_text("0 0.5 0.5 0.1 0.1\n1 0.5 0.5 0.1 0.1\n")
    (root / "data.yaml").write_text("names: ['Filling - Crown', '21 - Central Incisor']\n")
    batch = ingest(root, "yolo", options={"dataset_yaml": "data.yaml"})
    assert [(a.category, a.fdi) for a in batch.annotations] == [(Category.FILLING, None), (Category.TOOTH, 21)]


def test_missing_class_map_names_the_source(tmp_path):
    s, sf = make_sources(tmp_path, "yolo", name="no_names")
    from mmoral_pipeline.sources import read_source

    with pytest.raises(ValueError, match=r"'no_names'.*never guessed"):
        read_source(s, sf)
    s, sf = make_sources(tmp_path, "yolo", name="bad_yaml", options={"dataset_yaml": "nope.yaml"})
    with pytest.raises(ValueError, match="bad_yaml"):
        read_source(s, sf)
