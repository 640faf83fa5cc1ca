"""FDI (ISO 3950) tooth numbering, the one home for quadrant, arch, side and wisdom-tooth rules.

In a panoramic X-ray the patient's right side is on the image's left: quadrants 1 and 4
(and primary 5 and 8) lie in the image's left half.
"""

from __future__ import annotations

from typing import Literal

PERMANENT_TEETH: tuple[int, ...] = tuple(q * 10 + p for q in (1, 2, 3, 4) for p in range(1, 9))
PRIMARY_TEETH: tuple[int, ...] = tuple(q * 10 + p for q in (5, 6, 7, 8) for p in range(1, 6))
ALL_TEETH: frozenset[int] = frozenset(PERMANENT_TEETH + PRIMARY_TEETH)
WISDOM_TEETH: tuple[int, ...] = (18, 28, 38, 48)

Arch = Literal["upper", "lower"]
PatientSide = Literal["right", "left"]
ImageHalf = Literal["left", "right"]

_POSITION_NAMES_PERMANENT = {
    1: "central incisor",
    2: "lateral incisor",
    3: "canine",
    4: "first premolar",
    5: "second premolar",
    6: "first molar",
    7: "second molar",
    8: "third molar",
}
_POSITION_NAMES_PRIMARY = {
    1: "primary central incisor",
    2: "primary lateral incisor",
    3: "primary canine",
    4: "primary first molar",
    5: "primary second molar",
}


def is_valid_fdi(fdi: int | None) -> bool:
    return fdi is not None and int(fdi) in ALL_TEETH


def is_primary(fdi: int) -> bool:
    return fdi in PRIMARY_TEETH


def _check(fdi: int) -> int:
    fdi = int(fdi)
    if fdi not in ALL_TEETH:
        raise ValueError(f"not an FDI tooth number: {fdi}")
    return fdi


def quadrant(fdi: int) -> int:
    """Quadrant 1-4 (primary quadrants 5-8 fold onto 1-4)."""
    q = _check(fdi) // 10
    return q - 4 if q > 4 else q


def position(fdi: int) -> int:
    return _check(fdi) % 10


def arch(fdi: int) -> Arch:
    return "upper" if quadrant(fdi) in (1, 2) else "lower"


def patient_side(fdi: int) -> PatientSide:
    return "right" if quadrant(fdi) in (1, 4) else "left"


def image_half(fdi: int) -> ImageHalf:
    """Which half of a panoramic image the tooth should lie in (patient's right = image left)."""
    return "left" if patient_side(fdi) == "right" else "right"


def side_label(fdi: int) -> str:
    """E.g. 'upper right' (patient's side)."""
    return f"{arch(fdi)} {patient_side(fdi)}"


def is_wisdom(fdi: int) -> bool:
    return _check(fdi) in WISDOM_TEETH


def is_incisor(fdi: int) -> bool:
    return position(fdi) in (1, 2)


def tooth_name(fdi: int) -> str:
    """Plain-language name, e.g. 'upper right first molar'."""
    names = _POSITION_NAMES_PRIMARY if is_primary(fdi) else _POSITION_NAMES_PERMANENT
    return f"{side_label(fdi)} {names[position(fdi)]}"


def opposing(fdi: int) -> int:
    """The tooth in the opposing arch on the same side and position (18 <-> 48, 28 <-> 38)."""
    q, p = quadrant(fdi), position(fdi)
    oq = {1: 4, 4: 1, 2: 3, 3: 2}[q]
    if is_primary(fdi):
        oq += 4
    return oq * 10 + p


def mirrored(fdi: int) -> int:
    """The same tooth on the patient's other side (11 <-> 21, 36 <-> 46): what a left-right flip of the image shows."""
    q, p = _check(fdi) // 10, position(fdi)
    mq = {1: 2, 2: 1, 3: 4, 4: 3, 5: 6, 6: 5, 7: 8, 8: 7}[q]
    return mq * 10 + p


# Universal (ADA) numbering: 1-32 permanent, A-T primary.
_UNIVERSAL_PERMANENT: dict[int, int] = {}
for _u in range(1, 9):
    _UNIVERSAL_PERMANENT[_u] = 19 - _u  # 1..8 -> 18..11
for _u in range(9, 17):
    _UNIVERSAL_PERMANENT[_u] = 12 + _u  # 9..16 -> 21..28
for _u in range(17, 25):
    _UNIVERSAL_PERMANENT[_u] = 55 - _u  # 17..24 -> 38..31
for _u in range(25, 33):
    _UNIVERSAL_PERMANENT[_u] = 16 + _u  # 25..32 -> 41..48
_UNIVERSAL_PRIMARY: dict[str, int] = {}
for _i, _letter in enumerate("ABCDE"):
    _UNIVERSAL_PRIMARY[_letter] = 55 - _i  # A..E -> 55..51
for _i, _letter in enumerate("FGHIJ"):
    _UNIVERSAL_PRIMARY[_letter] = 61 + _i  # F..J -> 61..65
for _i, _letter in enumerate("KLMNO"):
    _UNIVERSAL_PRIMARY[_letter] = 75 - _i  # K..O -> 75..71
for _i, _letter in enumerate("PQRST"):
    _UNIVERSAL_PRIMARY[_letter] = 81 + _i  # P..T -> 81..85
_FDI_TO_UNIVERSAL: dict[int, str] = {v: str(k) for k, v in _UNIVERSAL_PERMANENT.items()}
_FDI_TO_UNIVERSAL.update({v: k for k, v in _UNIVERSAL_PRIMARY.items()})


def universal_to_fdi(universal: str | int) -> int:
    """Universal number ('1'-'32' or 'A'-'T') to FDI. Raises ValueError when not a tooth."""
    key = str(universal).strip().upper()
    if key.isdigit() and int(key) in _UNIVERSAL_PERMANENT:
        return _UNIVERSAL_PERMANENT[int(key)]
    if key in _UNIVERSAL_PRIMARY:
        return _UNIVERSAL_PRIMARY[key]
    raise ValueError(f"not a Universal tooth number: {universal!r}")


def fdi_to_universal(fdi: int) -> str:
    return _FDI_TO_UNIVERSAL[_check(fdi)]
