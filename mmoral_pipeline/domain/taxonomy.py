"""The unified finding taxonomy and the synonym maps that bring each source format onto it.

One home: every reader calls `unify_category`; no reader keeps its own name table.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Literal


class Category(StrEnum):
    TOOTH = "tooth"
    # pathology
    CARIES = "caries"
    DEEP_CARIES = "deep_caries"
    PERIAPICAL_LESION = "periapical_lesion"
    IMPACTED_TOOTH = "impacted_tooth"
    MISSING_TOOTH = "missing_tooth"
    RETAINED_ROOT = "retained_root"
    BONE_LOSS = "bone_loss"
    # treatments
    FILLING = "filling"
    CROWN = "crown"
    ROOT_CANAL_TREATMENT = "root_canal_treatment"
    IMPLANT = "implant"
    BRIDGE = "bridge"
    # anatomy
    MANDIBULAR_CANAL = "mandibular_canal"
    MAXILLARY_SINUS = "maxillary_sinus"


Group = Literal["tooth", "pathology", "treatment", "anatomy"]

PATHOLOGY: frozenset[Category] = frozenset(
    {
        Category.CARIES,
        Category.DEEP_CARIES,
        Category.PERIAPICAL_LESION,
        Category.IMPACTED_TOOTH,
        Category.MISSING_TOOTH,
        Category.RETAINED_ROOT,
        Category.BONE_LOSS,
    }
)
TREATMENTS: frozenset[Category] = frozenset(
    {Category.FILLING, Category.CROWN, Category.ROOT_CANAL_TREATMENT, Category.IMPLANT, Category.BRIDGE}
)
ANATOMY: frozenset[Category] = frozenset({Category.MANDIBULAR_CANAL, Category.MAXILLARY_SINUS})
# Findings that belong to a tooth (as opposed to the jaw or the image).
TOOTH_LEVEL: frozenset[Category] = frozenset(
    {
        Category.CARIES,
        Category.DEEP_CARIES,
        Category.PERIAPICAL_LESION,
        Category.IMPACTED_TOOTH,
        Category.RETAINED_ROOT,
        Category.FILLING,
        Category.CROWN,
        Category.ROOT_CANAL_TREATMENT,
        Category.IMPLANT,
        Category.BRIDGE,
    }
)
JAW_LEVEL: frozenset[Category] = frozenset({Category.BONE_LOSS, Category.MANDIBULAR_CANAL, Category.MAXILLARY_SINUS})

LESION_TYPES: tuple[str, ...] = ("granuloma", "cyst", "abscess")

DISPLAY_NAMES: dict[Category, str] = {
    Category.TOOTH: "tooth",
    Category.CARIES: "caries",
    Category.DEEP_CARIES: "deep caries",
    Category.PERIAPICAL_LESION: "periapical lesion",
    Category.IMPACTED_TOOTH: "impacted tooth",
    Category.MISSING_TOOTH: "missing tooth",
    Category.RETAINED_ROOT: "retained root",
    Category.BONE_LOSS: "bone loss",
    Category.FILLING: "filling",
    Category.CROWN: "crown",
    Category.ROOT_CANAL_TREATMENT: "root canal treatment",
    Category.IMPLANT: "implant",
    Category.BRIDGE: "bridge",
    Category.MANDIBULAR_CANAL: "mandibular canal",
    Category.MAXILLARY_SINUS: "maxillary sinus",
}


def group_of(category: Category) -> Group:
    if category == Category.TOOTH:
        return "tooth"
    if category in PATHOLOGY:
        return "pathology"
    if category in TREATMENTS:
        return "treatment"
    return "anatomy"


def normalise_name(name: str) -> str:
    """Lower case, separators to single spaces: 'Periapical_Lesion' -> 'periapical lesion'."""
    return re.sub(r"[\s_\-/]+", " ", str(name).strip().lower()).strip()


# Normalised source name -> (category, lesion type). Covers DENTEX, AKUDENTAL, Tufts, DC1000,
# UFBA, the MMOral attribute JSON and this project's synthetic COCO/labelme output.
SYNONYMS: dict[str, tuple[Category, str | None]] = {
    "tooth": (Category.TOOTH, None),
    "teeth": (Category.TOOTH, None),
    # pathology
    "caries": (Category.CARIES, None),
    "cavity": (Category.CARIES, None),
    "decay": (Category.CARIES, None),
    "dental caries": (Category.CARIES, None),
    "deep caries": (Category.DEEP_CARIES, None),
    "deep cavity": (Category.DEEP_CARIES, None),
    "periapical lesion": (Category.PERIAPICAL_LESION, None),
    "periapical lesions": (Category.PERIAPICAL_LESION, None),
    "periapical radiolucency": (Category.PERIAPICAL_LESION, None),
    "apical lesion": (Category.PERIAPICAL_LESION, None),
    "granuloma": (Category.PERIAPICAL_LESION, "granuloma"),
    "periapical granuloma": (Category.PERIAPICAL_LESION, "granuloma"),
    "cyst": (Category.PERIAPICAL_LESION, "cyst"),
    "periapical cyst": (Category.PERIAPICAL_LESION, "cyst"),
    "radicular cyst": (Category.PERIAPICAL_LESION, "cyst"),
    "abscess": (Category.PERIAPICAL_LESION, "abscess"),
    "periapical abscess": (Category.PERIAPICAL_LESION, "abscess"),
    "impacted": (Category.IMPACTED_TOOTH, None),
    "impacted tooth": (Category.IMPACTED_TOOTH, None),
    "impacted teeth": (Category.IMPACTED_TOOTH, None),
    "missing": (Category.MISSING_TOOTH, None),
    "missing tooth": (Category.MISSING_TOOTH, None),
    "missing teeth": (Category.MISSING_TOOTH, None),
    "missing tooth region": (Category.MISSING_TOOTH, None),
    "retained root": (Category.RETAINED_ROOT, None),
    "root piece": (Category.RETAINED_ROOT, None),
    "residual root": (Category.RETAINED_ROOT, None),
    "root remnant": (Category.RETAINED_ROOT, None),
    "bone loss": (Category.BONE_LOSS, None),
    "alveolar bone loss": (Category.BONE_LOSS, None),
    "periodontal bone loss": (Category.BONE_LOSS, None),
    # treatments
    "filling": (Category.FILLING, None),
    "fillings": (Category.FILLING, None),
    "filling filling": (Category.FILLING, None),
    "restoration": (Category.FILLING, None),
    "amalgam": (Category.FILLING, None),
    "composite": (Category.FILLING, None),
    "crown": (Category.CROWN, None),
    "crowns": (Category.CROWN, None),
    # AKUDENTAL's YOLO class 33 'Filling - Crown' marks exactly the objects its labelme files
    # call 'Filling - Filling' (IoU > 0.9 on all 22 in the real sample): a filling.
    "filling crown": (Category.FILLING, None),
    "root canal treatment": (Category.ROOT_CANAL_TREATMENT, None),
    "root canal": (Category.ROOT_CANAL_TREATMENT, None),
    "root canal filling": (Category.ROOT_CANAL_TREATMENT, None),
    "rct": (Category.ROOT_CANAL_TREATMENT, None),
    "endodontic treatment": (Category.ROOT_CANAL_TREATMENT, None),
    "implant": (Category.IMPLANT, None),
    "implants": (Category.IMPLANT, None),
    "implant implant": (Category.IMPLANT, None),
    "dental implant": (Category.IMPLANT, None),
    "bridge": (Category.BRIDGE, None),
    "bridge bridge": (Category.BRIDGE, None),
    "bridges": (Category.BRIDGE, None),
    # anatomy
    "mandibular canal": (Category.MANDIBULAR_CANAL, None),
    "inferior alveolar canal": (Category.MANDIBULAR_CANAL, None),
    "mandibular canals": (Category.MANDIBULAR_CANAL, None),
    "maxillary sinus": (Category.MAXILLARY_SINUS, None),
    "maxillary sinuses": (Category.MAXILLARY_SINUS, None),
    "sinus": (Category.MAXILLARY_SINUS, None),
}
# Unified names map to themselves, so already-unified inputs (our manifest) need no table.
for _c in Category:
    SYNONYMS.setdefault(normalise_name(_c.value), (_c, None))


def unify_category(
    name: str, extra: dict[str, str] | None = None
) -> tuple[Category, str | None] | None:
    """Map a source category name onto the taxonomy; None when unknown (the caller rejects it).

    `extra` is a source's own map (normalised source name -> unified name or synonym) from
    `sources.yaml`, consulted first.
    """
    key = normalise_name(name)
    if extra:
        extra_n = {normalise_name(k): v for k, v in extra.items()}
        if key in extra_n:
            key = normalise_name(extra_n[key])
    return SYNONYMS.get(key)


def parse_lesion_type(value: str | None) -> str | None:
    if value is None:
        return None
    v = normalise_name(value)
    for t in LESION_TYPES:
        if t in v:
            return t
    return None
