"""The tiny model factory: size, save/reload, processor round trip, chat template with image tokens."""

from __future__ import annotations

import json

from PIL import Image

from mmoral_pipeline.training.data import read_jsonl
from mmoral_pipeline.training.settings import TINY_MAX_PIXELS
from mmoral_pipeline.training.tiny import SPECIAL_TOKENS, build_tiny_checkpoint, corpus_texts


def test_tiny_checkpoint_reloads_with_its_processor(tiny_checkpoint):
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_checkpoint, local_files_only=True)
    n_params = sum(p.numel() for p in model.parameters())
    assert 200_000 <= n_params <= 5_000_000, n_params
    cfg = json.loads((tiny_checkpoint / "config.json").read_text())
    assert cfg["model_type"] == "qwen2_5_vl"

    processor = AutoProcessor.from_pretrained(tiny_checkpoint, local_files_only=True)
    tok = processor.tokenizer
    text = "Tooth 36 shows a periapical lesion (upper left quadrant)."
    assert tok.decode(tok.encode(text, add_special_tokens=False)) == text
    for special in SPECIAL_TOKENS:  # each special token is one id, the same the model config names
        assert len(tok.encode(special, add_special_tokens=False)) == 1
    assert cfg["image_token_id"] == tok.convert_tokens_to_ids("<|image_pad|>")
    assert processor.image_processor.size["longest_edge"] == TINY_MAX_PIXELS


def test_chat_template_renders_and_expands_image_tokens(tiny_checkpoint):
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_checkpoint, local_files_only=True)
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Where is the lesion?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Upper left."}]},
    ]
    text = processor.apply_chat_template(messages, tokenize=False)
    assert "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Where is the lesion?<|im_end|>" in text
    assert text.endswith("<|im_start|>assistant\nUpper left.<|im_end|>\n")
    prompt = processor.apply_chat_template(messages[:1], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>assistant\n")

    batch = processor(text=[text], images=[Image.new("RGB", (896, 448), 90)], return_tensors="pt")
    t, h, w = batch["image_grid_thw"][0].tolist()
    assert t * h * w * 14 * 14 <= TINY_MAX_PIXELS  # the pixel budget is applied
    n_image_tokens = int((batch["input_ids"] == processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")).sum())
    assert n_image_tokens == t * h * w // 4  # 2x2 spatial merge


def test_tokenizer_is_trained_on_the_corpus(toy_export, tmp_path):
    from transformers import AutoTokenizer

    rows = read_jsonl(toy_export["train"])
    ckpt = build_tiny_checkpoint(corpus_texts(rows), tmp_path / "ck", vocab_size=400, hidden_size=64, layers=1)
    tok = AutoTokenizer.from_pretrained(ckpt, local_files_only=True)
    word = "periapical"  # frequent in the corpus: merged into far fewer tokens than its bytes
    assert len(tok.encode(" " + word, add_special_tokens=False)) < len(word) // 2
