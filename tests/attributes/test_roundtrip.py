"""MMOral per-image JSON: write the documents, read them back through the MMOral reader, rebuild:
the same attributes (annotation ids aside: the reader mints its own) and the same captions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image

from mmoral_pipeline import tables
from mmoral_pipeline.attributes.build import build_image_attributes
from mmoral_pipeline.attributes.caption import render_caption
from mmoral_pipeline.attributes.mmoral_io import write_mmoral_json
from mmoral_pipeline.attributes.synth_tables import cases_to_tables
from mmoral_pipeline.config import SourcesFile, SourceSpec
from mmoral_pipeline.domain.attributes import ImageAttributes
from mmoral_pipeline.sources import read_source
from mmoral_pipeline.synth import case_for

from .test_caption import golden_document


def without_ids(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: without_ids(v) for k, v in node.items() if k != "annotation_ids"}
    if isinstance(node, list):
        return [without_ids(v) for v in node]
    return node


def read_back(folder: Path, docs: list[ImageAttributes]) -> list[ImageAttributes]:
    for doc in docs:  # the reader opens each image, so give it one of the right size
        path = folder / doc.file_name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("L", (doc.width, doc.height), 0).save(path)
    write_mmoral_json(docs, folder / "docs")
    spec = SourceSpec(name="mm", format="mmoral_json", root=str(folder), annotations="docs")
    batch = read_source(spec, SourcesFile(sources=[spec], base_dir=str(folder)))
    assert not batch.rejections, batch.rejections[:3]
    images = tables.records_to_frame(batch.images, tables.RAW_IMAGES, partition="mm")
    anns = tables.records_to_frame(batch.annotations, tables.RAW_ANNOTATIONS, partition="mm")
    return build_image_attributes(images, anns).documents


def test_documents_survive_mmoral_json_round_trip(tmp_path: Path, mmoral_home: Path):
    images, anns = cases_to_tables([case_for(5, i, 700, 350) for i in range(6)], scores=True)
    docs = build_image_attributes(images, anns).documents + [golden_document()]
    assert any(d.unknown_tooth_findings for d in docs) and any(d.missing_teeth for d in docs)
    assert any(d.recommendations for d in docs) and any(d.jaw.bone_loss for d in docs)
    back = read_back(tmp_path / "mm", docs)
    assert [d.image_id for d in back] == sorted(d.image_id for d in docs)
    by_id = {d.image_id: d for d in docs}
    for doc in back:
        original = by_id[doc.image_id]
        assert without_ids(doc.model_dump(mode="json")) == without_ids(original.model_dump(mode="json"))
        assert render_caption(doc) == render_caption(original)
