"""A contact sheet: a grid of COCO sample images with their boxes, one colour per category."""

from __future__ import annotations

import json
from pathlib import Path

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


def contact_sheet(coco_dir: Path, out_png: Path, *, n: int = 6, cols: int = 3, tile_width: int = 620) -> Path:
    """Draw the first `n` images of a COCO folder with boxes and a legend; save a compact PNG."""
    doc = json.loads((coco_dir / "annotations.json").read_text())
    names = {c["id"]: c["name"] for c in doc["categories"]}
    images = doc["images"][:n]
    by_image: dict[int, list[dict]] = {}
    for a in doc["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    first = images[0]
    scale = tile_width / first["width"]
    tile_h = int(round(first["height"] * scale))
    rows = (len(images) + cols - 1) // cols
    legend_h = 70
    gap = 6
    sheet = Image.new("RGB", (cols * tile_width + (cols + 1) * gap, rows * tile_h + (rows + 1) * gap + legend_h), (24, 24, 24))
    font = _font(13)
    for k, im in enumerate(images):
        tile = Image.open(coco_dir / "images" / im["file_name"]).convert("RGB").resize((tile_width, tile_h), Image.LANCZOS)
        d = ImageDraw.Draw(tile)
        anns = sorted(by_image.get(im["id"], []), key=lambda a: names[a["category_id"]] != CATEGORY_NAMES[Category.TOOTH])
        for a in anns:
            name = names[a["category_id"]]
            x, y, w, h = (v * scale for v in a["bbox"])
            d.rectangle([x, y, x + w, y + h], outline=COLOURS.get(name, (255, 255, 255)), width=1 if name == "tooth" else 2)
        d.text((6, 4), im["file_name"], fill=(255, 255, 255), font=font)
        r, c = divmod(k, cols)
        sheet.paste(tile, (gap + c * (tile_width + gap), gap + r * (tile_h + gap)))
    d = ImageDraw.Draw(sheet)
    y0 = rows * (tile_h + gap) + gap + 8
    per_row = 8
    col_w = (sheet.width - 2 * gap) // per_row
    for i, (name, rgb) in enumerate(COLOURS.items()):
        r, c = divmod(i, per_row)
        x, y = gap + 4 + c * col_w, y0 + r * 28
        d.rectangle([x, y + 2, x + 16, y + 16], outline=rgb, width=3)
        d.text((x + 22, y + 2), name, fill=(235, 235, 235), font=font)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    sheet.quantize(colors=192, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(out_png, optimize=True)
    return out_png
