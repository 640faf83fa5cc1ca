"""Assembly: one schema for every task, content-hash ids, de-duplication, the split by image."""

from __future__ import annotations

import json
import random

import polars as pl
import pytest

from mmoral_pipeline.dataset.assemble import (
    SAMPLE_SCHEMA,
    TASK_TYPES,
    as_str_list,
    assemble_samples,
    dialogue_turns,
    normalise_text,
    split_overlap,
)
from mmoral_pipeline.dataset.split import is_holdout
from mmoral_pipeline.generation.rows import to_frame

from .world import SOURCES, generated, item

SPLIT = {"val_fraction": 0.2, "holdout_fraction": 0.25}


@pytest.fixture(scope="module")
def assembled(world):
    return assemble_samples(generated(world), world.tables["raw_images"], **SPLIT)


def test_every_task_type_in_one_schema(assembled, world) -> None:
    frame, stats = assembled
    assert frame.schema == pl.Schema(SAMPLE_SCHEMA)
    assert set(frame["task_type"].unique()) == set(TASK_TYPES)
    n_images = sum(SOURCES.values())
    # one of each task per image survives; the two duplicates and the invalid row do not
    assert frame.height == n_images * len(TASK_TYPES)
    assert (stats.exact_duplicates, stats.near_duplicates, stats.invalid) == (1, 1, 1)
    assert stats.input_rows["vqa_items"] == world.tables["vqa_items"].height
    assert frame["sample_id"].n_unique() == frame.height


