"""`make_case`: a procedural OPG case (teeth by FDI, findings, jaw anatomy) as geometry only.

Coordinates are image pixels. Patient's right is on the image's LEFT (quadrants 1 and 4 left of
the midline). Every box is the exact bounds of the polygons the renderer fills, clipped to the
image, so the annotations are tight by construction.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from mmoral_pipeline.domain.taxonomy import Category
from mmoral_pipeline.synth.model import BoxXYXY, JawShape, Point, Polygon, SynthCase, SynthFinding, SynthTooth

# Mesio-distal width units per tooth position (upper / lower arch) and heights as a share of
# the image height: crown height and root length. Roughly what an adult OPG shows.
UPPER_WIDTH = {1: 1.0, 2: 0.78, 3: 0.85, 4: 0.8, 5: 0.8, 6: 1.18, 7: 1.08, 8: 0.98}
LOWER_WIDTH = {1: 0.68, 2: 0.72, 3: 0.82, 4: 0.82, 5: 0.84, 6: 1.22, 7: 1.12, 8: 1.05}
UPPER_CROWN = {1: 0.085, 2: 0.075, 3: 0.085, 4: 0.072, 5: 0.07, 6: 0.068, 7: 0.066, 8: 0.062}
UPPER_ROOT = {1: 0.115, 2: 0.105, 3: 0.145, 4: 0.115, 5: 0.112, 6: 0.1, 7: 0.096, 8: 0.085}
LOWER_CROWN = {1: 0.066, 2: 0.068, 3: 0.078, 4: 0.072, 5: 0.07, 6: 0.068, 7: 0.066, 8: 0.062}
LOWER_ROOT = {1: 0.1, 2: 0.105, 3: 0.13, 4: 0.118, 5: 0.118, 6: 0.108, 7: 0.104, 8: 0.09}
OCCLUSAL_WIDTH = {1: 0.55, 2: 0.5, 3: 0.25, 4: 0.7, 5: 0.75, 6: 0.85, 7: 0.85, 8: 0.8}
MISSING_P = {1: 0.015, 2: 0.02, 3: 0.008, 4: 0.04, 5: 0.045, 6: 0.07, 7: 0.05}
QUADRANT_IMAGE_SIGN = {1: -1, 4: -1, 2: 1, 3: 1}  # -1: image left of the midline


@dataclass(slots=True)
class Frame:
    """A tooth's local frame: u across the tooth, v from the occlusal surface towards the apex."""

    ox: float
    oy: float
    px: float
    py: float
    ax: float
    ay: float
    w: float
    ch: float
    rl: float
    roots: int
    pos: int

    def pt(self, u: float, v: float) -> Point:
        return (self.ox + u * self.px + v * self.ax, self.oy + u * self.py + v * self.ay)

    def poly(self, pts: list[tuple[float, float]]) -> Polygon:
        ox, oy, px, py, ax, ay = self.ox, self.oy, self.px, self.py, self.ax, self.ay
        return [(ox + u * px + v * ax, oy + u * py + v * ay) for u, v in pts]


def bounds(polys: list[Polygon], pad: float = 0.0) -> BoxXYXY:
    xs = [p[0] for poly in polys for p in poly]
    ys = [p[1] for poly in polys for p in poly]
    return (min(xs) - pad, min(ys) - pad, max(xs) + pad, max(ys) + pad)


def clip(box: BoxXYXY, width: int, height: int) -> BoxXYXY:
    x1, y1, x2, y2 = box
    return (
        round(min(max(x1, 0.0), width), 1),
        round(min(max(y1, 0.0), height), 1),
        round(min(max(x2, 0.0), width), 1),
        round(min(max(y2, 0.0), height), 1),
    )


def ellipse(
    cx: float, cy: float, rx: float, ry: float, rng: np.random.Generator, n: int = 14, jitter: float = 0.08
) -> Polygon:
    j = rng.uniform(1 - jitter, 1 + jitter, n)
    return [
        (cx + rx * j[i] * math.cos(2 * math.pi * i / n), cy + ry * j[i] * math.sin(2 * math.pi * i / n))
        for i in range(n)
    ]


