"""A contact sheet: a grid of COCO sample images with their boxes, one colour per category."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from mmoral_pipeline.domain.taxonomy import Category
from mmoral_pipeline.synth.model import CATEGORY_NAMES, CATEGORY_ORDER

COLOURS: dict[str, tuple[int, int, int]] = {
    CATEGORY_NAMES[c]: rgb
    for c, rgb in zip(
        CATEGORY_ORDER,
        [
            (90, 160, 255),  # tooth
            (255, 60, 60),  # caries
            (200, 0, 120),  # deep caries
            (255, 150, 0),  # periapical lesion
            (255, 255, 0),  # impacted tooth
            (0, 255, 255),  # missing tooth
            (170, 110, 40),  # retained root
            (255, 0, 255),  # bone loss
            (0, 230, 0),  # filling
            (120, 255, 160),  # crown
            (255, 210, 150),  # root canal treatment
            (180, 180, 255),  # implant
            (0, 140, 110),  # bridge
            (255, 120, 200),  # mandibular canal
            (150, 90, 255),  # maxillary sinus
        ],
        strict=True,
    )
}


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def covering_images(doc: dict, n: int) -> list[dict]:
    """Greedy pick of `n` images that together show as many categories as possible (stable order)."""
    cats: dict[int, set[int]] = {}
    for a in doc["annotations"]:
        cats.setdefault(a["image_id"], set()).add(a["category_id"])
    chosen: list[dict] = []
    seen: set[int] = set()
    pool = list(doc["images"])
    while pool and len(chosen) < n:
        best = max(pool, key=lambda im: (len(cats.get(im["id"], set()) - seen), -im["id"]))
        chosen.append(best)
        seen |= cats.get(best["id"], set())
        pool.remove(best)
    return sorted(chosen, key=lambda im: im["id"])


def contact_sheet(
    coco_dir: Path, out_png: Path, *, n: int = 6, cols: int = 3, tile_width: int = 620, cover: bool = False
) -> Path:
    """Draw `n` images of a COCO folder (the first, or with `cover` a set showing most categories) with boxes
    and a legend; save a compact PNG.

    A palette image: 240 grey levels for the X-rays plus one exact colour per category, so the
    colours stay true and the file stays small.
    """
    doc = json.loads((coco_dir / "annotations.json").read_text())
    names = {c["id"]: c["name"] for c in doc["categories"]}
    images = covering_images(doc, n) if cover else doc["images"][:n]
    by_image: dict[int, list[dict]] = {}
    for a in doc["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    first = images[0]
    scale = tile_width / first["width"]
    tile_h = int(round(first["height"] * scale))
    rows = (len(images) + cols - 1) // cols
    legend_h, gap, greys = 64, 6, 240
    palette = [v for g in range(greys) for v in (g * 255 // (greys - 1),) * 3]
    colour_index: dict[str, int] = {}
    for name, rgb in COLOURS.items():
        colour_index[name] = len(palette) // 3
        palette += list(rgb)
    white, background = len(palette) // 3, 12
    palette += [255, 255, 255]
    width = cols * tile_width + (cols + 1) * gap
    arr = np.full((rows * tile_h + (rows + 1) * gap + legend_h, width), background, dtype=np.uint8)
    for k, im in enumerate(images):
        with Image.open(coco_dir / "images" / im["file_name"]) as src:
            tile = np.asarray(src.convert("L").resize((tile_width, tile_h), Image.LANCZOS), dtype=np.uint16)
        r, c = divmod(k, cols)
        x0, y0 = gap + c * (tile_width + gap), gap + r * (tile_h + gap)
        arr[y0 : y0 + tile_h, x0 : x0 + tile_width] = (tile * (greys - 1) // 255).astype(np.uint8)
    sheet = Image.fromarray(arr, mode="L").convert("P")
    sheet.putpalette(palette)
    sheet.putdata(arr.ravel())  # keep exact indices (convert() may remap)
    d = ImageDraw.Draw(sheet)
    font = _font(13)
    for k, im in enumerate(images):
        r, c = divmod(k, cols)
        x0, y0 = gap + c * (tile_width + gap), gap + r * (tile_h + gap)
        anns = sorted(
            by_image.get(im["id"], []), key=lambda a: names[a["category_id"]] != CATEGORY_NAMES[Category.TOOTH]
        )
        for a in anns:
            name = names[a["category_id"]]
            x, y, w, h = (v * scale for v in a["bbox"])
            d.rectangle(
                [x0 + x, y0 + y, x0 + x + w, y0 + y + h],
                outline=colour_index.get(name, white),
                width=1 if name == "tooth" else 2,
            )
        d.text((x0 + 6, y0 + 4), im["file_name"], fill=white, font=font)
    y0 = rows * (tile_h + gap) + gap + 8
    per_row = 8
    col_w = (width - 2 * gap) // per_row
    for i, name in enumerate(COLOURS):
        r, c = divmod(i, per_row)
        x, y = gap + 4 + c * col_w, y0 + r * 26
        d.rectangle([x, y + 2, x + 16, y + 16], outline=colour_index[name], width=3)
        d.text((x + 22, y + 2), name, fill=white, font=font)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out_png, optimize=True)
    return out_png
