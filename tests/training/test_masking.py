"""Loss masking: labels are -100 everywhere except the assistant turns (their text, <|im_end|> and newline)."""

from __future__ import annotations

import pytest

from mmoral_pipeline.training.data import IGNORE_INDEX, AssistantOnlyCollator, assistant_token_mask, read_jsonl


@pytest.fixture(scope="module")
def processor(tiny_checkpoint):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_checkpoint, local_files_only=True)


def _assistant_texts(row):
    return [
        "".join(p["text"] for p in m["content"] if p.get("type") == "text")
        for m in row["messages"]
        if m["role"] == "assistant"
    ]


def test_labels_only_on_assistant_tokens(processor, toy_export):
    rows = read_jsonl(toy_export["train"])
    dialogue = next(r for r in rows if r["task_type"] == "dialogue")  # two assistant turns
    closed = next(r for r in rows if r["task_type"] == "vqa_closed")  # short: padded in the batch
    batch = AssistantOnlyCollator(processor)([dialogue, closed])
    labels, ids, attention = batch["labels"], batch["input_ids"], batch["attention_mask"]
    tok = processor.tokenizer
    image_pad = tok.convert_tokens_to_ids("<|image_pad|>")

    for i, row in enumerate([dialogue, closed]):
        kept = labels[i] != IGNORE_INDEX
        assert (labels[i][kept] == ids[i][kept]).all()
        assert not kept[attention[i] == 0].any()  # padding never counts
        assert not kept[ids[i] == image_pad].any()  # image tokens never count
        decoded = tok.decode(ids[i][kept])
        assert decoded == "".join(t + "<|im_end|>\n" for t in _assistant_texts(row))
        user_texts = [p["text"] for m in row["messages"] if m["role"] == "user" for p in m["content"] if p.get("text")]
        assert all(u not in decoded for u in user_texts)
    assert (attention[1] == 0).any(), "the shorter sample should have been padded"


def test_assistant_token_mask_on_hand_made_ids():
    header, end, nl = [1, 7, 9], 2, [5]
    ids = [1, 3, 9, 4, 2, 5, 1, 7, 9, 11, 12, 2, 5, 1, 3, 9, 6, 2, 5, 1, 7, 9, 13]
    #      system/user ...........  assistant: 11 12 <end> \n   user ......     assistant (truncated): 13
    mask = assistant_token_mask(ids, header, end, nl)
    assert [i for i, m in enumerate(mask) if m] == [9, 10, 11, 12, 22]


def test_same_mask_as_trl_assistant_only_loss(processor, toy_export):
    """TRL 1.16's own collator with assistant_only_loss=True (needs {% generation %} markers) agrees with ours."""
    from PIL import Image
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    rows = read_jsonl(toy_export["train"])[:4]
    ours = AssistantOnlyCollator(processor)([dict(r) for r in rows])
    trl_examples = [{"messages": r["messages"], "images": [Image.open(p).convert("RGB") for p in r["images"]]}
                    for r in rows]
    theirs = DataCollatorForVisionLanguageModeling(processor=processor, assistant_only_loss=True)(trl_examples)
    assert theirs["input_ids"].shape == ours["input_ids"].shape
    assert (theirs["input_ids"] == ours["input_ids"]).all()
    assert (theirs["labels"] == ours["labels"]).all()


def test_max_length_truncates_text_but_refuses_to_cut_images(processor, toy_export):
    rows = read_jsonl(toy_export["train"])
    report = next(r for r in rows if r["task_type"] == "report")
    full = AssistantOnlyCollator(processor)([dict(report)])["input_ids"].shape[1]
    n_image = int((AssistantOnlyCollator(processor)([dict(report)])["input_ids"]
                   == processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")).sum())
    cut = AssistantOnlyCollator(processor, max_length=full - 5)([dict(report)])
    assert cut["input_ids"].shape[1] == full - 5 and cut["labels"].shape[1] == full - 5
    with pytest.raises(ValueError, match="image tokens"):
        AssistantOnlyCollator(processor, max_length=n_image // 2)([dict(report)])


def test_task_types_filter_then_cap(toy_export, tmp_path):
    from mmoral_pipeline.training.settings import SftSettings
    from mmoral_pipeline.training.trainer import select_rows

    every = read_jsonl(toy_export["train"])
    kinds = sorted({r["task_type"] for r in every})
    assert len(kinds) >= 2, kinds
    wanted = kinds[-1]
    rows = select_rows(SftSettings(train_jsonl=toy_export["train"], output_dir=str(tmp_path), task_types=[wanted]))
    assert rows and {r["task_type"] for r in rows} == {wanted}
    assert len(rows) == sum(r["task_type"] == wanted for r in every)
    capped = select_rows(SftSettings(train_jsonl=toy_export["train"], output_dir=str(tmp_path), task_types=[wanted],
                                     max_samples=1))
    assert [r["sample_id"] for r in capped] == [rows[0]["sample_id"]]
    # defaults: the tiny model trains on the closed-ended types, any other model on everything
    from mmoral_pipeline.training.settings import TINY_TASK_TYPES

    tiny = select_rows(SftSettings(train_jsonl=toy_export["train"], output_dir=str(tmp_path)))
    assert len(tiny) == sum(r["task_type"] in TINY_TASK_TYPES for r in every) and len(tiny) < len(every)
    other = SftSettings(train_jsonl=toy_export["train"], output_dir=str(tmp_path), base_model="/models/qwen")
    assert len(select_rows(other)) == len(every)
    assert other.resolved_closed_target() == "letter"
    assert SftSettings(output_dir=str(tmp_path)).resolved_closed_target() == "option_text"


def test_closed_targets_rewrite_only_closed_answers():
    from mmoral_pipeline.training.trainer import closed_target_row

    prompt = (
        "Question: Where is bone loss observed?\nOptions:\nA. Upper jaw\nB. Lower jaw\nC. Both jaws\nD. None\nAnswer."
    )
    row = {"task_type": "vqa_closed", "messages": [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]},
        {"role": "assistant", "content": [{"type": "text", "text": "B"}]}]}
    assert closed_target_row(row, "letter") is row
    out = closed_target_row(row, "letter_and_text")
    assert out["messages"][1]["content"] == [{"type": "text", "text": "B. Lower jaw"}]
    assert out["messages"][0] is row["messages"][0] and row["messages"][1]["content"][0]["text"] == "B"
    assert closed_target_row(row, "option_text")["messages"][1]["content"] == [{"type": "text", "text": "Lower jaw"}]
    open_row = {**row, "task_type": "vqa_open"}
    assert closed_target_row(open_row, "option_text") is open_row
    no_such_letter = {**row, "messages": [row["messages"][0], {"role": "assistant", "content": "E"}]}
    assert closed_target_row(no_such_letter, "option_text") is no_such_letter