def _crown_sides(f: Frame) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """Left side (occlusal to neck) and occlusal surface (right to left) in local coordinates."""
    hw, ch, o = f.w / 2, f.ch, OCCLUSAL_WIDTH[f.pos]
    left = [(-o * hw, 0.02 * ch), (-0.93 * hw, 0.18 * ch), (-hw, 0.42 * ch), (-0.94 * hw, 0.72 * ch), (-0.8 * hw, ch)]
    if f.pos >= 6:
        top = [
            (0.85 * hw, 0.0),
            (0.5 * hw, -0.035 * ch),
            (0.18 * hw, 0.05 * ch),
            (-0.18 * hw, 0.05 * ch),
            (-0.5 * hw, -0.035 * ch),
        ]
    elif f.pos >= 4:
        top = [(0.7 * hw, 0.0), (0.35 * hw, -0.04 * ch), (0.0, 0.06 * ch), (-0.35 * hw, -0.04 * ch)]
    elif f.pos == 3:
        top = [(0.25 * hw, 0.0), (0.0, -0.09 * ch)]
    else:
        top = [(o * hw, 0.02 * ch), (0.0, 0.0)]
    return left, top


def _root_side(f: Frame, bend: float) -> list[tuple[float, float]]:
    """Root outline from the left neck, around the apex (or apices) to the right neck."""
    hw, ch, rl = f.w / 2, f.ch, f.rl
    if f.roots == 2:
        return [
            (-0.8 * hw, ch + 0.25 * rl), (-0.72 * hw + bend * 0.5, ch + 0.7 * rl), (-0.56 * hw + bend, ch + rl),
            (-0.38 * hw + bend, ch + 0.97 * rl), (-0.26 * hw + bend * 0.5, ch + 0.6 * rl), (0.0, ch + 0.3 * rl),
            (0.26 * hw + bend * 0.5, ch + 0.6 * rl), (0.38 * hw + bend, ch + 0.97 * rl), (0.56 * hw + bend, ch + rl),
            (0.72 * hw + bend * 0.5, ch + 0.7 * rl), (0.8 * hw, ch + 0.25 * rl),
        ]
    return [
        (-0.74 * hw, ch + 0.2 * rl),
        (-0.56 * hw + bend * 0.3, ch + 0.6 * rl),
        (-0.3 * hw + bend * 0.8, ch + 0.9 * rl),
        (bend, ch + rl),
        (0.3 * hw + bend * 0.8, ch + 0.9 * rl),
        (0.56 * hw + bend * 0.3, ch + 0.6 * rl),
        (0.74 * hw, ch + 0.2 * rl),
    ]


def _apices_local(f: Frame, bend: float) -> list[tuple[float, float]]:
    hw, ch, rl = f.w / 2, f.ch, f.rl
    if f.roots == 2:
        return [(-0.47 * hw + bend, ch + rl), (0.47 * hw + bend, ch + rl)]
    return [(bend, ch + rl)]


