"""Model runners: each turns benchmark rows into raw answer strings (extraction and scoring come after).

- `RandomRunner` / `MostFrequentRunner`: baselines, deterministic for a seed.
- `QuestionPriorRunner`: the question-wording prior fitted on the training split (`evaluation.prior`): what
  text alone answers, closed and open.
- `ConstantRunner`: the same text for every question (`constant:<text>`): a floor; a non-answer must score 0.
- `ChatRunner`: any ChatBackend (OpenAI-compatible vision endpoint via the generation package's
  backend with its concurrency, retries and cache); images go as base64 data URLs; `use_images=False`
  gives the text-only run of the same model, `other_images=True` its other-patient-image run.
- `HFRunner`: a local Hugging Face checkpoint (SFT output or any Qwen2.5-VL path), batched
  generation; torch/transformers are imported only when it runs.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any, Protocol

from mmoral_pipeline.evaluation.items import LETTERS, ClosedItem, OpenItem
from mmoral_pipeline.evaluation.prior import QuestionPrior
from mmoral_pipeline.generation.types import ChatBackend, ChatRequest

CLOSED_INSTRUCTION = (
    "Answer with the option's letter from the given choices directly. "
    "If you are not sure, answer with the most likely option."
)


def closed_prompt(item: ClosedItem) -> str:
    """The benchmark's closed-ended prompt: Question, Options A-D, one-letter instruction."""
    opts = "\n".join(f"{letter}. {text}" for letter, text in zip(LETTERS, item.options, strict=True))
    return f"Question: {item.question}\nOptions:\n{opts}\n{CLOSED_INSTRUCTION}"


def closed_prompt_options(prompt: str) -> dict[str, str]:
    """Letter -> option text of a prompt laid out as `closed_prompt` does ('B. Lower jaw' lines)."""
    return dict(re.findall(r"^([A-D])\. (.+)$", prompt, flags=re.MULTILINE))


_STEM = re.compile(r"^Question:\s*(.+?)\s*\nOptions:\s*\n", re.DOTALL)


def parse_closed_prompt(prompt: str) -> tuple[str, dict[str, str]] | None:
    """(question stem, letter -> option text) of a prompt laid out as `closed_prompt` does; None for any other text."""
    m = _STEM.match(prompt or "")
    options = closed_prompt_options(prompt or "")
    if m is None or sorted(options) != list(LETTERS):
        return None
    return m.group(1), options


def open_prompt(item: OpenItem) -> str:
    return item.question


class Runner(Protocol):
    name: str
    supports_open: bool

    def answer_closed(self, items: Sequence[ClosedItem]) -> list[str]: ...

    def answer_open(self, items: Sequence[OpenItem]) -> list[str]: ...


class RandomRunner:
    """Uniform random letter per question; seeded per (seed, index) so order does not matter."""

    supports_open = False

    def __init__(self, seed: int = 0, name: str = "random"):
        self.seed, self.name = seed, name

    def answer_closed(self, items: Sequence[ClosedItem]) -> list[str]:
        out = []
        for it in items:
            h = int(hashlib.sha256(f"{self.seed}:{it.index}".encode()).hexdigest()[:16], 16)
            out.append(random.Random(h).choice(LETTERS))
        return out

    def answer_open(self, items: Sequence[OpenItem]) -> list[str]:
        return ["" for _ in items]


class MostFrequentRunner:
    """Always the benchmark's most frequent gold letter (ties -> earliest letter)."""

    supports_open = False

    def __init__(self, name: str = "most_frequent"):
        self.name = name
        self.letter: str | None = None

    def answer_closed(self, items: Sequence[ClosedItem]) -> list[str]:
        counts = Counter(it.answer for it in items)
        self.letter = max(LETTERS, key=lambda letter: (counts.get(letter, 0), -LETTERS.index(letter)))
        return [self.letter for _ in items]

    def answer_open(self, items: Sequence[OpenItem]) -> list[str]:
        return ["" for _ in items]


