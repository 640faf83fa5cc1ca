"""`mmoral validate ITEMS.jsonl` as a user runs it: a subprocess reading image_attributes from $MMORAL_HOME."""

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from mmoral_pipeline.domain.attributes import ImageAttributes
from mmoral_pipeline.generation.facts import facts_of
from mmoral_pipeline.generation.validators import validate_item

CORPUS = Path(__file__).parent / "corpus"
ROOT = Path(__file__).resolve().parents[2]


def _home_with_attributes(tmp_path: Path) -> Path:
    """$MMORAL_HOME/image_attributes/<partition>.parquet holding the corpus documents (two partitions)."""
    docs = [
        ImageAttributes.model_validate_json(line) for line in (CORPUS / "attributes.jsonl").read_text().splitlines()
    ]
    home = tmp_path / "home"
    (home / "image_attributes").mkdir(parents=True)
    for part, chunk in (("p1", docs[:4]), ("p2", docs[4:])):
        frame = pl.DataFrame(
            {
                "image_id": [d.image_id for d in chunk],
                "partition": part,
                "document": [d.model_dump_json() for d in chunk],
            }
        )
        pq.write_table(frame.to_arrow(), home / "image_attributes" / f"{part}.parquet")
    return home


def _run(items_path: Path, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "MMORAL_HOME": str(home), "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "mmoral_pipeline.cli", "validate", str(items_path)],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_validate_corpus_items_and_bad_lines(tmp_path):
    home = _home_with_attributes(tmp_path)
    items = [json.loads(line) for line in (CORPUS / "items.jsonl").read_text().splitlines()][:40]
    lines = [json.dumps(it) for it in items]
    lines += ['{"image_id": "no-such-image", "task_type": "vqa_open", "question": "Q?", "answer": "Tooth 36."}',
              "this is not json", "", '{"task_type": "report"}']
    path = tmp_path / "items.jsonl"
    path.write_text("\n".join(lines) + "\n")
    proc = _run(path, home)
    assert proc.returncode == 0, proc.stderr
    out = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [o["line"] for o in out] == list(range(1, len(lines) + 1))
    assert all(set(o) == {"line", "passed", "rejected_by", "reasons"} for o in out)
    facts = {
        d.image_id: facts_of(d)
        for d in (
            ImageAttributes.model_validate_json(x) for x in (CORPUS / "attributes.jsonl").read_text().splitlines()
        )
    }
    for it, o in zip(items, out, strict=False):  # the CLI says what the validators say
        verdicts = validate_item(it, facts[it["image_id"]])
        assert o["passed"] == all(v.passed for v in verdicts)
        assert o["rejected_by"] == [v.validator for v in verdicts if not v.passed]
    unknown, not_json, empty, missing = out[len(items):]
    assert not unknown["passed"] and unknown["rejected_by"] == ["image_id"] and "no-such-image" in unknown["reasons"][0]
    assert not not_json["passed"] and "not JSON" in not_json["reasons"][0]
    assert not empty["passed"] and not missing["passed"] and "image_id" in missing["reasons"][0]
    assert "validated 44 items" in proc.stderr


def test_validate_exit_status_when_files_are_missing(tmp_path):
    home = _home_with_attributes(tmp_path)
    assert _run(tmp_path / "nope.jsonl", home).returncode == 2
    path = tmp_path / "items.jsonl"
    path.write_text('{"image_id": "corpus-a", "task_type": "vqa_open", "question": "Q?", "answer": "A."}\n')
    proc = _run(path, tmp_path / "empty-home")
    assert proc.returncode == 2 and "image_attributes" in proc.stderr