def build_tooth(f: Frame, fdi: int, state: str, rng: np.random.Generator, width: int, height: int) -> SynthTooth:
    bend = rng.normal(0.0, 0.06) * f.w
    left, top = _crown_sides(f)
    right = [(-u, v) for u, v in reversed(left)]
    root = _root_side(f, bend)
    hw, ch, rl = f.w / 2, f.ch, f.rl
    apices_l = _apices_local(f, bend)
    canal_lines_l = [
        [(a[0] * 0.15, 0.75 * ch), (a[0] * 0.6, ch + 0.4 * rl), (a[0], a[1] - 0.04 * rl)] for a in apices_l
    ]
    if state == "retained_root":
        # Broken-down tooth: only the root below a jagged fracture line near the neck.
        jag = [(0.8 * hw, ch * 0.95), (0.35 * hw, ch * rng.uniform(0.7, 0.95)), (0.0, ch * rng.uniform(0.8, 1.05)),
               (-0.4 * hw, ch * rng.uniform(0.65, 0.95)), (-0.8 * hw, ch * 0.95)]
        outline_l = jag + [(-0.8 * hw, ch)] + root + [(0.8 * hw, ch)]
        crown_l: list[tuple[float, float]] = []
        pulp_l = [
            (-0.18 * hw, ch * 0.95),
            (0.18 * hw, ch * 0.95),
            (0.1 * hw, ch + 0.2 * rl),
            (-0.1 * hw, ch + 0.2 * rl),
        ]
    else:
        outline_l = left + root + right + top
        crown_l = left + [(-0.8 * hw, ch), (0.8 * hw, ch)] + right + top
        pulp_l = [
            (-0.26 * hw, 0.55 * ch),
            (-0.1 * hw, 0.48 * ch),
            (0.1 * hw, 0.48 * ch),
            (0.26 * hw, 0.55 * ch),
            (0.28 * hw, ch + 0.03 * rl),
            (0.1 * hw, ch + 0.15 * rl),
            (-0.1 * hw, ch + 0.15 * rl),
            (-0.28 * hw, ch + 0.03 * rl),
        ]
        if f.pos <= 3:
            pulp_l = [
                (-0.14 * hw, 0.5 * ch),
                (0.14 * hw, 0.5 * ch),
                (0.1 * hw, ch + 0.2 * rl),
                (-0.1 * hw, ch + 0.2 * rl),
            ]
    outline = f.poly(outline_l)
    return SynthTooth(
        fdi=fdi,
        state=state,
        outline=outline,
        crown=f.poly(crown_l),
        pulp=f.poly(pulp_l),
        root_lines=[f.poly(line) for line in canal_lines_l],
        apices=f.poly(apices_l),
        box=clip(bounds([outline]), width, height),
        axis=(f.ox, f.oy, f.ax, f.ay, f.ch, f.rl),
    )


class _Arch:
    """Case-level arch curve: the occlusal plane smiles (lower at the midline, higher at molars)."""

    def __init__(self, rng: np.random.Generator, width: int, height: int) -> None:
        self.W, self.H = width, height
        self.cx = 0.5 + float(np.clip(rng.normal(0.0, 0.004), -0.006, 0.006))
        self.occ0 = 0.575 + rng.uniform(-0.02, 0.02)
        self.curve = 0.06 + rng.uniform(-0.02, 0.02)
        self.half = 0.235 * rng.uniform(0.95, 1.04)
        self.gap = 0.008 + rng.uniform(0.0, 0.008)
        self.height_scale = rng.uniform(0.94, 1.06)

    def y_occ(self, xn: float) -> float:
        t = (xn - self.cx) / self.half
        return self.occ0 - self.curve * t * t

    def slope_px(self, xn: float) -> float:
        t = (xn - self.cx) / self.half
        return (-2.0 * self.curve * t / self.half) * self.H / self.W

    def frame(self, fdi: int, slot_x: float, slot_w: float, rng: np.random.Generator, tilt: float = 0.0,
              drop: float = 0.0, shift: float = 0.0) -> Frame:
        """Frame of tooth `fdi` whose slot centre is `slot_x` (share of width)."""
        q, pos = fdi // 10, fdi % 10
        upper = q in (1, 2)
        d = -1.0 if upper else 1.0  # apex direction in y
        size = rng.uniform(0.95, 1.05)
        crown = (UPPER_CROWN if upper else LOWER_CROWN)[pos] * self.height_scale * size * self.H
        root = (UPPER_ROOT if upper else LOWER_ROOT)[pos] * self.height_scale * rng.uniform(0.92, 1.08) * self.H
        s = self.slope_px(slot_x)
        n = math.hypot(s, 1.0)
        ax, ay = d * (-s) / n, d * 1.0 / n
        ang = math.radians(rng.normal(0.0, 2.0) + tilt)
        ax, ay = ax * math.cos(ang) - ay * math.sin(ang), ax * math.sin(ang) + ay * math.cos(ang)
        px, py = (-ay, ax) if -ay > 0 else (ay, -ax)
        ox = (slot_x + shift) * self.W
        oy = (self.y_occ(slot_x) + d * self.gap / 2) * self.H + d * drop * crown
        w = slot_w * self.W * 0.97 * rng.uniform(0.96, 1.03)
        return Frame(ox, oy, px, py, ax, ay, w, crown, root, 2 if pos >= 6 else 1, pos)

    def slots(self, quadrant: int) -> dict[int, tuple[float, float]]:
        """FDI -> (slot centre x, slot width), both as a share of the image width."""
        upper = quadrant in (1, 2)
        widths = UPPER_WIDTH if upper else LOWER_WIDTH
        unit = self.half / sum(widths.values()) * (1.0 if upper else 0.985)
        sign = QUADRANT_IMAGE_SIGN[quadrant]
        out, cum = {}, 0.0
        for pos in range(1, 9):
            w = widths[pos] * unit
            out[quadrant * 10 + pos] = (self.cx + sign * (cum + w / 2), w)
            cum += w
        return out