class QuestionPriorRunner:
    """The question-wording prior (`evaluation.prior.QuestionPrior`): no image, only the training answers."""

    supports_open = True

    def __init__(self, prior: QuestionPrior, name: str = "question_prior"):
        self.prior, self.name = prior, name

    def answer_closed(self, items: Sequence[ClosedItem]) -> list[str]:
        return [LETTERS[it.options.index(self.prior.closed_choice(it.question, it.options))] for it in items]

    def answer_open(self, items: Sequence[OpenItem]) -> list[str]:
        return [self.prior.open_answer(it.question) for it in items]


class ConstantRunner:
    """The same text for every question (`constant:<text>`): the floor a judge must give nothing for."""

    supports_open = True

    def __init__(self, text: str, name: str | None = None):
        self.text = text
        self.name = name or f"constant:{text}"

    def answer_closed(self, items: Sequence[ClosedItem]) -> list[str]:
        return [self.text for _ in items]

    def answer_open(self, items: Sequence[OpenItem]) -> list[str]:
        return [self.text for _ in items]


def shown_images(items: Sequence[ClosedItem] | Sequence[OpenItem], other_images: bool) -> list[str]:
    """The image each question is shown: its own, or (`other_images`) the next distinct image of the benchmark, so
    every question gets another patient's X-ray in the input form the model knows: the control for "does it read
    the X-ray, or only the question?"."""
    images = [it.image for it in items]
    if not other_images:
        return images
    distinct = list(dict.fromkeys(b for b in images if b))
    if len(distinct) < 2:
        raise ValueError("the other-image control needs items of at least two different images")
    following = {b: distinct[(i + 1) % len(distinct)] for i, b in enumerate(distinct)}
    return [following.get(b, b) for b in images]


def _user_message(prompt: str, image_b64: str, use_images: bool) -> dict[str, Any]:
    if use_images and image_b64:
        return {"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{image_b64}"}},
            {"type": "text", "text": prompt},
        ]}
    return {"role": "user", "content": prompt}


class ChatRunner:
    """Any ChatBackend (`.complete(list[ChatRequest]) -> list[ChatResponse]`); a failed call answers ""."""

    supports_open = True

    def __init__(self, backend: ChatBackend, name: str | None = None, use_images: bool = True,
                 max_tokens: int = 512, temperature: float = 0.0, other_images: bool = False):
        self.backend = backend
        self.use_images = use_images
        self.other_images = other_images
        suffix = "" if use_images else "-text-only"
        self.name = name or f"{getattr(backend, 'model', 'model')}{suffix}"
        self.params = {"temperature": temperature, "max_tokens": max_tokens}
        self.errors = 0

    def _run(self, prompts: list[str], images: list[str], tag: str, max_tokens: int | None = None) -> list[str]:
        params = dict(self.params)
        if max_tokens:
            params["max_tokens"] = max_tokens
        reqs = [ChatRequest(messages=[_user_message(p, img, self.use_images)], params=params, tag=tag)
                for p, img in zip(prompts, images, strict=True)]
        responses = self.backend.complete(reqs)
        self.errors += sum(1 for r in responses if r.error)
        return [r.text if not r.error else "" for r in responses]

    def answer_closed(self, items: Sequence[ClosedItem]) -> list[str]:
        return self._run([closed_prompt(it) for it in items], shown_images(items, self.other_images), "bench_closed",
                         max_tokens=32)

    def answer_open(self, items: Sequence[OpenItem]) -> list[str]:
        return self._run([open_prompt(it) for it in items], shown_images(items, self.other_images), "bench_open")


