"""Incremental regeneration on a temporary instance, with an LLM stand-in that records every request
that reaches the endpoint (the offline backend behind a recorder, the real response cache in front).

1. New images in one source: the raw-data sensor requests that batch only; its run re-sends only the
   new image's requests (the others come from the cache); the other source makes zero requests.
2. A changed prompt template: only the outputs that template shapes (and what reads them) go
   stale through their code versions; re-running them re-sends exactly the requests of that template.
"""

import importlib
import shutil
from pathlib import Path

import dagster as dg
import pytest
import yaml

from mmoral_pipeline.defs import automation
from mmoral_pipeline.defs.attributes import attributes_assets, attributes_checks
from mmoral_pipeline.defs.experts import expert_annotations_batch
from mmoral_pipeline.defs.ingest import ingest_assets, ingest_checks
from mmoral_pipeline.defs.io_manager import ParquetIOManager
from mmoral_pipeline.defs.partitions import BATCHES, batch_partitions
from mmoral_pipeline.defs.resources import SourcesResource
from mmoral_pipeline.synth import generate

from .test_automation import _tick

SMALL = {"width": 400, "height": 200, "scores": True}
SENT: list[tuple[str, str]] = []  # (template tag, image_id) of every request the endpoint received


class _Recorder:
    """Wraps the inner backend: whatever reaches it was not answered by the cache."""

    def __init__(self, inner):
        self.inner, self.name, self.model = inner, inner.name, inner.model
        self.stats = getattr(inner, "stats", {})

    def complete(self, requests, on_result=None):
        for r in requests:
            attrs = r.context.get("attributes")
            SENT.append((r.tag, getattr(attrs, "image_id", "?")))
        return self.inner.complete(requests, on_result=on_result)


def recording_llm(generation_module, cache_path: Path):
    class RecordingLLM(generation_module.LLMResource):
        def get_backend(self):
            backend = super().get_backend()
            backend.inner = _Recorder(backend.inner)
            return backend

    return RecordingLLM(backend="offline", cache_path=str(cache_path))


class World:
    """Sources, instance and definitions of one test; `run(keys)` runs `process_batches` like the daemon."""

    def __init__(self, tmp: Path, instance: dg.DagsterInstance, generation_module):
        self.tmp, self.instance, self.gen = tmp, instance, generation_module
        generate(n=2, seed=21, out=tmp / "alpha", fmt="coco", **SMALL)
        generate(n=2, seed=22, out=tmp / "beta", fmt="coco", **SMALL)
        self.sources = tmp / "sources.yaml"
        self.sources.write_text(
            yaml.safe_dump(
                {
                    "sources": [
                        {"name": n, "format": "coco", "root": n, "options": {"score_field": "score"}}
                        for n in ("alpha", "beta")
                    ]
                }
            )
        )
        self.cursor = None

    def defs(self, *extra_jobs) -> dg.Definitions:
        gen = self.gen
        return dg.Definitions(
            assets=[*ingest_assets, expert_annotations_batch, *attributes_assets, *gen.generation_assets],
            asset_checks=[*ingest_checks, *attributes_checks, *gen.generation_checks],
            jobs=[automation.process_batches_job, *extra_jobs],
            resources={
                "io_manager": ParquetIOManager(str(self.tmp / "home")),
                "sources": SourcesResource(path=str(self.sources)),
                "llm": recording_llm(gen, self.tmp / "llm_cache.sqlite"),
            },
        )

    def sensor_tick(self) -> dict[str, str]:
        self.cursor, requested, _ = _tick(self.instance, self.sources, self.cursor)
        return requested

    def run(self, keys, job: str = "process_batches", defs: dg.Definitions | None = None) -> list[tuple[str, str]]:
        """Execute a job of `defs` for these batches, as the daemon would; returns the requests sent."""
        job_def = (defs or self.defs()).resolve_job_def(job)
        SENT.clear()
        for key in keys:
            assert job_def.execute_in_process(partition_key=key, instance=self.instance).success, key
        return list(SENT)

    def latest_storage_ids(self, asset: str) -> dict[str, int]:
        """partition -> storage id of its latest materialisation (-1: never)."""
        out = {}
        for key in self.instance.get_dynamic_partitions(BATCHES):
            records = self.instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[key]), limit=1
            ).records
            out[key] = records[0].storage_id if records else -1
        return out


def stale_status(instance: dg.DagsterInstance, defs: dg.Definitions):
    """Dagster's own staleness resolver (what the UI shows); internal API, there is no public one yet."""
    from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView, TemporalContext
    from dagster._core.definitions.data_version import CachingStaleStatusResolver
    from dagster._time import get_current_datetime

    graph = defs.get_repository_def().asset_graph
    view = AssetGraphView(
        temporal_context=TemporalContext(effective_dt=get_current_datetime(), last_event_id=None),
        instance=instance,
        asset_graph=graph,
    )
    return CachingStaleStatusResolver(instance=instance, asset_graph=graph, loading_context=view)