def test_messages_reference_the_image_and_alternate(assembled) -> None:
    frame, _ = assembled
    for row in frame.iter_rows(named=True):
        messages = json.loads(row["messages"])
        assert messages[0]["role"] == "user" and messages[-1]["role"] == "assistant"
        assert [m["role"] for m in messages] == ["user", "assistant"] * (len(messages) // 2)
        assert messages[0]["content"][0] == {"type": "image", "image_id": row["image_id"]}
        assert all(p["type"] == "text" for m in messages[1:] for p in m["content"])
    closed = frame.filter(pl.col("task_type") == "count_closed").row(0, named=True)
    assert closed["answer"] == "B" and "Options:\nA. 2\nB. 3" in closed["question"]
    dialogue = frame.filter(pl.col("task_type") == "dialogue").row(0, named=True)
    assert dialogue["n_turns"] == 4


def test_provenance_is_carried(assembled, world) -> None:
    frame, _ = assembled
    row = frame.filter(pl.col("task_type") == "vqa_open").row(0, named=True)
    src = world.tables["vqa_items"].filter(pl.col("item_id") == row["item_id"]).row(0, named=True)
    for k in (
        "prompt_template_id",
        "prompt_version",
        "backend",
        "model",
        "request_hash",
        "run_id",
        "attribute_row_hash",
    ):
        assert row[k] == src[k]
    assert json.loads(row["params"]) == json.loads(src["params"])
    assert row["image_path"] == world.tables["raw_images"].filter(pl.col("image_id") == row["image_id"])["path"][0]
    assert row["validated"] is True


def test_sample_ids_are_stable_and_order_independent(assembled, world) -> None:
    frame, _ = assembled
    shuffled = {k: v.sample(fraction=1.0, shuffle=True, seed=3) for k, v in generated(world).items()}
    again, _ = assemble_samples(shuffled, world.tables["raw_images"].reverse(), **SPLIT)
    assert again.equals(frame)


def test_split_is_by_image_and_deterministic(assembled, world) -> None:
    frame, _ = assembled
    assert split_overlap(frame) == {}
    assert set(frame["split"].unique()) == {"train", "val", "bench"}
    bench = set(frame.filter(pl.col("split") == "bench")["image_id"])
    assert bench == {i for i in frame["image_id"].unique() if is_holdout(i, SPLIT["holdout_fraction"])}
    second, _ = assemble_samples(generated(world), world.tables["raw_images"], **SPLIT)
    assert dict(zip(second["sample_id"], second["split"], strict=True)) == dict(
        zip(frame["sample_id"], frame["split"], strict=True)
    )


def test_explicit_holdout_is_honoured(world) -> None:
    chosen = {"srcA-img01", "srcB-img02"}
    frame, _ = assemble_samples(
        generated(world), world.tables["raw_images"], val_fraction=0.2, holdout_fraction=0.9, explicit_holdout=chosen
    )
    assert set(frame.filter(pl.col("split") == "bench")["image_id"]) == chosen


def test_rows_without_image_or_failing_validation_are_dropped(world) -> None:
    rows = [
        item("ghost", "srcA", "vqa_open", 1, question="q?", answer="a."),
        item("srcA-img00", "srcA", "vqa_open", 2, question="fails?", answer="yes."),
        item("srcA-img00", "srcA", "vqa_open", 3, question="passes?", answer="yes."),
    ]
    # other representations of the verdicts: a {validator: passed} map (JSON) or a bool
    verdicts = ['true', '{"schema": true, "fdi": false}', 'true']
    rows = pl.DataFrame(rows).with_columns(validators_passed=pl.Series(verdicts))
    frame, stats = assemble_samples({"vqa_items": rows}, world.tables["raw_images"], **SPLIT)
    assert (stats.missing_image, stats.failed_validation, frame.height) == (1, 1, 1)
    kept, _ = assemble_samples({"vqa_items": rows}, world.tables["raw_images"], require_validated=False, **SPLIT)
    assert kept.height == 2


def test_empty_inputs_give_an_empty_typed_table(world) -> None:
    frame, stats = assemble_samples({"reports": pl.DataFrame(), "dialogues": None}, world.tables["raw_images"], **SPLIT)
    assert frame.height == 0 and frame.schema == pl.Schema(SAMPLE_SCHEMA) and stats.output_rows == 0


def test_normalisers() -> None:
    assert normalise_text("  Tooth  36:\tCaries!! ") == normalise_text("tooth 36 caries")
    assert normalise_text("tooth 36") != normalise_text("tooth 37")
    assert as_str_list("Teeth, Patho") == ["Teeth", "Patho"]
    assert as_str_list('["Jaw"]') == ["Jaw"] and as_str_list(None) == []
    turns = dialogue_turns(
        [
            {"role": "radiologist", "content": "Hello."},
            {"role": "patient", "content": "Hi"},
            {"role": "patient", "content": "again"},
            {"role": "doctor", "content": "Yes."},
            {"role": "patient", "content": "Bye"},
        ]
    )
    assert turns == [("user", "Hi\nagain"), ("assistant", "Yes.")]
    with pytest.raises(ValueError):
        dialogue_turns([{"role": "narrator", "content": "x"}])


def test_near_duplicates_only_within_an_image(world) -> None:
    a = item("srcA-img00", "srcA", "vqa_open", 1, question="How many teeth?", answer="Three.")
    b = item("srcA-img01", "srcA", "vqa_open", 1, question="How many teeth?", answer="Three.")
    c = item("srcA-img00", "srcA", "vqa_open", 2, question="how many TEETH", answer="three")
    rows = [a, b, c]
    random.Random(1).shuffle(rows)
    frame, stats = assemble_samples({"vqa_items": to_frame(rows)}, world.tables["raw_images"], **SPLIT)
    assert frame.height == 2 and stats.near_duplicates == 1 and stats.exact_duplicates == 0


def test_column_normalisation_matches_the_row_rule() -> None:
    from mmoral_pipeline.dataset.assemble import normalise_texts

    texts = [
        "  Tooth  36:\tCaries!! ",
        "ＦＵＬＬ width Ｔｅｅｔｈ",
        "Zähne — Karies?",
        "box_2d [1, 2, 3, 4]",
        "a\u241eb",
        "",
    ]
    assert normalise_texts(pl.Series(texts)).to_list() == [normalise_text(t) for t in texts]


def test_every_dropped_or_altered_row_is_in_the_drop_log(world) -> None:
    """Rows in = rows out + rows dropped, per table, and altered dialogues say what was changed."""
    from mmoral_pipeline.dataset.drops import balance

    trimmed = item("srcA-img00", "srcA", "dialogue", 11, turns=[
        {"role": "assistant", "content": "Hello, I am the radiologist."},  # before the first user turn: cut
        {"role": "user", "content": "Is my jaw fine?"},
        {"role": "user", "content": "And my teeth?"},  # merged into the previous user turn
        {"role": "assistant", "content": "Both look fine."},
        {"role": "user", "content": "Thanks!"},  # after the last assistant turn: cut
    ])
    dialogues = pl.concat([world.tables["dialogues"], to_frame([trimmed])], how="diagonal_relaxed")
    rows = {**generated(world), "dialogues": dialogues}
    frame, stats = assemble_samples(rows, world.tables["raw_images"], **SPLIT)
    dropped = stats.drops.frame()
    out = dict(frame.group_by("generation_table").len().iter_rows())
    table = balance({k: v.height for k, v in rows.items()}, out, dropped)
    assert all(v["ok"] for v in table.values()), table
    assert table["vqa_items"]["dropped"] == 3  # the exact and near duplicates and the invalid row
    assert stats.drops.counts("dropped") == {"exact_duplicate": 1, "near_duplicate": 1, "invalid": 1}
    altered = dropped.filter(pl.col("action") == "altered")
    assert set(altered["reason"]) == {"turns_merged", "turns_trimmed"}
    assert set(altered["item_id"]) == {trimmed["item_id"]}
    kept = frame.filter(pl.col("item_id") == trimmed["item_id"]).row(0, named=True)
    assert kept["n_turns"] == 2 and kept["question"] == "Is my jaw fine?\nAnd my teeth?"
    assert set(altered["sample_id"]) == {kept["sample_id"]}
    # a duplicate names the sample kept in its place
    near = dropped.filter(pl.col("reason") == "near_duplicate").row(0, named=True)
    assert near["kept_id"] in set(frame["sample_id"]) and near["stage"] == "dedup"
