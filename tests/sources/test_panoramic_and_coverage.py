"""Issue 13 items 1 and 4: every image carries its source's label coverage, and images whose shape
rules out a panoramic X-ray are quarantined as `not_panoramic` (with their annotations)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from mmoral_pipeline.config import PanoramicLimits, load_sources
from mmoral_pipeline.domain.coverage import ALL_CATEGORIES
from mmoral_pipeline.domain.records import RejectReason
from mmoral_pipeline.domain.taxonomy import Category as C
from mmoral_pipeline.sources import read_source
from mmoral_pipeline.sources.base import panoramic_problem

from .conftest import balanced, make_sources, reasons
from .test_reader_coco import write_coco

OPG = PanoramicLimits()  # the production defaults


def two_image_coco(root: Path, write_image, bad_size: tuple[int, int]) -> None:
    write_image(root / "images" / "opg.png", (1208, 604))
    write_image(root / "images" / "film.png", bad_size)
    images = [{"id": 1, "file_name": "opg.png"}, {"id": 2, "file_name": "film.png"}]
    anns = [{"id": k, "image_id": 1 + k % 2, "category_id": 2, "bbox": [10, 10, 40, 40]} for k in range(4)]
    write_coco(root, images, anns)


def test_a_periapical_film_is_quarantined_with_its_annotations(tmp_path: Path, write_image, ingest):
    two_image_coco(tmp_path, write_image, (604, 444))  # the xray-yolo periapical film's size
    batch = ingest(tmp_path, "coco", panoramic=OPG)
    assert [i.file_name for i in batch.images] == ["images/opg.png"] and len(batch.annotations) == 2
    assert reasons(batch, "image") == {"not_panoramic": 1} and reasons(batch, "annotation") == {"image_rejected": 2}
    (film,) = [r for r in batch.rejections if r.reason == RejectReason.NOT_PANORAMIC]
    assert "604x444" in film.message and "1.36" in film.message and "panoramic: {min_aspect" in film.message
    assert balanced(batch) == {"images_seen": 2, "images_accepted": 1, "images_rejected": 1,
                               "annotations_seen": 4, "annotations_accepted": 2, "annotations_rejected": 2}


@pytest.mark.parametrize(
    ("size", "why"), [((444, 604), "portrait"), ((512, 512), "square"), ((2400, 600), "4:1 strip")]
)
def test_other_shapes_that_are_no_opg(tmp_path: Path, write_image, ingest, size, why):
    two_image_coco(tmp_path, write_image, size)
    assert reasons(ingest(tmp_path, "coco", panoramic=OPG), "image") == {"not_panoramic": 1}, why


def test_limits_per_source_and_per_format(tmp_path: Path, write_image, ingest):
    two_image_coco(tmp_path, write_image, (512, 512))
    # a source of resized square OPGs says so in the sources file: its own `panoramic:` wins
    doc = {"panoramic": {"min_aspect": 1.5}, "sources": [
        {"name": "squares", "format": "coco", "root": str(tmp_path), "panoramic": {"min_aspect": 0.9}},
        {"name": "plain", "format": "coco", "root": str(tmp_path)},
        {"name": "ufba", "format": "ufba_masks", "root": str(tmp_path)},
    ]}
    (tmp_path / "sources.yaml").write_text(yaml.safe_dump(doc))
    sf = load_sources(tmp_path / "sources.yaml")
    assert reasons(read_source(sf.source("squares"), sf), "image") == {}
    assert reasons(read_source(sf.source("plain"), sf), "image") == {"not_panoramic": 1}
    assert sf.panoramic_limits(sf.source("ufba")).min_aspect == 0.9  # UFBA-425 ships 512x512 squares
    with pytest.raises(ValueError, match="unknown keys"):
        load_sources_text(
            tmp_path, {"sources": [{"name": "x", "format": "coco", "root": ".", "panoramic": {"min_aspct": 1}}]}
        )


def load_sources_text(tmp_path: Path, doc: dict):
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(doc))
    return load_sources(tmp_path / "bad.yaml")


def test_minimum_size_when_configured():
    small = PanoramicLimits(min_width=1000, min_height=400)
    assert "smaller than a readable" in panoramic_problem(700, 350, small)
    assert panoramic_problem(700, 350, OPG) is None and panoramic_problem(2943, 1435, small) is None


def test_every_real_opg_passes_the_defaults(realdata: Path):
    """The defaults are set from the real sources: none of their OPGs is quarantined."""
    sf = load_sources(Path(__file__).resolve().parents[2] / "docs" / "examples" / "realdata_sources.yaml")
    for spec in sf.sources:
        batch = read_source(spec, sf)
        assert reasons(batch, "image") == {}, spec.name
        assert batch.images
    dentex = json.loads((realdata / "dentex" / "train_quadrant_enumeration_disease.json").read_text())
    assert all(
        panoramic_problem(i["width"], i["height"], OPG) is None for i in dentex["images"]
    )  # 705 sizes, 1.60-2.33


# --------------------------------------------------------------------------- coverage


def covers_of(batch) -> set[frozenset]:
    return {frozenset(i.covers) for i in batch.images}


def test_coverage_defaults_of_the_real_sources(realdata: Path, ingest):
    assert covers_of(ingest(realdata / "dc1000_caries", "dc1000_masks")) == {frozenset({C.CARIES})}
    assert covers_of(ingest(realdata / "ufba_masks", "ufba_masks")) == {frozenset({C.TOOTH})}
    yolo = ingest(
        realdata / "xray_yolo", "yolo", options={"class_map": {1: "filling", 2: "implant", 3: "root canal treatment"}}
    )
    assert covers_of(yolo) == {frozenset({C.FILLING, C.IMPLANT, C.ROOT_CANAL_TREATMENT})}
    # labelme has no class list: the labels found (AKUDENTAL: teeth, fillings, bridges) unless `covers:` says more
    assert covers_of(ingest(realdata / "akudental_labelme", "labelme")) == {frozenset({C.TOOTH, C.FILLING, C.BRIDGE})}
    declared = ingest(realdata / "akudental_labelme", "labelme", covers=["teeth", "filling", "bridge", "implant"])
    assert covers_of(declared) == {frozenset({C.TOOTH, C.FILLING, C.BRIDGE, C.IMPLANT})}


def test_coverage_of_yolo_dataset_yaml_coco_and_dentex(realdata: Path, tmp_path: Path, write_image, ingest):
    from mmoral_pipeline.sources.coverage import source_coverage

    spec, sf = make_sources(
        realdata / "akudental_yolo", "yolo", options={"labels": ".", "dataset_yaml": "dataset.yaml"}
    )
    batch = read_source(spec, sf)
    assert source_coverage(spec, sf, batch)[0] == {C.TOOTH, C.BRIDGE, C.FILLING, C.IMPLANT}  # its 35 class names
    two_image_coco(tmp_path, write_image, (1208, 604))
    # the file's categories list: tooth, periapical lesion, "36", "Tooth 11", Root Canal, bone loss (and an unknown one)
    assert covers_of(ingest(tmp_path, "coco")) == {
        frozenset({C.TOOTH, C.PERIAPICAL_LESION, C.ROOT_CANAL_TREATMENT, C.BONE_LOSS})
    }
    spec, sf = make_sources(tmp_path, "dentex")
    assert source_coverage(spec, sf, batch)[0] == {
        C.TOOTH,
        C.IMPACTED_TOOTH,
        C.CARIES,
        C.DEEP_CARIES,
        C.PERIAPICAL_LESION,
    }


def test_mmoral_json_reads_each_documents_assessed_list(tmp_path: Path, write_image, ingest):
    write_image(tmp_path / "a.png", (200, 100))
    write_image(tmp_path / "b.png", (200, 100))
    box = [10, 10, 50, 50]
    (tmp_path / "a.json").write_text(json.dumps({"image_id": "a", "file_name": "a.png", "width": 200, "height": 100,
                                                 "unknown_tooth_findings": [{"category": "caries", "bbox": box}],
                                                 "assessed": ["caries"]}))
    (tmp_path / "b.json").write_text(json.dumps({"image_id": "b", "file_name": "b.png", "width": 200, "height": 100}))
    batch = ingest(tmp_path, "mmoral_json")
    assert {i.image_id: frozenset(i.covers) for i in batch.images} == {"a": {C.CARIES}, "b": ALL_CATEGORIES}
    (tmp_path / "b.json").write_text(json.dumps({"image_id": "b", "file_name": "b.png", "assessed": ["cavities?"],
                                                 "teeth": [{"tooth_id": 11, "bbox": box}]}))
    bad = ingest(tmp_path, "mmoral_json")
    assert reasons(bad, "image") == {"malformed_record": 1} and reasons(bad, "annotation") == {"image_rejected": 1}
