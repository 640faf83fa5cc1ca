"""Pictures of annotated X-rays: boxes drawn per category, thumbnail grids (PIL only)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

from mmoral_pipeline.domain.taxonomy import Category

COLOURS: dict[str, tuple[int, int, int]] = {
    Category.TOOTH: (80, 200, 255),
    Category.CARIES: (255, 60, 60),
    Category.DEEP_CARIES: (200, 0, 0),
    Category.PERIAPICAL_LESION: (255, 150, 0),
    Category.IMPACTED_TOOTH: (255, 0, 255),
    Category.MISSING_TOOTH: (160, 160, 160),
    Category.RETAINED_ROOT: (170, 110, 40),
    Category.BONE_LOSS: (255, 255, 0),
    Category.FILLING: (0, 255, 120),
    Category.CROWN: (0, 180, 90),
    Category.ROOT_CANAL_TREATMENT: (120, 255, 200),
    Category.IMPLANT: (0, 120, 255),
    Category.BRIDGE: (150, 100, 255),
    Category.MANDIBULAR_CANAL: (255, 200, 200),
    Category.MAXILLARY_SINUS: (200, 255, 255),
}


@dataclass
class DrawnBox:
    box: Sequence[float]
    category: str
    label: str | None = None


def draw_boxes(image: Image.Image, boxes: Sequence[DrawnBox], width: int = 3) -> Image.Image:
    im = image.convert("RGB")
    draw = ImageDraw.Draw(im)
    font = ImageFont.load_default()
    for b in boxes:
        colour = COLOURS.get(b.category, (255, 255, 255))
        draw.rectangle([float(v) for v in b.box], outline=colour, width=width)
        if b.label:
            draw.text((float(b.box[0]) + 2, float(b.box[1]) + 1), b.label, fill=colour, font=font)
    return im


def thumbnail_grid(images: Sequence[Image.Image], columns: int = 3, thumb_width: int = 420) -> Image.Image:
    thumbs = []
    for im in images:
        scale = thumb_width / im.width
        thumbs.append(im.resize((thumb_width, max(1, int(im.height * scale)))))
    if not thumbs:
        return Image.new("RGB", (thumb_width, 40), "black")
    rows = (len(thumbs) + columns - 1) // columns
    cell_h = max(t.height for t in thumbs)
    grid = Image.new("RGB", (columns * thumb_width, rows * cell_h), "black")
    for i, t in enumerate(thumbs):
        grid.paste(t, ((i % columns) * thumb_width, (i // columns) * cell_h))
    return grid


def to_png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def to_jpeg(image: Image.Image, quality: int = 80) -> bytes:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
