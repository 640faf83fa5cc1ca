"""A made-up, learnable panoramic-style dataset in the TRL export layout, for tests and CPU measurements.

Each picture is a dark strip with two rows of bright 'teeth'; some teeth are missing and one quadrant holds a
dark 'lesion'. Closed questions (lesion quadrant, missing count) can only be answered from the picture, so a
trained model beats the most-frequent-letter baseline only if it looks. Not the project's synthetic generator
(mmoral_pipeline/synth): this one exists so training can be tested before and without the dataset stages.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

QUADRANTS = ["upper right", "upper left", "lower left", "lower right"]  # FDI 1..4; patient's right = image left
LETTERS = "ABCD"


def _draw(rng: random.Random, path: Path, lesion_q: int, missing: int, size: tuple[int, int]) -> None:
    from PIL import Image, ImageDraw

    w, h = size
    im = Image.new("L", (w, h), 20)
    d = ImageDraw.Draw(im)
    d.ellipse([w * 0.05, h * 0.1, w * 0.95, h * 0.95], fill=45)
    teeth_per_row = 16
    tw = (w * 0.8) / teeth_per_row
    gone = set(rng.sample(range(2 * teeth_per_row), missing))
    for row in range(2):
        y0 = h * (0.2 if row == 0 else 0.55)
        for i in range(teeth_per_row):
            if row * teeth_per_row + i in gone:
                continue
            x0 = w * 0.1 + i * tw
            d.rectangle([x0 + 1, y0, x0 + tw - 2, y0 + h * 0.25], fill=200 + rng.randint(-20, 30))
    upper = lesion_q in (0, 1)
    image_left = lesion_q in (0, 3)  # patient's right is the image's left
    cx = w * (0.3 if image_left else 0.7) + rng.uniform(-0.08, 0.08) * w
    cy = h * (0.32 if upper else 0.67)
    r = h * 0.09
    d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=5)
    im.convert("RGB").save(path, quality=90)


def make_toy_export(out_dir: str | Path, n_images: int = 40, seed: int = 0, size: tuple[int, int] = (448, 224)) -> dict:
    """Write images and `train.jsonl` / `val.jsonl` (80/20 by image) under `out_dir`; return their paths.

    Per image: two closed questions, one open question, a short report and a two-turn dialogue.
    """
    rng = random.Random(seed)
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rows_by_split: dict[str, list[dict]] = {"train": [], "val": []}
    for k in range(n_images):
        lesion_q = rng.randrange(4)
        missing = rng.randrange(4)
        img = out / "images" / f"toy_{k:05d}.jpg"
        _draw(rng, img, lesion_q, missing, size)
        split = "val" if k % 5 == 4 else "train"

        def sample(task: str, turns: list[tuple[str, str]], idx: int, k: int = k, img: Path = img) -> dict:
            messages = []
            for t, (q, a) in enumerate(turns):
                user = [{"type": "text", "text": q}]
                if t == 0:
                    user.insert(0, {"type": "image"})
                messages.append({"role": "user", "content": user})
                messages.append({"role": "assistant", "content": [{"type": "text", "text": a}]})
            return {"sample_id": f"toy-{k:05d}-{idx}", "task_type": task, "images": [str(img.resolve())],
                    "messages": messages}

        opts = QUADRANTS[:]
        rng.shuffle(opts)
        q1 = "Which quadrant contains the periapical lesion?\n" + "\n".join(
            f"{LETTERS[i]}. {o}" for i, o in enumerate(opts)) + "\nAnswer with the option's letter."
        a1 = LETTERS[opts.index(QUADRANTS[lesion_q])]
        counts = [0, 1, 2, 3]
        rng.shuffle(counts)
        q2 = "How many teeth are missing?\n" + "\n".join(
            f"{LETTERS[i]}. {c}" for i, c in enumerate(counts)) + "\nAnswer with the option's letter."
        a2 = LETTERS[counts.index(missing)]
        report = (f"1. Teeth: {32 - missing} teeth visible, {missing} missing. "
                  f"2. Lesions: one periapical lesion in the {QUADRANTS[lesion_q]} quadrant. "
                  "3. Recommendation: clinical examination of the lesion.")
        rows = [
            sample("vqa_closed", [(q1, a1)], 0),
            sample("vqa_closed", [(q2, a2)], 1),
            sample("vqa_open", [("Where is the periapical lesion?", f"In the {QUADRANTS[lesion_q]} quadrant.")], 2),
            sample("report", [("Write a report of this panoramic radiograph.", report)], 3),
            sample("dialogue", [("Are any teeth missing?", f"Yes, {missing}." if missing else "No."),
                                ("Is there a lesion?", f"Yes, in the {QUADRANTS[lesion_q]} quadrant.")], 4),
        ]
        rows_by_split[split].extend(rows)
    paths = {}
    for split, rows in rows_by_split.items():
        rng.shuffle(rows)
        p = out / f"{split}.jsonl"
        with open(p, "w", encoding="utf-8") as fh:
            for r in rows:
                fh.write(json.dumps(r) + "\n")
        paths[split] = str(p)
    return paths