def _score(rng: np.random.Generator, tooth: bool = False) -> float:
    if tooth:
        return round(float(0.85 + 0.14 * rng.beta(4.0, 1.3)), 3)
    return round(float(0.3 + 0.69 * rng.beta(1.6, 1.2)), 3)


def _jaw(arch: _Arch, rng: np.random.Generator) -> JawShape:
    W, H, cx, half = arch.W, arch.H, arch.cx, arch.half
    lb0 = min(0.95, 0.925 + rng.uniform(-0.015, 0.015))
    spread = rng.uniform(0.97, 1.02)

    def P(xn: float, yn: float) -> Point:
        return (xn * W, yn * H)

    def crest(xn: float, upper: bool) -> float:
        nominal = 0.072 * arch.height_scale + 0.012
        return arch.y_occ(xn) + (-1 if upper else 1) * (arch.gap / 2 + nominal)

    end = half + 0.025
    xs = [cx - end + 2 * end * i / 24 for i in range(25)]
    lower_crest = [P(x, crest(x, False)) for x in xs]
    upper_crest = [P(x, crest(x, True)) for x in xs]

    def side(sg: int) -> list[Point]:
        """Ramus from the gonial angle up to the condyle, notch, coronoid and down the front."""
        r = 0.37 * spread
        return [
            P(cx + sg * (r - 0.01), lb0 - 0.135), P(cx + sg * (r + 0.004), lb0 - 0.175), P(cx + sg * (r + 0.01), 0.62),
            P(cx + sg * (r + 0.012), 0.46), P(cx + sg * (r + 0.006), 0.36), P(cx + sg * (r + 0.016), 0.31),
            P(cx + sg * (r + 0.004), 0.275), P(cx + sg * (r - 0.016), 0.29), P(cx + sg * (r - 0.02), 0.34),
            P(cx + sg * (r - 0.045), 0.42), P(cx + sg * (r - 0.065), 0.37), P(cx + sg * (r - 0.078), 0.345),
            P(cx + sg * (r - 0.085), 0.39), P(cx + sg * (r - 0.09), 0.47), P(cx + sg * (r - 0.1), 0.56),
            P(cx + sg * (end + 0.005), crest(cx + sg * end, False) - 0.01),
        ]

    left = side(-1)
    right = side(1)
    r = 0.37 * spread
    border = [P(cx + (r - 0.03) * (2 * i / 20 - 1), lb0 - 0.12 * (2 * i / 20 - 1) ** 2) for i in range(1, 20)]
    # Left retromolar up the ramus, condyle, down to the angle; lower border; right side; crest back.
    mandible = list(reversed(left)) + border + right + list(reversed(lower_crest))
    top = 0.3 + rng.uniform(-0.01, 0.01)
    maxilla = upper_crest + [
        P(cx + end + 0.03, crest(cx + end, True) - 0.05),
        P(cx + 0.27, top + 0.04),
        P(cx + 0.12, top),
        P(cx, top + 0.01),
        P(cx - 0.12, top),
        P(cx - 0.27, top + 0.04),
        P(cx - end - 0.03, crest(cx - end, True) - 0.05),
    ]
    py = top + 0.045 + rng.uniform(-0.005, 0.01)
    palate = [P(cx - 0.29, py + 0.02), P(cx - 0.18, py), P(cx, py - 0.005), P(cx + 0.18, py), P(cx + 0.29, py + 0.02)]
    nasal = [P(cx - 0.07, top + 0.02), P(cx - 0.05, 0.1), P(cx, 0.06), P(cx + 0.05, 0.1), P(cx + 0.07, top + 0.02)]
    ay = py + 0.04
    airway = ([P(cx - 0.3 + 0.6 * i / 12, ay - 0.02 + 0.02 * ((i - 6) / 6) ** 2) for i in range(13)]
              + [P(cx + 0.3 - 0.6 * i / 12, ay + 0.005 + 0.025 * ((i - 6) / 6) ** 2) for i in range(13)])
    return JawShape(
        mandible=mandible, maxilla=maxilla, lower_crest=lower_crest, upper_crest=upper_crest, palate=palate,
        nasal=nasal, airway=airway, brightness=float(rng.uniform(-12, 12)), contrast=float(rng.uniform(0.9, 1.12)),
        noise=float(rng.uniform(3.0, 6.0)),
    )


