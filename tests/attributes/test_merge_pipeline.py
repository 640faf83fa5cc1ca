"""Issue 13 item 3 through the real pipeline: two sources labelling the same X-rays (same sha256)
give one attribute document per X-ray, owned by one batch, with the union of their coverage; the
other copy is kept out of generation and the split; lineage reaches both sources; a stale owner
document fails the blocking accounting check with the fix in its description."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import yaml
from PIL import Image

from mmoral_pipeline.defs.attributes import attributes_assets, attributes_checks
from mmoral_pipeline.defs.experts import expert_annotations_batch
from mmoral_pipeline.defs.ingest import ingest_assets, ingest_checks
from mmoral_pipeline.defs.io_manager import ParquetIOManager, read_table
from mmoral_pipeline.defs.partitions import BATCHES
from mmoral_pipeline.defs.resources import SourcesResource
from mmoral_pipeline.domain.attributes import ImageAttributes
from mmoral_pipeline.domain.taxonomy import Category as C
from mmoral_pipeline.synth import generate

REPO = Path(__file__).resolve().parents[2]
TOOTH_ID, CARIES_IDS = 1, {2, 3}  # synthetic COCO category ids: tooth; caries, deep caries


def split_layers(tmp_path: Path, n: int = 3) -> Path:
    """Synthetic X-rays written twice: 'a_teeth' has only their tooth boxes, 'b_caries' only their caries."""
    generate(n=n, seed=6, out=tmp_path / "synth", fmt="coco", width=1400, height=700)
    doc = json.loads((tmp_path / "synth" / "annotations.json").read_text())
    cat_names = {c["id"]: c["name"] for c in doc["categories"]}
    assert cat_names[TOOTH_ID] == "tooth" and {cat_names[i] for i in CARIES_IDS} == {"caries", "deep caries"}
    for name, keep in (("a_teeth", {TOOTH_ID}), ("b_caries", CARIES_IDS)):
        shutil.copytree(tmp_path / "synth" / "images", tmp_path / name / "images")
        layer = {**doc, "annotations": [a for a in doc["annotations"] if a["category_id"] in keep]}
        (tmp_path / name / "annotations.json").write_text(json.dumps(layer))
    assert any(a["category_id"] in CARIES_IDS for a in doc["annotations"])
    sources = {"sources": [
        {"name": "a_teeth", "format": "coco", "root": "a_teeth", "covers": ["tooth"]},
        {"name": "b_caries", "format": "coco", "root": "b_caries", "covers": ["caries", "deep caries"]},
    ]}
    path = tmp_path / "sources.yaml"
    path.write_text(yaml.safe_dump(sources))
    return path


def test_synthetic_pair_merges_into_one_document_through_mmoral_materialize(tmp_path: Path):
    sources = split_layers(tmp_path)
    home = tmp_path / "home"
    env = {**os.environ, "PYTHONPATH": str(REPO), "MMORAL_HOME": str(home), "DAGSTER_HOME": str(tmp_path / "dh"),
           "MMORAL_SOURCES": str(sources)}
    env.pop("MMORAL_LOG_LEVEL", None)
    done = subprocess.run(
        [sys.executable, "-m", "mmoral_pipeline.cli", "materialize", "--quiet",
         "--select", "group:ingest or group:attributes or group:generation or key:instruction_samples"],
        env=env, capture_output=True, text=True, timeout=600, cwd=REPO, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "in 3 stages" in done.stdout and "FAIL" not in done.stdout  # ingest; copies + documents; the copies check

    raw = read_table("raw_images", base_dir=str(home), partitions="all")
    docs = read_table("image_attributes", base_dir=str(home), partitions="all")
    assert raw.height == 6 and raw["sha256"].n_unique() == 3
    # one document per X-ray, owned by the first batch, with both sources' coverage and annotations
    assert docs.height == 3 and set(docs["partition"]) == {"a_teeth"}
    assert docs.join(raw.select("image_id", "sha256"), on="image_id")["sha256"].n_unique() == 3
    for row in docs.iter_rows(named=True):
        assert row["assessed"] == ["tooth", "caries", "deep_caries"] and row["sources"] == ["a_teeth", "b_caries"]
        assert len(row["copies"]) == 1 and row["copies"][0].startswith("b_caries-")
    merged = [ImageAttributes.model_validate_json(d) for d in docs["document"]]
    on_teeth = [c for d in merged for t in d.teeth for c in t.conditions]
    assert on_teeth and {c.category for c in on_teeth} <= {C.CARIES, C.DEEP_CARIES}  # b's caries found a's teeth
    outcomes = read_table("annotation_outcomes", base_dir=str(home), partitions="all")
    b_anns = read_table("raw_annotations", base_dir=str(home), partitions="all").filter(pl.col("source") == "b_caries")
    in_b = outcomes.filter(pl.col("partition") == "b_caries")
    assert set(in_b["outcome"]) == {"in_owner_document"} and in_b.height == b_anns.height
    # the copy is generated, split and sampled once, under the owner's id
    for table in ("reports", "vqa_items", "dialogues", "attribute_tasks"):
        assert set(read_table(table, base_dir=str(home), partitions="all")["image_id"]) == set(docs["image_id"]), table
    samples = read_table("instruction_samples", base_dir=str(home), partitions="all")
    assert (
        set(samples["image_id"]) == set(docs["image_id"])
        and samples.group_by("image_id").agg(pl.col("split").n_unique())["split"].max() == 1
    )

    # lineage of a report reaches the annotations of both sources
    report = samples.filter(pl.col("task_type") == "report").row(0, named=True)
    traced = subprocess.run([sys.executable, "-m", "mmoral_pipeline.cli", "lineage", report["sample_id"]],
                            env=env, capture_output=True, text=True, timeout=300, cwd=REPO, check=False)
    assert traced.returncode == 0, traced.stderr
    assert (
        "[a_teeth]" in traced.stdout
        and "[b_caries]" in traced.stdout
        and "sources=['a_teeth', 'b_caries']" in traced.stdout
    )


def _materialize(
    instance, home: Path, sources: Path, partition: str, groups: tuple[str, ...]
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [*ingest_assets, *ingest_checks, expert_annotations_batch, *attributes_assets, *attributes_checks],
        partition_key=partition, instance=instance, raise_on_error=False,
        resources={"io_manager": ParquetIOManager(str(home)), "sources": SourcesResource(path=str(sources))},
        selection=dg.AssetSelection.groups(*groups),
    )


def test_a_stale_owner_document_fails_the_copys_accounting_check(tmp_path: Path):
    """Batch b is ingested after a's documents were built (a sensor adding a new source): b's blocking
    copies_in_owner_document check fails and says to re-materialise the owner; after that it passes."""
    sources = split_layers(tmp_path, n=2)
    home = tmp_path / "home"
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(BATCHES, ["a_teeth", "b_caries"])
        assert _materialize(instance, home, sources, "a_teeth", ("ingest", "attributes")).success
        stale = _materialize(instance, home, sources, "b_caries", ("ingest", "attributes"))
        checks = {ev.check_name: ev for ev in stale.get_asset_check_evaluations()}
        assert not stale.success and checks["no_finding_lost"].passed and not checks["copies_in_owner_document"].passed
        assert "Re-materialise the owner's attributes" in checks["copies_in_owner_document"].description
        assert "owner batch(es) ['a_teeth']" in checks["copies_in_owner_document"].description
        assert checks["copies_in_owner_document"].metadata["missing"].value > 0
        assert _materialize(
            instance, home, sources, "a_teeth", ("attributes",)
        ).success  # the owner takes b's annotations in
        fixed = _materialize(instance, home, sources, "b_caries", ("attributes",))
        assert fixed.success and all(ev.passed for ev in fixed.get_asset_check_evaluations())


def test_real_dc1000_caries_and_a_tooth_mask_layer_of_the_same_xray(realdata: Path, tmp_path: Path):
    """DC1000 labels caries only; a tooth-mask layer (UFBA format, written here) of the same OPG adds the
    teeth: the merged document puts each caries on its tooth and assesses both."""
    from mmoral_pipeline.config import load_sources
    from mmoral_pipeline.generation.backends import CachedBackend
    from mmoral_pipeline.generation.offline import OfflineBackend
    from mmoral_pipeline.generation.pipeline import GenerationSettings, ImageInput, fallback_caption
    from mmoral_pipeline.generation.pipeline import generate as generate_rows
    from mmoral_pipeline.sources import read_source

    layer = tmp_path / "teeth_layer"
    layer.mkdir()
    shutil.copy(realdata / "dc1000_caries" / "images" / "306.png", layer / "306.png")  # the same bytes: the same X-ray
    doc = {"sources": [{"name": "dc1000", "format": "dc1000_masks", "root": str(realdata / "dc1000_caries")},
                       {"name": "teeth_layer", "format": "ufba_masks", "root": str(layer)}]}
    sources = tmp_path / "sources.yaml"
    sources.write_text(yaml.safe_dump(doc))
    sf = load_sources(sources)
    caries = [a for a in read_source(sf.source("dc1000"), sf).annotations if a.image_id == "dc1000-images_306"]
    assert len(caries) == 3
    width = 2943
    (layer / "masks" / "306").mkdir(parents=True)
    teeth = {}
    for k, a in enumerate(sorted(caries, key=lambda a: a.box[0])):
        x1, y1, x2, y2 = (int(v) for v in a.box)
        left = (x1 + x2) / 2 < width / 2  # image left = patient's right: quadrant 4 in the lower jaw
        fdi = (46 - k) if left else (36 - k)
        mask = np.zeros((1435, width), dtype=np.uint8)
        mask[max(0, y1 - 60): y2 + 60, max(0, x1 - 30): x2 + 30] = 1
        Image.fromarray(mask).save(layer / "masks" / "306" / f"306_{fdi}.png")
        teeth[fdi] = a.annotation_id
    home = tmp_path / "home"
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(BATCHES, ["dc1000", "teeth_layer"])
        for key in ("dc1000", "teeth_layer"):
            assert _materialize(instance, home, sources, key, ("ingest",)).success
        for key in ("dc1000", "teeth_layer"):
            result = _materialize(instance, home, sources, key, ("attributes",))
            assert result.success and all(ev.passed for ev in result.get_asset_check_evaluations())
    docs = read_table("image_attributes", base_dir=str(home), partitions="all")
    row = docs.filter(pl.col("image_id") == "dc1000-images_306").row(0, named=True)
    assert docs.filter(pl.col("partition") == "teeth_layer").height == 0  # the layer's copy has no document
    assert row["assessed"] == ["tooth", "caries"] and row["sources"] == ["dc1000", "teeth_layer"]
    merged = ImageAttributes.model_validate_json(row["document"])
    assert merged.unknown_tooth_findings == []
    assert {t.tooth_id: [c.annotation_ids for c in t.conditions] for t in merged.teeth} == {
        f: [[aid]] for f, aid in teeth.items()
    }

    out = generate_rows(
        [ImageInput(merged.image_id, "dc1000", row["attribute_row_hash"], merged, fallback_caption(merged))],
        CachedBackend(OfflineBackend(), None),
        GenerationSettings(),
    )
    (report,) = out.reports
    assert report.answer.startswith(
        "1. Teeth-Specific Observations\nGeneral Condition: This review covers the teeth and caries only;"
    )
    assert all(f" {t}" in report.answer for t in teeth) and "3 teeth" in report.answer


def test_a_source_listing_one_xray_twice_is_merged_with_a_warning(tmp_path: Path):
    generate(n=2, seed=6, out=tmp_path / "s", fmt="coco", width=1400, height=700)
    doc = json.loads((tmp_path / "s" / "annotations.json").read_text())
    first = doc["images"][0]
    shutil.copy(tmp_path / "s" / "images" / first["file_name"], tmp_path / "s" / "images" / "copy.jpg")
    doc["images"].append({**first, "id": 99, "file_name": "copy.jpg"})
    (tmp_path / "s" / "annotations.json").write_text(json.dumps(doc))
    sources = tmp_path / "sources.yaml"
    sources.write_text(yaml.safe_dump({"sources": [{"name": "s", "format": "coco", "root": "s"}]}))
    home = tmp_path / "home"
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(BATCHES, ["s"])
        result = _materialize(instance, home, sources, "s", ("ingest", "attributes"))
    check = next(ev for ev in result.get_asset_check_evaluations() if ev.check_name == "copies_are_one_patient")
    assert result.success and not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert (
        "byte-identical copies inside one source" in check.description
        and "Remove the duplicate file" in check.description
    )
    assert read_table("image_attributes", base_dir=str(home), partitions="all").height == 2  # three images, two X-rays
