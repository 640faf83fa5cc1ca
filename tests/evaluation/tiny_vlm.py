"""A tiny random Qwen2.5-VL checkpoint for the HF-runner test, built offline.

Uses the training stage's factory (`mmoral_pipeline.training.tiny.build_tiny_checkpoint`) when it
exists; otherwise the same recipe in a few lines (see training-notes.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for c in message['content'] %}"
    "{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif 'text' in c %}{{ c['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_SPECIAL = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]


def build_tiny_vlm(texts: Iterable[str], out_dir: Path) -> Path:
    try:
        from mmoral_pipeline.training.tiny import build_tiny_checkpoint
    except ImportError:
        return _own(list(texts), out_dir)
    return build_tiny_checkpoint(texts, out_dir, vocab_size=400, hidden_size=64, layers=2, max_pixels=64 * 28 * 28)


def _own(texts: list[str], out_dir: Path) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2Tokenizer,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        texts,
        trainer=trainers.BpeTrainer(
            vocab_size=400,
            special_tokens=_SPECIAL,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    hf = Qwen2Tokenizer(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token=None, bos_token=None
    )
    hf.add_special_tokens({"additional_special_tokens": _SPECIAL[1:]})
    proc = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(min_pixels=8 * 28 * 28, max_pixels=64 * 28 * 28),
        tokenizer=hf,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=_TEMPLATE,
    )
    ids = {t: hf.convert_tokens_to_ids(t) for t in _SPECIAL}
    cfg = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(hf),
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "max_position_embeddings": 4096,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [4, 6, 6]},
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": 64,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 112,
            "fullatt_block_indexes": [1],
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(cfg)
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    proc.save_pretrained(out_dir)
    return out_dir