def _finding(cat: Category, parts: list[Polygon], width: int, height: int, rng: np.random.Generator, *,
             lines: list[Polygon] | None = None, line_width: float = 0.0, **kw) -> SynthFinding:
    pad = line_width / 2
    box = clip(bounds(parts + (lines or []), pad), width, height)
    return SynthFinding(category=cat, box=box, parts=parts, lines=lines or [], line_width=line_width,
                        score=_score(rng), **kw)


def make_case(
    rng: np.random.Generator, index: int, width: int = 1400, height: int = 700, name: str | None = None
) -> SynthCase:
    """One synthetic OPG case: which teeth, where, with which findings. No pixels."""
    arch = _Arch(rng, width, height)
    jaw = _jaw(arch, rng)
    W, H = width, height
    teeth: list[SynthTooth] = []
    findings: list[SynthFinding] = []
    frames: dict[int, Frame] = {}

    def F(cat: Category, parts: list[Polygon], **kw) -> SynthFinding:
        f = _finding(cat, parts, W, H, rng, **kw)
        findings.append(f)
        return f

    # 1. Dentition status per FDI. Per-patient factors: some mouths lose many teeth, some have much work.
    loss = 3.0 if rng.random() < 0.12 else float(rng.uniform(0.5, 1.5))
    risk = float(np.clip(rng.lognormal(0.0, 0.5), 0.3, 2.5))
    status: dict[int, str] = {}
    for q in (1, 2, 3, 4):
        for pos in range(1, 9):
            fdi = q * 10 + pos
            if pos == 8:
                status[fdi] = str(rng.choice(["absent", "erupted", "impacted"], p=[0.35, 0.43, 0.22]))
            elif rng.random() < MISSING_P[pos] * loss:
                status[fdi] = "missing"
            else:
                status[fdi] = "normal"
    # Replacements of missing teeth: implant, bridge (needs both neighbours), or a gap.
    replacement: dict[int, str] = {}
    for fdi, st in status.items():
        if st != "missing":
            continue
        pos = fdi % 10
        nb = [fdi - 1 if pos > 1 else None, fdi + 1]
        u = rng.random()
        if u < 0.25:
            replacement[fdi] = "implant"
        elif u < 0.55 and pos > 1 and all(status.get(n) == "normal" and n % 10 != 8 for n in nb if n is not None):
            replacement[fdi] = "bridge"
            for n in nb:
                if n is not None:
                    status[n] = "abutment"
        else:
            replacement[fdi] = "gap"
    for fdi, st in status.items():
        if st == "normal" and fdi % 10 != 8 and rng.random() < 0.015:
            status[fdi] = "retained_root"

    # 2. Frames (geometry) for every slot; neighbours lean slightly into a gap.
    for q in (1, 2, 3, 4):
        for fdi, (sx, sw) in arch.slots(q).items():
            pos = fdi % 10
            st = status[fdi]
            tilt, drop, shift = 0.0, 0.0, 0.0
            sign = QUADRANT_IMAGE_SIGN[q]
            upper = q in (1, 2)
            if st == "impacted":
                # Mesially tilted, sunk into the bone, pushed distally.
                ang = rng.uniform(20.0, 65.0) if not upper else rng.uniform(10.0, 35.0)
                # Crown faces the midline (mesio-angular), the commonest impaction.
                tilt = ang * (sign if upper else -sign)
                drop = rng.uniform(0.5, 1.1) if not upper else rng.uniform(0.4, 0.9)
                shift = sign * sw * rng.uniform(0.05, 0.2)
            elif st == "erupted" and pos == 8:
                tilt = rng.normal(0.0, 4.0)
                drop = rng.uniform(0.0, 0.2)
            for n, lean in ((fdi - 1, -1), (fdi + 1, 1)):
                if status.get(n) == "missing" and replacement.get(n) == "gap" and st in ("normal", "abutment"):
                    # Drift into the gap: positive tilt towards the neighbour's side on screen.
                    direction = sign * lean
                    tilt += direction * rng.uniform(2.0, 7.0) * (-1 if upper else 1)
            frames[fdi] = arch.frame(fdi, sx, sw, rng, tilt=tilt, drop=drop, shift=shift)

    # 3. Teeth and tooth-level findings.
    by_fdi: dict[int, SynthTooth] = {}
    for fdi in sorted(frames, key=lambda k: (k // 10 in (3, 4), frames[k].ox)):
        st, f = status[fdi], frames[fdi]
        if st in ("absent", "missing"):
            continue
        state = {"erupted": "normal"}.get(st, st)
        tooth = build_tooth(f, fdi, state, rng, W, H)
        tooth.score = _score(rng, tooth=True)
        teeth.append(tooth)
        by_fdi[fdi] = tooth
        if state == "impacted":
            F(Category.IMPACTED_TOOTH, [tooth.outline], fdi=fdi)
        if state == "retained_root":
            F(Category.RETAINED_ROOT, [tooth.outline], fdi=fdi)

    for fdi in sorted(by_fdi):
        tooth, f, st = by_fdi[fdi], frames[fdi], status[fdi]
        hw, ch, rl = f.w / 2, f.ch, f.rl
        lesion_p = 0.012
        if st == "retained_root":
            lesion_p = 0.4
        elif st in ("normal", "erupted"):
            restored = False
            if rng.random() < (0.035 if f.pos >= 4 else 0.012) * risk:
                # Prosthetic crown: a bright cap slightly larger than the natural crown.
                cap = f.poly([(u * 1.06, v * 1.04 - 0.03 * ch) for u, v in _crown_sides(f)[0]]
                             + [(-0.84 * hw, 1.04 * ch), (0.84 * hw, 1.04 * ch)]
                             + [(-u * 1.06, v * 1.04 - 0.03 * ch) for u, v in reversed(_crown_sides(f)[0])])
                F(Category.CROWN, [cap], fdi=fdi)
                restored = True
            elif rng.random() < (0.09 if f.pos >= 4 else 0.025) * risk:
                cu = rng.uniform(-0.2, 0.2) * hw
                fw = rng.uniform(0.3, 0.6) * hw
                depth = rng.uniform(0.25, 0.55) * ch
                blob = f.poly(
                    [
                        (cu - fw, 0.02 * ch),
                        (cu - fw * 0.9, depth * 0.7),
                        (cu - fw * 0.5, depth),
                        (cu + fw * 0.4, depth * rng.uniform(0.85, 1.05)),
                        (cu + fw * 0.95, depth * 0.6),
                        (cu + fw, 0.02 * ch),
                        (cu, rng.uniform(0.0, 0.06) * ch),
                    ]
                )
                F(Category.FILLING, [blob], fdi=fdi)
                restored = True
            u = rng.random() / risk
            if u < 0.03:
                side = rng.choice([-1.0, 1.0])
                ccx, ccy = side * rng.uniform(0.45, 0.65) * hw, rng.uniform(0.25, 0.55) * ch
                rx, ry = rng.uniform(0.13, 0.2) * f.w, rng.uniform(0.12, 0.2) * ch
                F(
                    Category.CARIES,
                    [
                        f.poly(
                            [
                                (ccx + rx * math.cos(t), ccy + ry * math.sin(t))
                                for t in np.linspace(0, 2 * math.pi, 12, endpoint=False)
                            ]
                        )
                    ],
                    fdi=fdi,
                )
            elif u < 0.045:
                side = rng.choice([-1.0, 1.0])
                ccx, ccy = side * rng.uniform(0.3, 0.45) * hw, rng.uniform(0.4, 0.55) * ch
                rx, ry = rng.uniform(0.22, 0.3) * f.w, rng.uniform(0.3, 0.4) * ch
                F(
                    Category.DEEP_CARIES,
                    [
                        f.poly(
                            [
                                (ccx + rx * math.cos(t), ccy + ry * math.sin(t))
                                for t in np.linspace(0, 2 * math.pi, 14, endpoint=False)
                            ]
                        )
                    ],
                    fdi=fdi,
                )
                lesion_p = 0.3
            if rng.random() < 0.03 * risk:
                F(Category.ROOT_CANAL_TREATMENT, [], fdi=fdi, lines=tooth.root_lines, line_width=max(2.0, 0.004 * H))
                lesion_p = max(lesion_p, 0.2)
                if not restored:
                    fw = 0.35 * hw
                    F(
                        Category.FILLING,
                        [f.poly([(-fw, 0.02 * ch), (-fw, 0.5 * ch), (fw, 0.5 * ch), (fw, 0.02 * ch)])],
                        fdi=fdi,
                    )
        if st in ("normal", "erupted", "retained_root") and rng.random() < lesion_p:
            kind = str(rng.choice(["granuloma", "cyst", "abscess"], p=[0.5, 0.25, 0.25]))
            apex = tooth.apices[int(rng.integers(len(tooth.apices)))] if len(tooth.apices) > 1 else tooth.apices[0]
            r = {
                "granuloma": rng.uniform(0.018, 0.028),
                "cyst": rng.uniform(0.035, 0.052),
                "abscess": rng.uniform(0.022, 0.034),
            }[kind] * H
            lcx, lcy = apex[0] + f.ax * 0.35 * r, apex[1] + f.ay * 0.35 * r
            poly = ellipse(
                lcx, lcy, r, r * rng.uniform(0.85, 1.0), rng, n=16, jitter=0.25 if kind == "abscess" else 0.06
            )
            F(Category.PERIAPICAL_LESION, [poly], fdi=fdi, lesion_type=kind)

    # 4. Missing teeth: gap regions, implants, bridges.
    for fdi in sorted(replacement):
        f, kind = frames[fdi], replacement[fdi]
        hw, ch, rl = f.w / 2, f.ch, f.rl
        if kind == "gap":
            region = f.poly([(-hw, 0.0), (hw, 0.0), (hw, ch + 0.35 * rl), (-hw, ch + 0.35 * rl)])
            f_ = _finding(Category.MISSING_TOOTH, [region], W, H, rng, fdi=fdi)
            f_.parts = []  # nothing to draw: the gap is the absence of a tooth
            findings.append(f_)
        elif kind == "implant":
            sw, top_v, bot_v = 0.55 * hw, ch + 0.05 * rl, ch + 0.9 * rl
            pts: list[tuple[float, float]] = []
            n_threads = 9
            for i in range(n_threads + 1):
                v = top_v + (bot_v - top_v) * i / n_threads
                taper = 1.0 - 0.35 * (i / n_threads) ** 2
                pts.append((-sw * taper * (1.12 if i % 2 else 0.94), v))
            right = [(-u, v) for u, v in reversed(pts)]
            screw = pts + [(-0.5 * sw, bot_v + 0.03 * rl), (0.5 * sw, bot_v + 0.03 * rl)] + right
            abut = [(-0.55 * sw, 0.55 * ch), (0.55 * sw, 0.55 * ch), (0.75 * sw, top_v), (-0.75 * sw, top_v)]
            F(Category.IMPLANT, [f.poly(screw), f.poly(abut)], fdi=fdi)
            if rng.random() < 0.85:
                left = _crown_sides(f)[0]
                cap = f.poly(left + [(-0.8 * hw, ch), (0.8 * hw, ch)] + [(-u, v) for u, v in reversed(left)])
                F(Category.CROWN, [cap], fdi=fdi)
        elif kind == "bridge":
            span = tuple(n for n in (fdi - 1, fdi, fdi + 1) if n in frames and (n == fdi or n in by_fdi))
            parts: list[Polygon] = []
            for n in span:
                g = frames[n]
                left = _crown_sides(g)[0]
                parts.append(
                    g.poly(
                        [(u * 1.06, v * 1.04 - 0.03 * g.ch) for u, v in left]
                        + [(-0.84 * g.w / 2, 1.02 * g.ch), (0.84 * g.w / 2, 1.02 * g.ch)]
                        + [(-u * 1.06, v * 1.04 - 0.03 * g.ch) for u, v in reversed(left)]
                    )
                )
            # Connectors between neighbouring caps.
            for a, b in itertools.pairwise(span):
                ga, gb = frames[a], frames[b]
                pa1, pa2 = ga.pt(0, 0.3 * ga.ch), ga.pt(0, 0.7 * ga.ch)
                pb1, pb2 = gb.pt(0, 0.3 * gb.ch), gb.pt(0, 0.7 * gb.ch)
                parts.append([pa1, pb1, pb2, pa2])
            F(Category.BRIDGE, parts, fdi=fdi, span=span)

    # 5. Bone loss over a run of teeth in one arch.
    for upper in (True, False):
        if rng.random() >= 0.22:
            continue
        row = sorted(
            (t for t in teeth if (t.fdi // 10 in (1, 2)) == upper and t.state != "impacted"), key=lambda t: t.box[0]
        )
        if len(row) < 4:
            continue
        k = int(rng.integers(3, min(7, len(row)) + 1))
        start = int(rng.integers(0, len(row) - k + 1))
        run = row[start : start + k]
        d = -1.0 if upper else 1.0
        x1, x2 = run[0].box[0], run[-1].box[2]
        pts_top, pts_bot = [], []
        for i in range(9):
            x = x1 + (x2 - x1) * i / 8
            xn = x / W
            crest = (arch.y_occ(xn) + d * (arch.gap / 2 + 0.072 * arch.height_scale + 0.004)) * H
            depth = rng.uniform(0.035, 0.07) * H * (0.55 if i in (0, 8) else 1.0)
            pts_top.append((x, crest))
            pts_bot.append((x, crest + d * depth))
        poly = pts_top + list(reversed(pts_bot))
        F(Category.BONE_LOSS, [poly], region="upper" if upper else "lower", fdi=None)

    # 6. Anatomy: mandibular canals and maxillary sinuses, both sides.
    cx = arch.cx
    for sg, side in ((-1, "right"), (1, "left")):
        r = 0.37
        base_y = rng.uniform(-0.01, 0.01)
        canal = [((cx + sg * xo) * W, (yo + base_y) * H) for xo, yo in (
            (r - 0.06, 0.52), (r - 0.075, 0.62), (r - 0.11, 0.71), (r - 0.16, 0.775), (r - 0.21, 0.8), (r - 0.25, 0.8))]
        F(Category.MANDIBULAR_CANAL, [], side=side, lines=[canal], line_width=0.018 * H * rng.uniform(0.9, 1.15))
        scx, scy = (cx + sg * rng.uniform(0.165, 0.18)) * W, rng.uniform(0.245, 0.265) * H
        sinus = ellipse(scx, scy, rng.uniform(0.07, 0.085) * W, rng.uniform(0.085, 0.1) * H, rng, n=18, jitter=0.06)
        F(Category.MAXILLARY_SINUS, [sinus], side=side)

    for f in findings:
        if f.category in (Category.MANDIBULAR_CANAL, Category.MAXILLARY_SINUS):
            f.score = round(float(0.5 + 0.49 * rng.beta(3.0, 1.0)), 3)
    findings = [f for f in findings if f.box[2] - f.box[0] >= 1.0 and f.box[3] - f.box[1] >= 1.0]
    teeth = [t for t in teeth if t.box[2] - t.box[0] >= 1.0 and t.box[3] - t.box[1] >= 1.0]
    return SynthCase(
        index=index,
        name=name or f"synth_{index:06d}",
        width=W,
        height=H,
        teeth=teeth,
        findings=findings,
        jaw=jaw,
        render_seed=int(rng.integers(0, 2**31 - 1)),
    )
