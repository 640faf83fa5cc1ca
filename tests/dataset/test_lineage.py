"""Lineage: every task type resolves to the right request, caption, attribute row, annotations and image."""

from __future__ import annotations

import argparse
import base64
import re
from pathlib import Path

import polars as pl
import pytest

from mmoral_pipeline.dataset.assemble import TASK_TYPES, assemble_samples
from mmoral_pipeline.dataset.cli import add_lineage_arguments, run_lineage
from mmoral_pipeline.dataset.lineage import (
    UnknownSampleError,
    dependent_annotations,
    named_geometry,
    render_html,
    render_markdown,
    render_text,
    resolve_lineage,
)

from .world import TEETH, World, build_world, generated


@pytest.fixture(scope="module")
def traced(world: World) -> World:
    frame, _ = assemble_samples(generated(world), world.tables["raw_images"], val_fraction=0.2, holdout_fraction=0.25)
    world.tables["instruction_samples"] = frame
    return world


def _sample(world: World, task: str, image_id: str = "srcB-img03") -> dict:
    frame = world.tables["instruction_samples"]
    return frame.filter((pl.col("task_type") == task) & (pl.col("image_id") == image_id)).row(0, named=True)


@pytest.mark.parametrize("task", TASK_TYPES)
def test_each_task_resolves_to_its_image_and_annotations(traced: World, task: str) -> None:
    s = _sample(traced, task)
    chain = resolve_lineage(s["sample_id"], traced.read)
    assert chain.problems == []
    raw = traced.tables["raw_images"].filter(pl.col("image_id") == s["image_id"]).row(0, named=True)
    assert (
        chain.image["path"] == raw["path"] and chain.image["sha256"] == raw["sha256"] and chain.image["sha256_matches"]
    )
    gen = traced.tables[s["generation_table"]].filter(pl.col("item_id") == s["item_id"]).row(0, named=True)
    assert chain.request["raw_response"] == gen["raw_response"]
    assert (
        chain.request["prompt_template_id"] == gen["prompt_template_id"]
        and chain.request["cache_hit"] == gen["cache_hit"]
    )
    assert chain.caption["attribute_row_hash"] == s["attribute_row_hash"] and s["image_id"] in chain.caption["caption"]
    assert chain.attributes["attribute_row_hash"] == s["attribute_row_hash"]
    assert chain.annotations, "every sample depends on at least one annotation"
    own = set(traced.tables["raw_annotations"].filter(pl.col("image_id") == s["image_id"])["annotation_id"])
    assert {a["annotation_id"] for a in chain.annotations} <= own
    assert all(a["source_file"] and a["source_category"] and a["category"] for a in chain.annotations)


def _ids(traced: World, task: str) -> set[str]:
    s = _sample(traced, task)
    return {a["annotation_id"] for a in resolve_lineage(s["sample_id"], traced.read, verify_sha256=False).annotations}


def test_dependencies_follow_what_the_sample_names(traced: World) -> None:
    img = "srcB-img03"
    everything = set(traced.tables["raw_annotations"].filter(pl.col("image_id") == img)["annotation_id"])
    teeth = {f"{img}-t{t}" for t in TEETH}
    assert _ids(traced, "report") == everything  # a report describes the whole image
    assert _ids(traced, "loc_open") == {f"{img}-t11"}  # "where is tooth 11"
    assert _ids(traced, "count_closed") == teeth  # counting depends on every tooth box
    # "which tooth has caries?" -> "Tooth 36": the correct option counts, the distractors (11, 48) do not
    assert _ids(traced, "vqa_closed") == {f"{img}-t36", f"{img}-caries36"}
    assert _ids(traced, "loc_closed") == {f"{img}-t36"}  # "which tooth is at point [109, 57]": the tooth box holding it
    assert _ids(traced, "vqa_open") == {f"{img}-boneloss"}  # "bone level" answer names bone loss only


def test_renderings_show_the_chain(traced: World) -> None:
    s = _sample(traced, "vqa_open")
    chain = resolve_lineage(s["sample_id"], traced.read)
    text = render_text(chain)
    md = render_markdown(chain)
    for out in (text, md):
        assert s["sample_id"] in out and chain.image["path"] in out and chain.request["raw_response"] in out
        assert "Bone Loss" in out  # the original category of the annotation
    page = render_html(chain)
    m = re.search(r'src="data:image/jpeg;base64,([^"]+)"', page)
    assert m, "the X-ray is embedded in the page"
    assert base64.b64decode(m.group(1))[:2] == b"\xff\xd8"
    assert "http://" not in page and "https://" not in page  # self-contained


def test_unknown_and_prefix_ids(traced: World) -> None:
    with pytest.raises(UnknownSampleError, match=r"sample_id.*train\.jsonl"):
        resolve_lineage("does-not-exist", traced.read)
    s = _sample(traced, "dialogue")
    assert resolve_lineage(s["sample_id"][:10], traced.read, verify_sha256=False).sample["sample_id"] == s["sample_id"]


def test_changed_image_is_reported(tmp_path: Path) -> None:
    w = build_world(tmp_path)
    frame, _ = assemble_samples(generated(w), w.tables["raw_images"], val_fraction=0.2, holdout_fraction=0.25)
    w.tables["instruction_samples"] = frame
    s = frame.filter(pl.col("task_type") == "report").row(0, named=True)
    Path(s["image_path"]).write_bytes(Path(s["image_path"]).read_bytes() + b"tamper")
    chain = resolve_lineage(s["sample_id"], w.read)
    assert chain.image["sha256_matches"] is False and any("changed on disk" in p for p in chain.problems)


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_lineage_arguments(parser)
    return parser.parse_args(argv)