class HFRunner:
    """A local checkpoint; uses `mmoral_pipeline.training.infer.generate_answers` when present,
    else its own batched Qwen2.5-VL generation (AutoProcessor + AutoModelForImageTextToText).

    `use_images=False` drops the image (text-only); `other_images=True` shows each question another patient's
    X-ray (`shown_images`)."""

    supports_open = True

    def __init__(self, checkpoint: str, name: str | None = None, use_images: bool = True, batch_size: int = 4,
                 max_new_tokens_closed: int = 16, max_new_tokens_open: int = 256, max_pixels: int | None = 401_408,
                 device: str | None = None, use_training_infer: bool = True, other_images: bool = False):
        self.checkpoint = str(checkpoint)
        self.other_images = other_images
        self.use_training_infer = use_training_infer
        self.use_images = use_images
        self.name = name or (self.checkpoint.rstrip("/").split("/")[-1] + ("" if use_images else "-text-only"))
        self.batch_size = batch_size
        self.max_new_tokens_closed = max_new_tokens_closed
        self.max_new_tokens_open = max_new_tokens_open
        self.max_pixels = max_pixels
        self.device = device
        self._model = None
        self._processor = None

    def answer_closed(self, items: Sequence[ClosedItem]) -> list[str]:
        return self.generate([closed_prompt(it) for it in items], shown_images(items, self.other_images),
                             self.max_new_tokens_closed)

    def answer_open(self, items: Sequence[OpenItem]) -> list[str]:
        return self.generate([open_prompt(it) for it in items], shown_images(items, self.other_images),
                             self.max_new_tokens_open)

    def generate(self, prompts: list[str], images_b64: list[str], max_new_tokens: int) -> list[str]:
        generate_answers = None
        if self.use_training_infer:
            try:
                from mmoral_pipeline.training.infer import generate_answers  # the training stage's entry point
            except ImportError:
                generate_answers = None
        if generate_answers is not None:
            items = [{"prompt": p, "image": self._image(b) if (b and self.use_images) else None}
                     for p, b in zip(prompts, images_b64, strict=True)]
            return list(
                generate_answers(
                    self.checkpoint,
                    items,
                    use_images=self.use_images,
                    max_new_tokens=max_new_tokens,
                    batch_size=self.batch_size,
                    device=self.device,
                )
            )
        return self._generate_own(prompts, images_b64, max_new_tokens)

    def _load(self):
        if self._model is None:
            import torch
            from transformers import AutoModelForImageTextToText, AutoProcessor

            device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
            dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
            self._processor = AutoProcessor.from_pretrained(self.checkpoint)
            self._processor.tokenizer.padding_side = "left"  # decoder-only batched generation
            self._model = AutoModelForImageTextToText.from_pretrained(self.checkpoint, dtype=dtype).to(device).eval()
        return self._model, self._processor

    def _image(self, b64: str):
        from mmoral_pipeline.evaluation.tsv import decode_image

        return self._fit(decode_image(b64))

    def _fit(self, img):
        if self.max_pixels and img.width * img.height > self.max_pixels:
            scale = (self.max_pixels / (img.width * img.height)) ** 0.5
            img = img.resize((max(28, int(img.width * scale)), max(28, int(img.height * scale))))
        return img

    def _generate_own(self, prompts: list[str], images_b64: list[str], max_new_tokens: int) -> list[str]:
        import torch

        model, processor = self._load()
        out: list[str] = []
        for start in range(0, len(prompts), self.batch_size):
            batch_p = prompts[start:start + self.batch_size]
            batch_i = images_b64[start:start + self.batch_size]
            with_img = [self.use_images and bool(b) for b in batch_i]
            texts, images = [], []
            for p, b, use in zip(batch_p, batch_i, with_img, strict=True):
                content = ([{"type": "image"}] if use else []) + [{"type": "text", "text": p}]
                texts.append(processor.apply_chat_template([{"role": "user", "content": content}], tokenize=False,
                                                           add_generation_prompt=True))
                if use:
                    images.append(self._image(b))
            kwargs: dict[str, Any] = {"text": texts, "padding": True, "return_tensors": "pt"}
            if images:
                kwargs["images"] = images
            inputs = processor(**kwargs).to(model.device)
            with torch.inference_mode():
                gen = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
            new = gen[:, inputs["input_ids"].shape[1]:]
            out.extend(t.strip() for t in processor.batch_decode(new, skip_special_tokens=True))
        return out