def code_versions(defs: dg.Definitions) -> dict[str, str | None]:
    return {n.key.to_user_string(): n.code_version for n in defs.get_repository_def().asset_graph.asset_nodes}


@pytest.fixture()
def world(tmp_path: Path):
    # instance_for_test does not make its instance the current defs-state storage, and a context
    # leaked by any earlier test (an evaluation context left open) would leave a dead one there,
    # which breaks resolving new Definitions: set ours for the test (Dagster internal API).
    from dagster._core.storage.defs_state.base import set_defs_state_storage

    from mmoral_pipeline.defs import generation

    with dg.instance_for_test() as instance, set_defs_state_storage(instance.defs_state_storage):
        yield World(tmp_path, instance, generation)


def test_incremental_regeneration(world: World, tmp_path: Path, monkeypatch):
    """Both scenarios on one instance (each pipeline run costs seconds on a shared 2-core box)."""
    assert world.sensor_tick() == {"alpha": "new", "beta": "new"}
    first = world.run(["alpha", "beta"])
    first_images = {img for _, img in first}
    assert len(first_images) == 4, "the first run asks the endpoint about every image"

    assert world.sensor_tick() == {}  # nothing changed, nothing requested

    before = world.latest_storage_ids("reports")
    generate(n=3, seed=21, out=world.tmp / "alpha", fmt="coco", **SMALL)  # one image more in alpha
    requested = world.sensor_tick()
    assert requested == {"alpha": "changed"}
    sent = world.run(list(requested))
    # every request that went out is about the one new image: the two old alpha images were
    # answered from the cache, and beta was not run at all
    new_images = {img for _, img in sent}
    assert len(new_images) == 1 and not (new_images & first_images), sent
    assert {t for t, _ in sent} == {t for t, _ in first}, "the new image gets the full set of prompts"
    after = world.latest_storage_ids("reports")
    assert after["beta"] == before["beta"], "beta was not re-materialised"
    assert after["alpha"] > before["alpha"]

    # 2. the template scenario, on the same instance: both batches' dialogues were generated
    first_all = first + sent
    changed_template_marks_only_its_dependants_stale(world, tmp_path, monkeypatch, first_all)


def changed_template_marks_only_its_dependants_stale(world: World, tmp_path: Path, monkeypatch, first: list):
    from mmoral_pipeline.generation import prompts as prompt_module

    dialogue_requests = sorted(x for x in first if x[0] == "dialogue")
    assert dialogue_requests, f"no dialogue requests among {sorted({t for t, _ in first})}"
    old_versions = code_versions(world.defs())

    # a copy of the prompts with one template changed, and the generation module re-imported from it
    prompts = tmp_path / "prompts"
    shutil.copytree(prompt_module.PROMPTS_DIR, prompts)
    (prompts / "dialogue.j2").write_text(
        (prompts / "dialogue.j2").read_text() + "\nKeep every answer under three sentences.\n"
    )
    monkeypatch.setattr(prompt_module, "PROMPTS_DIR", prompts)
    try:
        world.gen = importlib.reload(world.gen)
        new_defs = world.defs()
        new_versions = code_versions(new_defs)
        changed = {k for k in new_versions if new_versions[k] != old_versions.get(k)}
        assert changed == {"dialogues", "rejected_generations"}

        resolver = stale_status(world.instance, new_defs)
        from dagster._core.definitions.data_version import StaleStatus

        for part in ("alpha", "beta"):
            for name in ("dialogues", "rejected_generations"):
                assert resolver.get_status(dg.AssetKey(name), part) == StaleStatus.STALE, (name, part)
            for name in ("reports", "vqa_items", "attribute_tasks", "image_attributes", "raw_images"):
                assert resolver.get_status(dg.AssetKey(name), part) == StaleStatus.FRESH, (name, part)
            causes = resolver.get_stale_root_causes(dg.AssetKey("dialogues"), part)
            assert any("code version" in c.reason for c in causes), causes

        # re-run what is stale: only the dialogue requests go out again, each once
        rerun = dg.define_asset_job(
            "rerun_dialogues",
            selection=dg.AssetSelection.assets("dialogues").required_multi_asset_neighbors(),
            partitions_def=batch_partitions,
        )
        resent = world.run(["alpha", "beta"], job="rerun_dialogues", defs=world.defs(rerun))
        assert sorted(resent) == dialogue_requests
        resolver = stale_status(world.instance, new_defs)
        assert resolver.get_status(dg.AssetKey("dialogues"), "alpha") == StaleStatus.FRESH
    finally:
        monkeypatch.undo()
        importlib.reload(world.gen)
