"""`render`: paint a `SynthCase` as a grayscale OPG-like image (numpy + PIL only).

Painter's model on a float canvas: soft tissue, skull base, maxilla, sinuses, palate, mandible,
canals, bone-level defects, then teeth (dentin, enamel, pulp), caries and radiopaque work, then
blur and quantum noise. Randomness comes only from `case.render_seed`, so render is pure.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from mmoral_pipeline.domain.taxonomy import Category
from mmoral_pipeline.synth.model import Polygon, SynthCase


class _Canvas:
    def __init__(self, width: int, height: int, base: float) -> None:
        self.W, self.H = width, height
        self.a = np.full((height, width), base, dtype=np.float32)

    def paint(
        self,
        polys: list[Polygon],
        value: float | Callable[[np.ndarray, np.ndarray], np.ndarray],
        *,
        blur: float = 0.0,
        alpha: float = 1.0,
        lines: list[Polygon] | None = None,
        width: float = 0.0,
        outline: float = 0.0,
        tex: np.ndarray | None = None,
    ) -> None:
        """Blend `value` into the canvas under the union of polygons / thick polylines."""
        lines = lines or []
        pts = [p for poly in polys for p in poly] + [p for ln in lines for p in ln]
        if not pts:
            return
        pad = int(blur * 3 + width + outline + 3)
        x0 = max(0, int(min(p[0] for p in pts)) - pad)
        y0 = max(0, int(min(p[1] for p in pts)) - pad)
        x1 = min(self.W, int(max(p[0] for p in pts)) + pad + 1)
        y1 = min(self.H, int(max(p[1] for p in pts)) + pad + 1)
        if x1 <= x0 or y1 <= y0:
            return
        # Wide feathering is drawn at reduced scale and upsampled: same look, a fraction of the blur cost.
        k = max(1, int(blur / 3)) if blur >= 6 else 1
        cw, chh = x1 - x0, y1 - y0
        mask = Image.new("L", (max(1, -(-cw // k)), max(1, -(-chh // k))), 0)
        d = ImageDraw.Draw(mask)
        for poly in polys:
            if len(poly) < 3:
                continue
            shifted = [((x - x0) / k, (y - y0) / k) for x, y in poly]
            if outline:
                d.polygon(shifted, outline=255, width=max(1, int(round(outline / k))))
            else:
                d.polygon(shifted, fill=255)
        for ln in lines:
            d.line(
                [((x - x0) / k, (y - y0) / k) for x, y in ln],
                fill=255,
                width=max(1, int(round(width / k))),
                joint="curve",
            )
        if blur > 0:
            mask = mask.filter(ImageFilter.GaussianBlur(blur / k))
        if k > 1:
            mask = mask.resize((cw, chh), Image.BILINEAR)
        m = np.asarray(mask, dtype=np.float32) * (alpha / 255.0)
        region = self.a[y0:y1, x0:x1]
        if callable(value):
            yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
            value = value(xx, yy)
        v = value if tex is None else value * tex[y0:y1, x0:x1]
        region += m * (v - region)


def _smooth_noise(rs: np.random.Generator, width: int, height: int, cell: float) -> np.ndarray:
    """Band-limited noise (unit-ish variance): small random grid upsampled bicubically."""
    gw, gh = max(2, int(width / cell)), max(2, int(height / cell))
    small = Image.fromarray(rs.standard_normal((gh, gw)).astype(np.float32), mode="F")
    return np.asarray(small.resize((width, height), Image.BICUBIC), dtype=np.float32)


def render(case: SynthCase) -> Image.Image:
    """Grayscale ('L') image of the case; same case -> identical pixels."""
    W, H = case.width, case.height
    s = H / 700.0
    rs = np.random.default_rng(case.render_seed)
    jaw = case.jaw
    c = _Canvas(W, H, 10.0)
    trab = 1.0 + 0.07 * _smooth_noise(rs, W, H, 16 * s) + 0.03 * _smooth_noise(rs, W, H, 6 * s)
    broad = 1.0 + 0.08 * _smooth_noise(rs, W, H, 60 * s)
    cx = sum(p[0] for p in jaw.palate) / len(jaw.palate)

    # Soft tissue of the head and the skull base; cervical spine ghosts at both edges.
    head = [(cx + 0.5 * W * np.cos(t), 0.42 * H + 0.62 * H * np.sin(t)) for t in np.linspace(0, 2 * np.pi, 40)]
    c.paint([head], 46.0, blur=45 * s, tex=broad)
    midface = [(cx - 0.33 * W, 0.5 * H), (cx - 0.36 * W, 0.2 * H), (cx - 0.2 * W, 0.1 * H), (cx + 0.2 * W, 0.1 * H),
               (cx + 0.36 * W, 0.2 * H), (cx + 0.33 * W, 0.5 * H)]
    c.paint([midface], 80.0, blur=25 * s, tex=trab)
    for sg in (-1, 1):
        xe = 0.0 if sg < 0 else W
        spine = [(xe, 0.25 * H), (xe - sg * 0.05 * W, 0.3 * H), (xe - sg * 0.06 * W, H), (xe, H)]
        c.paint([spine], 70.0, blur=14 * s, tex=trab)
        zyg = [(cx + sg * 0.46 * W, 0.2 * H), (cx + sg * 0.36 * W, 0.26 * H), (cx + sg * 0.25 * W, 0.3 * H),
               (cx + sg * 0.25 * W, 0.33 * H), (cx + sg * 0.36 * W, 0.3 * H), (cx + sg * 0.46 * W, 0.25 * H)]
        c.paint([zyg], 105.0, blur=10 * s, alpha=0.6, tex=trab)

    # Maxilla, nasal cavity, sinuses, hard palate, airway.
    c.paint([jaw.maxilla], 118.0, blur=9 * s, tex=trab)
    c.paint([jaw.nasal], 34.0, blur=14 * s)
    c.paint([], 90.0, lines=[[(cx, 0.08 * H), (cx, jaw.nasal[0][1])]], width=5 * s, blur=3 * s)
    for f in case.findings:
        if f.category == Category.MAXILLARY_SINUS:
            c.paint(f.parts, 50.0, blur=10 * s, alpha=0.8, tex=broad)
            c.paint(f.parts, 130.0, outline=3 * s, blur=2.5 * s, alpha=0.45)
    c.paint([], 145.0, lines=[jaw.palate], width=0.014 * H, blur=3.5 * s)
    c.paint([jaw.airway], 25.0, blur=6 * s, alpha=0.2)
    # Alveolar process of the maxilla around the upper roots, up to the palate.
    c.paint(
        [jaw.upper_crest + [(p[0], p[1] - 0.02 * H) for p in reversed(jaw.palate)]],
        124.0,
        blur=8 * s,
        alpha=0.8,
        tex=trab,
    )
    # Tongue and lips between the jaws: mid-grey soft tissue, not air.
    c.paint([jaw.upper_crest + list(reversed(jaw.lower_crest))], 76.0, blur=12 * s, alpha=0.8, tex=broad)

    # Mandible with cortical outline, canals, bone-level defects and periapical radiolucencies.
    c.paint([jaw.mandible], 158.0, outline=0.014 * H, blur=3 * s, tex=trab)
    c.paint(
        [jaw.mandible],
        lambda xx, yy: 108.0 + 34.0 * np.clip((yy - 0.55 * H) / (0.35 * H), 0.0, 1.0),
        blur=4 * s,
        tex=trab,
    )
    c.paint([], 170.0, lines=[jaw.mandible[15:36]], width=0.022 * H, blur=3 * s)  # thick lower border cortex
    for f in case.findings:
        if f.category == Category.MANDIBULAR_CANAL:
            c.paint([], 150.0, lines=f.lines, width=f.line_width + 4 * s, blur=2 * s, alpha=0.45)
            c.paint([], 80.0, lines=f.lines, width=f.line_width, blur=2.5 * s, alpha=0.85)
        elif f.category == Category.BONE_LOSS:
            c.paint(f.parts, 45.0, blur=3 * s, alpha=0.85)
        elif f.category == Category.PERIAPICAL_LESION:
            if f.lesion_type == "cyst":
                c.paint(f.parts, 155.0, outline=3 * s, blur=1.5 * s, alpha=0.8)
                c.paint(f.parts, 55.0, blur=2 * s)
            else:
                c.paint(
                    f.parts,
                    55.0 if f.lesion_type == "granuloma" else 62.0,
                    blur=(2.5 if f.lesion_type == "granuloma" else 5) * s,
                )

    # Teeth: periodontal ligament halo, dentin fading towards the apex, enamel, pulp and canals.
    for t in case.teeth:
        ox, oy, ax, ay, ch, rl = t.axis

        def dentin(xx: np.ndarray, yy: np.ndarray, ox=ox, oy=oy, ax=ax, ay=ay, ch=ch, rl=rl) -> np.ndarray:
            v = (xx - ox) * ax + (yy - oy) * ay
            return 188.0 - 48.0 * np.clip((v - ch) / rl, 0.0, 1.0) + 8.0 * np.clip(1.0 - v / ch, 0.0, 1.0)

        c.paint([t.outline], 62.0, outline=3 * s, blur=1.2 * s, alpha=0.55)
        c.paint([t.outline], dentin, blur=1.0 * s, tex=trab * 0.25 + 0.75)
    crowns = [t.crown for t in case.teeth if t.crown]
    c.paint(crowns, 222.0, blur=1.2 * s, alpha=0.55)
    c.paint(crowns, 238.0, outline=2.5 * s, blur=1.0 * s, alpha=0.5)
    c.paint([t.pulp for t in case.teeth], 128.0, blur=2.0 * s, alpha=0.8)
    c.paint([], 128.0, lines=[ln for t in case.teeth for ln in t.root_lines], width=1.8 * s, blur=1.2 * s, alpha=0.6)

    # Missing bone also thins the image over the roots it no longer covers.
    c.paint(
        [p for f in case.findings if f.category == Category.BONE_LOSS for p in f.parts], 50.0, blur=3 * s, alpha=0.35
    )

    # Caries, then radiopaque work on top.
    for f in case.findings:
        if f.category == Category.CARIES:
            c.paint(f.parts, 100.0, blur=1.8 * s, alpha=0.9)
        elif f.category == Category.DEEP_CARIES:
            c.paint(f.parts, 82.0, blur=1.8 * s)
    for f in case.findings:
        if f.category == Category.BRIDGE:
            c.paint(f.parts, 246.0, blur=0.9 * s)
        elif f.category in (Category.FILLING, Category.CROWN, Category.IMPLANT):
            c.paint(f.parts, 250.0 if f.category != Category.CROWN else 244.0, blur=0.9 * s)
        elif f.category == Category.ROOT_CANAL_TREATMENT:
            c.paint([], 248.0, lines=f.lines, width=f.line_width, blur=0.7 * s)

    img = c.a * jaw.contrast + jaw.brightness
    img += rs.standard_normal((H, W), dtype=np.float32) * (jaw.noise * 0.6)
    img += 4.0 * _smooth_noise(rs, W, H, 20 * s)
    out = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), mode="L")
    return out.filter(ImageFilter.GaussianBlur(0.7 * s))
