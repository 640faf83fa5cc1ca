"""Training data: the TRL conversational JSONL export, images loaded lazily, loss on assistant tokens only.

Masking is done here, on token ids, rather than through the chat template's {% generation %} markers: it gives
the same mask as TRL 1.16's `assistant_only_loss=True` (a test checks this) but does not need
transformers >= 5.18 (the GPU machine has 5.17) nor a template with markers (any Qwen2.5-VL checkpoint works).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

IGNORE_INDEX = -100


def read_jsonl(path: str | Path, max_samples: int | None = None) -> list[dict[str, Any]]:
    """Rows of a TRL conversational JSONL; relative image paths are resolved against the file's folder."""
    p = Path(path)
    rows: list[dict[str, Any]] = []
    with open(p, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            if "messages" not in row:
                raise ValueError(f"{p}:{line_no}: no 'messages' field")
            row["images"] = [
                str(img if Path(img).is_absolute() else (p.parent / img)) for img in row.get("images") or []
            ]
            rows.append(row)
            if max_samples is not None and len(rows) >= max_samples:
                break
    return rows


def normalise_messages(messages: list[dict[str, Any]], use_images: bool = True) -> list[dict[str, Any]]:
    """Content as a list of typed parts (Arrow fills absent keys with None; plain strings become one text part)."""
    out = []
    for m in messages:
        content = m["content"]
        parts: list[dict[str, Any]] = []
        if isinstance(content, str):
            parts.append({"type": "text", "text": content})
        else:
            for part in content:
                kind = part.get("type") or ("image" if part.get("image") is not None else "text")
                if kind == "image":
                    if use_images:
                        parts.append({"type": "image"})
                elif part.get("text") is not None:
                    parts.append({"type": "text", "text": part["text"]})
        out.append({"role": m["role"], "content": parts})
    return out


def load_image(ref: Any):
    """A PIL RGB image from a path or an already loaded image (lazy: called by the collator, per batch)."""
    from PIL import Image

    if isinstance(ref, Image.Image):
        return ref.convert("RGB")
    if isinstance(ref, dict) and ref.get("path"):
        ref = ref["path"]
    with Image.open(ref) as im:
        return im.convert("RGB")


def _find(seq: list[int], pattern: list[int], start: int) -> int:
    n = len(pattern)
    first = pattern[0]
    for i in range(start, len(seq) - n + 1):
        if seq[i] == first and seq[i : i + n] == pattern:
            return i
    return -1


def assistant_token_mask(input_ids: list[int], header: list[int], end_id: int, newline: list[int]) -> list[int]:
    """1 for tokens of assistant turns: after '<|im_start|>assistant\\n' up to and including '<|im_end|>\\n'."""
    mask = [0] * len(input_ids)
    pos = 0
    while True:
        h = _find(input_ids, header, pos)
        if h < 0:
            return mask
        start = h + len(header)
        end = start
        while end < len(input_ids) and input_ids[end] != end_id:
            end += 1
        end = min(end + 1, len(input_ids))  # include <|im_end|> so the model learns to stop
        if newline and input_ids[end : end + len(newline)] == newline:
            end += len(newline)
        for i in range(start, end):
            mask[i] = 1
        pos = end


@dataclass
class AssistantOnlyCollator:
    """Batch of chat samples -> model inputs with labels = -100 except assistant tokens (and padding masked).

    Counts tokens it has produced (all real tokens and assistant tokens) so the trainer can report tokens/s.
    """

    processor: Any
    max_length: int | None = None
    use_images: bool = True
    tokens_seen: int = 0
    assistant_tokens_seen: int = 0
    samples_seen: int = 0
    _header: list[int] = field(default_factory=list, init=False, repr=False)
    _end_id: int = field(default=-1, init=False, repr=False)
    _newline: list[int] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        tok = self.processor.tokenizer
        self._header = tok.encode("<|im_start|>assistant\n", add_special_tokens=False)
        self._end_id = tok.convert_tokens_to_ids("<|im_end|>")
        self._newline = tok.encode("\n", add_special_tokens=False)

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        texts, images = [], []
        for ex in examples:
            messages = normalise_messages(ex["messages"], use_images=self.use_images)
            texts.append(self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=False))
            if self.use_images:
                refs = ex.get("images") or ([ex["image"]] if ex.get("image") is not None else [])
                images.extend(load_image(r) for r in refs)
        batch = self.processor(
            text=texts,
            images=images or None,
            padding=True,
            padding_side="right",
            return_tensors="pt",
        )
        input_ids = batch["input_ids"]
        if self.max_length is not None and input_ids.shape[1] > self.max_length:
            image_id = self.processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
            cut_images = (input_ids[:, self.max_length :] == image_id).any()
            if cut_images:
                raise ValueError(
                    f"max_length={self.max_length} would cut image tokens; raise max_length or lower max_pixels"
                )
            for key in ("input_ids", "attention_mask", "mm_token_type_ids", "token_type_ids"):
                if key in batch:
                    batch[key] = batch[key][:, : self.max_length]
            input_ids = batch["input_ids"]
        mask = torch.tensor(
            [assistant_token_mask(row, self._header, self._end_id, self._newline) for row in input_ids.tolist()],
            dtype=torch.bool,
        ).reshape(input_ids.shape)
        labels = input_ids.clone()
        labels[batch["attention_mask"] == 0] = IGNORE_INDEX
        labels[~mask] = IGNORE_INDEX
        batch["labels"] = labels
        self.tokens_seen += int(batch["attention_mask"].sum())
        self.assistant_tokens_seen += int((labels != IGNORE_INDEX).sum())
        self.samples_seen += len(examples)
        return batch
