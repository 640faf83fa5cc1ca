"""The tiny default model: Qwen2.5-VL architecture at ~2M parameters, built from a config, with a byte-level BPE
tokenizer trained on the instruction corpus, saved as an ordinary Hugging Face checkpoint (model + processor +
chat template). Nothing is downloaded; the same code paths (processor, chat template, TRL, generate) then serve
the real Qwen2.5-VL-7B.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from mmoral_pipeline.training.chat_template import QWEN25VL_TRAINING_TEMPLATE
from mmoral_pipeline.training.settings import TINY_MAX_PIXELS, TINY_MIN_PIXELS

# Qwen2.5-VL's special tokens, in this order, get the first ids of the tiny vocabulary.
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]


def train_tokenizer(texts: Iterable[str], vocab_size: int = 2048):
    """Byte-level BPE (the Qwen2 tokenizer's kind) trained on `texts`; returns a transformers Qwen2Tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    hf = Qwen2Tokenizer(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        bos_token=None,
        model_max_length=32768,
    )
    hf.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS[1:]}, replace_extra_special_tokens=True)
    hf.chat_template = QWEN25VL_TRAINING_TEMPLATE
    return hf


def build_processor(tokenizer, min_pixels: int = TINY_MIN_PIXELS, max_pixels: int = TINY_MAX_PIXELS):
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    image_processor = Qwen2VLImageProcessor(min_pixels=min_pixels, max_pixels=max_pixels)
    return Qwen2_5_VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=QWEN25VL_TRAINING_TEMPLATE,
    )


def tiny_config(tokenizer, hidden_size: int = 128, layers: int = 4):
    """A Qwen2_5_VLConfig with small sizes; mrope sections sum to half the head dimension (as the model needs)."""
    from transformers import Qwen2_5_VLConfig

    heads = max(2, hidden_size // 32)
    head_dim = hidden_size // heads
    half = head_dim // 2
    t = half // 4
    mrope = [half - 2 * ((half - t) // 2), (half - t) // 2, (half - t) // 2]
    ids = {name: tokenizer.convert_tokens_to_ids(name) for name in SPECIAL_TOKENS}
    vision_hidden = 64
    return Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": hidden_size,
            "intermediate_size": hidden_size * 3,
            "num_hidden_layers": layers,
            "num_attention_heads": heads,
            "num_key_value_heads": max(1, heads // 2),
            "max_position_embeddings": 4096,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope},
            "bos_token_id": ids["<|im_start|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
            "tie_word_embeddings": True,
        },
        vision_config={
            "depth": 2,
            "hidden_size": vision_hidden,
            "intermediate_size": vision_hidden * 2,
            "num_heads": 2,
            "out_hidden_size": hidden_size,
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
        tie_word_embeddings=True,
    )


def build_tiny_checkpoint(
    texts: Iterable[str],
    out_dir: str | Path,
    *,
    vocab_size: int = 2048,
    hidden_size: int = 128,
    layers: int = 4,
    min_pixels: int = TINY_MIN_PIXELS,
    max_pixels: int = TINY_MAX_PIXELS,
    seed: int = 0,
) -> Path:
    """Train the tokenizer on `texts`, build the randomly initialised tiny model, save both; return the folder."""
    import torch
    from transformers import GenerationConfig, Qwen2_5_VLForConditionalGeneration

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(texts, vocab_size=vocab_size)
    processor = build_processor(tokenizer, min_pixels=min_pixels, max_pixels=max_pixels)
    config = tiny_config(tokenizer, hidden_size=hidden_size, layers=layers)
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        eos_token_id=config.text_config.eos_token_id,
        pad_token_id=config.text_config.pad_token_id,
        do_sample=False,
    )
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def corpus_texts(rows: Iterable[dict]) -> Iterable[str]:
    """Every text of a TRL conversational JSONL row (all turns), the tokenizer's training corpus."""
    for row in rows:
        for message in row.get("messages", []):
            content = message.get("content")
            if isinstance(content, str):
                yield content
            else:
                for part in content or []:
                    if part.get("type") == "text" and part.get("text"):
                        yield part["text"]