def test_cli_prints_and_writes_html(
    traced: World, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    import dagster as dg

    home = tmp_path / "home"
    World(home=home, tables={k: v for k, v in traced.tables.items() if k != "instruction_samples"}).write()
    # instruction_samples is unpartitioned: the IO manager writes <home>/instruction_samples.parquet
    traced.tables["instruction_samples"].write_parquet(home / "instruction_samples.parquet")
    s = _sample(traced, "loc_closed")
    html = tmp_path / "out" / "lineage.html"
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    # the CLI reads the batches instruction_samples was built from (its partition column) ...
    assert run_lineage(_args(s["sample_id"], "--home", str(home), "--html", str(html))) == 0
    printed = capsys.readouterr().out
    assert s["sample_id"] in printed and "sha256" in printed and "<- annotations" in printed
    # ... and without that column, the batches registered on the instance: none yet, so the chain breaks
    traced.tables["instruction_samples"].drop("partition").write_parquet(home / "instruction_samples.parquet")
    assert run_lineage(_args(s["sample_id"], "--home", str(home))) == 1
    assert "raw_images" in capsys.readouterr().out
    dg.DagsterInstance.get().add_dynamic_partitions("batches", ["srcA", "srcB"])
    assert run_lineage(_args(s["sample_id"], "--home", str(home), "--html", str(html))) == 0
    printed = capsys.readouterr().out
    assert s["sample_id"] in printed and "sha256" in printed and "<- annotations" in printed
    assert html.exists() and s["sample_id"] in html.read_text()
    assert run_lineage(_args("nope", "--home", str(home))) == 2
    assert "sample_id" in capsys.readouterr().err


def test_lazy_scans_give_the_same_chain(traced: World, tmp_path: Path) -> None:
    """What `mmoral lineage` does at scale (lazy Parquet scans, only the sample's rows read) equals the in-memory walk."""  # noqa: E501
    from mmoral_pipeline.storage import scan_table

    home = tmp_path / "home"
    World(home=home, tables={k: v for k, v in traced.tables.items() if k != "instruction_samples"}).write()
    traced.tables["instruction_samples"].write_parquet(home / "instruction_samples.parquet")
    for task in TASK_TYPES:
        sid = _sample(traced, task)["sample_id"]
        lazy = resolve_lineage(sid, lambda name: scan_table(name, base_dir=str(home), partitions="all"))
        assert lazy.model_dump() == resolve_lineage(sid, traced.read).model_dump(), task


def test_response_cache_entry_is_shown(traced: World, tmp_path: Path) -> None:
    from mmoral_pipeline.generation.cache import ResponseCache
    from mmoral_pipeline.generation.types import ChatResponse

    s = _sample(traced, "report")
    cache = ResponseCache(tmp_path / "llm_cache.sqlite")
    cache.put(ChatResponse(text="cached report text", request_hash=s["request_hash"], backend="offline", model="m"))
    cache.close()
    chain = resolve_lineage(s["sample_id"], traced.read, verify_sha256=False, cache_path=tmp_path / "llm_cache.sqlite")
    assert chain.request["cache_entry"]["text"] == "cached report text"
    assert chain.request["extra"] == {"usage": {"prompt_tokens": 10}}
    assert chain.request["cache_entry"]["matches_raw_response"] is False  # the row's raw_response is another text
    assert "response cache: stored" in render_text(chain) and "text differs" in render_html(chain)
    other = _sample(traced, "vqa_open")
    assert (
        "cache_entry"
        not in resolve_lineage(
            other["sample_id"], traced.read, verify_sha256=False, cache_path=tmp_path / "llm_cache.sqlite"
        ).request
    )


def test_named_geometry_and_box_overlap() -> None:
    boxes, points = named_geometry(
        ["What is inside box_2d [104, 46, 112, 54]?", '[{"point_2d": [71, 20], "label": "11"}]']
    )
    assert boxes == [[104.0, 46.0, 112.0, 54.0]] and points == [(71.0, 20.0)]
    doc = {
        "teeth": [
            {
                "tooth_id": 36,
                "bbox": [100, 45, 118, 70],
                "annotation_ids": ["t36"],
                "conditions": [{"category": "caries", "bbox": [104, 46, 112, 54], "annotation_ids": ["c36"]}],
            },
            {"tooth_id": 11, "bbox": [70, 10, 80, 35], "annotation_ids": ["t11"], "conditions": []},
        ]
    }
    assert dependent_annotations(
        doc, "loc_closed", ["What is the finding inside box_2d [104, 46, 112, 54]?", "Caries"]
    )[0] == ["c36"]
    assert dependent_annotations(doc, "loc_open", ["Which tooth is at point_2d [71, 20]?", "11"])[0] == ["t11"]
    ids, _, rule = dependent_annotations(doc, "vqa_open", ["Anything?", "Nothing specific."])
    assert sorted(ids) == ["c36", "t11", "t36"] and rule.startswith("whole image")


def test_cli_lists_ids_per_task(traced: World, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    home = tmp_path / "home"
    home.mkdir()
    traced.tables["instruction_samples"].write_parquet(home / "instruction_samples.parquet")
    assert run_lineage(_args("--list", "2", "--home", str(home))) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln and not ln.startswith("(")]
    assert len(lines) == 2 * len(TASK_TYPES)
    ids = set(traced.tables["instruction_samples"]["sample_id"])
    assert all(ln.split()[0] in ids for ln in lines)
    assert run_lineage(_args("--home", str(tmp_path / "empty"))) == 2
