"""`mmoral materialize` as a user runs it (a subprocess on a persistent instance in a temporary DAGSTER_HOME):

1. progress lines of ingest and generation reach the terminal (and the rest of the INFO chatter does not)
   and the runs' event logs (what the UI shows), also when batches run in parallel worker processes;
2. a second call with nothing changed runs nothing: no materialisation, no LLM request, no file rewritten;
3. a touched image re-reads its batch and nothing more (same content); a moved box regenerates that image
   only: its batch re-runs, every other image's requests come from the response cache;
4. a changed LLM setting re-runs generation (and what reads it), not what comes before.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import yaml

from mmoral_pipeline.progress import PROGRESS_MARK
from mmoral_pipeline.synth import generate

SELECT = "group:ingest or group:attributes or group:generation"


class Cli:
    def __init__(self, tmp: Path):
        self.tmp = tmp
        generate(n=4, seed=31, out=tmp / "src", fmt="coco", width=400, height=200, scores=True)
        self.sources = tmp / "sources.yaml"
        self.sources.write_text(
            yaml.safe_dump(
                {
                    "sources": [
                        {
                            "name": "cli",
                            "format": "coco",
                            "root": "src",
                            "shard_size": 2,
                            "options": {"score_field": "score"},
                        }
                    ]
                }
            )
        )
        self.home, self.dagster_home = tmp / "home", tmp / "dagster_home"
        self.env = {
            **os.environ,
            "MMORAL_HOME": str(self.home),
            "DAGSTER_HOME": str(self.dagster_home),
            "MMORAL_SOURCES": str(self.sources),
            "MMORAL_LLM_BACKEND": "offline",
            "MMORAL_PROGRESS_EVERY_S": "0",
        }
        self.env.pop("MMORAL_LOG_LEVEL", None)

    def materialize(self, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "mmoral_pipeline.cli", "materialize", "--quiet", "--select", SELECT, *extra]
        done = subprocess.run(
            cmd, env={**self.env, **(env or {})}, capture_output=True, text=True, timeout=600, check=False
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done

    def instance(self) -> dg.DagsterInstance:
        os.environ["DAGSTER_HOME"] = str(self.dagster_home)  # the instance's dagster.yaml reads it
        return dg.DagsterInstance.from_config(str(self.dagster_home))

    def storage_ids(self, asset: str) -> dict[str, int]:
        with self.instance() as instance:
            return dict(
                instance.event_log_storage.get_latest_storage_id_by_partition(
                    dg.AssetKey(asset), dg.DagsterEventType.ASSET_MATERIALIZATION
                )
            )

    def latest_metadata(self, asset: str, partition: str) -> dict:
        with self.instance() as instance:
            (rec,) = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition]), limit=1
            ).records
            return {k: getattr(v, "value", v) for k, v in rec.asset_materialization.metadata.items()}

    def mtimes(self) -> dict[str, int]:
        return {str(p): p.stat().st_mtime_ns for p in self.home.rglob("*.parquet")}


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Cli:
    saved = os.environ.get("DAGSTER_HOME")
    world = Cli(tmp_path_factory.mktemp("cli"))
    yield world
    if saved is None:
        os.environ.pop("DAGSTER_HOME", None)
    else:
        os.environ["DAGSTER_HOME"] = saved


def test_progress_lines_on_the_terminal_and_in_the_run_log(cli: Cli) -> None:
    first = cli.materialize("--workers", "2")  # the two batches of each stage in two processes at once
    err = first.stderr
    for line in (
        f"{PROGRESS_MARK} ingest cli__0000: starting, 2 images",
        f"{PROGRESS_MARK} ingest cli__0001: 2/2 images (100 %)",
        f"{PROGRESS_MARK} generation cli__0000: starting, 8 requests",
    ):
        assert line in err, err
    assert "requests/s" in err and "sent " in err
    assert "STEP_SUCCESS" not in err and "Started execution" not in err, "the INFO chatter stays in the UI"
    with cli.instance() as instance:
        runs = instance.get_runs(dg.RunsFilter(tags={"mmoral/cli": "materialize"}))
        logged = [
            e.user_message
            for r in runs
            for e in instance.all_logs(r.run_id)
            if e.user_message.startswith(PROGRESS_MARK)
        ]
    assert any(
        m.startswith(f"{PROGRESS_MARK} generation cli__0001: 8/8 requests (100 %)") and "done in" in m for m in logged
    )
    assert any(m.startswith(f"{PROGRESS_MARK} ingest cli__0000") for m in logged)


def test_second_call_with_nothing_changed_runs_nothing(cli: Cli) -> None:
    before = {a: cli.storage_ids(a) for a in ("raw_images", "image_attributes", "reports")}
    files = cli.mtimes()
    again = cli.materialize()
    assert "skip cli__0000: up to date" in again.stdout and "skip cli__0001: up to date" in again.stdout
    assert {a: cli.storage_ids(a) for a in before} == before, "no asset partition was materialised again"
    assert cli.mtimes() == files, "no table was rewritten"
    assert PROGRESS_MARK not in again.stderr  # nothing ran, so no generation step sent or even looked up a request


def test_a_touched_image_is_read_again_and_a_changed_box_regenerates_its_image_only(cli: Cli) -> None:
    images, reports = cli.storage_ids("raw_images"), cli.storage_ids("reports")
    image = max((cli.tmp / "src" / "images").glob("*.jpg"))  # the last image: batch cli__0001
    os.utime(image, ns=(image.stat().st_atime_ns, image.stat().st_mtime_ns + 10**9))
    cli.materialize()  # its batch is read again and has the same content: nothing downstream runs
    assert cli.storage_ids("raw_images")["cli__0001"] > images["cli__0001"]
    assert cli.storage_ids("raw_images")["cli__0000"] == images["cli__0000"]
    assert cli.storage_ids("reports") == reports

    doc_path = cli.tmp / "src" / "annotations.json"  # one tooth box of that image moves by a pixel
    doc = json.loads(doc_path.read_text())
    (entry,) = [e for e in doc["images"] if e["file_name"] == image.name]
    ann = next(a for a in doc["annotations"] if a["image_id"] == entry["id"])
    ann["bbox"][0] += 1
    doc_path.write_text(json.dumps(doc))
    cli.materialize()
    after = cli.storage_ids("reports")
    assert after["cli__0000"] == reports["cli__0000"] and after["cli__0001"] > reports["cli__0001"]
    meta = cli.latest_metadata("reports", "cli__0001")
    assert 0 < meta["requests_sent"] <= 4 and meta["cache_hits"] > 0, meta  # the changed image's requests only


def test_a_new_llm_setting_reruns_generation_only(cli: Cli) -> None:
    attrs, reports = cli.storage_ids("image_attributes"), cli.storage_ids("reports")
    cli.materialize(env={"MMORAL_LLM_MODEL": "another-model"})  # the offline writer, recorded under another model
    assert cli.storage_ids("image_attributes") == attrs, "attributes do not depend on the LLM"
    assert all(v > reports[k] for k, v in cli.storage_ids("reports").items())
