"""Batched greedy generation from a checkpoint written by the trainer (full model or LoRA adapter).

`generate_answers(checkpoint_dir, items, use_images=True, max_new_tokens=64)` is what the evaluation stage's
HF runner calls. An item is a dict with
- "image": a path, a PIL image, base64 JPEG/PNG text (optionally a data: URL), or None/"" for none
  ("images": a list of those is accepted too), and
- "prompt" (one user turn of text) or "messages" (chat turns; a trailing assistant turn is dropped).
"""

from __future__ import annotations

import base64
import binascii
import io
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from mmoral_pipeline import progress
from mmoral_pipeline.training.data import normalise_messages


def decode_image_ref(ref: Any):
    """PIL RGB image from a path, PIL image or base64 text; None for an empty reference."""
    from PIL import Image

    if ref is None or (isinstance(ref, str) and not ref.strip()):
        return None
    if isinstance(ref, Image.Image):
        return ref.convert("RGB")
    if isinstance(ref, (bytes, bytearray)):
        return Image.open(io.BytesIO(ref)).convert("RGB")
    text = str(ref)
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    elif len(text) < 4096 and Path(text).exists():
        with Image.open(text) as im:
            return im.convert("RGB")
    try:
        raw = base64.b64decode(text, validate=False)
        return Image.open(io.BytesIO(raw)).convert("RGB")
    except (binascii.Error, OSError, ValueError) as e:
        raise ValueError(f"image reference is neither an existing path nor base64 image data: {text[:60]!r}") from e


def _item_images(item: dict[str, Any]) -> list[Any]:
    refs = item.get("images")
    if refs is None:
        refs = [item.get("image")]
    return [im for im in (decode_image_ref(r) for r in refs) if im is not None]


def _item_messages(item: dict[str, Any], n_images: int, use_images: bool) -> list[dict[str, Any]]:
    if item.get("messages"):
        messages = normalise_messages(item["messages"], use_images=use_images)
        if messages and messages[-1]["role"] == "assistant":
            messages = messages[:-1]
    else:
        messages = [{"role": "user", "content": [{"type": "text", "text": str(item.get("prompt", ""))}]}]
    if use_images and n_images:
        have = sum(1 for m in messages for part in m["content"] if part["type"] == "image")
        if have < n_images:  # put missing image slots at the start of the first user turn
            first_user = next(m for m in messages if m["role"] == "user")
            first_user["content"] = [{"type": "image"}] * (n_images - have) + first_user["content"]
    return messages


def _weights_stamp(checkpoint_dir: str) -> float:
    """Newest weight-file time: a checkpoint rewritten in place is not served from the cache."""
    return max((p.stat().st_mtime for p in Path(checkpoint_dir).glob("*.safetensors")), default=0.0)


def load_for_inference(checkpoint_dir: str, device: str | None = None):
    """(model, processor) in eval mode, cached; LoRA adapters are loaded over their recorded base model."""
    return _load_cached(checkpoint_dir, device, _weights_stamp(checkpoint_dir))


@lru_cache(maxsize=2)
def _load_cached(checkpoint_dir: str, device: str | None, _stamp: float):
    import torch
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    ckpt = Path(checkpoint_dir)
    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if dev.startswith("cuda") else torch.float32
    processor = AutoProcessor.from_pretrained(ckpt, local_files_only=True)
    processor.tokenizer.padding_side = "left"
    adapter_cfg = ckpt / "adapter_config.json"
    if adapter_cfg.exists():
        from peft import PeftModel

        base_txt = ckpt / "base_model.txt"
        base = base_txt.read_text().strip() if base_txt.exists() else json.loads(adapter_cfg.read_text())[
            "base_model_name_or_path"]
        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(base, dtype=dtype, local_files_only=True)
        model = PeftModel.from_pretrained(model, ckpt).merge_and_unload()
    else:
        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(ckpt, dtype=dtype, local_files_only=True)
    return model.to(dev).eval(), processor


def generate_answers(
    checkpoint_dir: str | Path,
    items: list[dict[str, Any]],
    use_images: bool = True,
    max_new_tokens: int = 64,
    batch_size: int = 8,
    device: str | None = None,
) -> list[str]:
    """One greedy answer per item, in order (special tokens stripped)."""
    import torch

    if not items:
        return []
    model, processor = load_for_inference(str(Path(checkpoint_dir).resolve()), device)
    tok = processor.tokenizer
    answers: list[str] = []
    for start in range(0, len(items), batch_size):
        batch = items[start : start + batch_size]
        texts, images = [], []
        for item in batch:
            imgs = _item_images(item) if use_images else []
            messages = _item_messages(item, len(imgs), use_images)
            texts.append(processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
            images.extend(imgs)
        inputs = processor(text=texts, images=images or None, padding=True, padding_side="left", return_tensors="pt")
        inputs = inputs.to(model.device)
        with torch.inference_mode():
            out = model.generate(
                **inputs,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tok.pad_token_id,
                eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"),
            )
        new = out[:, inputs["input_ids"].shape[1] :]
        answers.extend(t.strip() for t in tok.batch_decode(new, skip_special_tokens=True))
        progress.note(answers=len(batch))  # a model run takes minutes: the benchmark's progress lines go on
    return answers


def answer_scores(
    checkpoint_dir: str | Path,
    items: list[dict[str, Any]],
    answers: tuple[str, str],
    use_images: bool = True,
    batch_size: int = 8,
    device: str | None = None,
) -> list[float]:
    """Per item, log P(first token of answers[0]) - log P(first token of answers[1]) at the start of the reply: a
    graded score (for an AUC) of a two-way question such as yes / no, from one forward pass, no sampling."""
    import torch

    if not items:
        return []
    model, processor = load_for_inference(str(Path(checkpoint_dir).resolve()), device)
    tok = processor.tokenizer
    ids = [tok.encode(a, add_special_tokens=False)[0] for a in answers]
    if ids[0] == ids[1]:
        raise ValueError(f"answers {answers} start with the same token: no score tells them apart")
    scores: list[float] = []
    for start in range(0, len(items), batch_size):
        batch = items[start : start + batch_size]
        texts, images = [], []
        for item in batch:
            imgs = _item_images(item) if use_images else []
            texts.append(processor.apply_chat_template(_item_messages(item, len(imgs), use_images), tokenize=False,
                                                       add_generation_prompt=True))
            images.extend(imgs)
        inputs = processor(text=texts, images=images or None, padding=True, padding_side="left", return_tensors="pt")
        with torch.inference_mode():
            logits = model(**inputs.to(model.device)).logits[:, -1, :].float().log_softmax(-1)
        scores.extend((logits[:, ids[0]] - logits[:, ids[1]]).tolist())
    return scores
