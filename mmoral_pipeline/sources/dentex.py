"""DENTEX 2023 (`train_quadrant_enumeration_disease.json`): COCO with three category lists.

`category_id_1/2/3` are indices into `categories_1` (quadrant '1'..'4'), `categories_2`
(tooth position '1'..'8') and `categories_3` (diagnosis: Impacted, Caries, Periapical Lesion,
Deep Caries). FDI = quadrant name followed by position name (ids 3 and 7 -> '4' '8' -> 48).

Choice: every DENTEX box is a *tooth that has a diagnosis*. The reader therefore emits two
annotations per box, both with the same box and FDI:

- `annotations[i]#tooth`      category tooth (source_category = the FDI number, e.g. '48')
- `annotations[i]#diagnosis`  the diagnosis finding (source_category = the DENTEX name)

so the tooth is known to the attribute stage (which keys teeth by FDI) and the finding is
attached to it. Both count as annotations seen; if the image is missing/rejected both are
rejected. Files without `categories_3` (the enumeration-only DENTEX variant) give only the tooth.
Everything else (items, images, duplicates, quarantine) is the COCO reader's behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mmoral_pipeline.config import SourceSpec
from mmoral_pipeline.domain import fdi as fdi_rules
from mmoral_pipeline.domain.records import RejectReason
from mmoral_pipeline.domain.taxonomy import Category, unify_category
from mmoral_pipeline.sources.coco import Candidate, CocoReader, _coco_box, _segmentation_polygon
from mmoral_pipeline.sources.common import Label, clean_extra

DEFAULT_DENTEX_FILE = "train_quadrant_enumeration_disease.json"


@dataclass(frozen=True)
class DentexBox:
    """One parsed DENTEX annotation."""

    index: int  # position in annotations[]
    annotation_id: Any
    image_id: Any
    box: Any  # [x1, y1, x2, y2] pixels (as given; validated later)
    polygon: list[float] | None
    quadrant: str | None
    position: str | None
    fdi: int | None  # None when quadrant/position do not make an FDI tooth
    diagnosis: str | None  # DENTEX name, e.g. 'Periapical Lesion'
    category: Category | None  # unified diagnosis; None when absent or unknown
    lesion_type: str | None


def _names(cats: Any) -> dict[Any, str]:
    if not isinstance(cats, list):
        return {}
    return {c["id"]: str(c["name"]) for c in cats if isinstance(c, dict) and "id" in c and "name" in c}


def parse_dentex_annotation(ann: dict[str, Any], index: int, cat1: dict, cat2: dict, cat3: dict) -> DentexBox:
    q = cat1.get(ann.get("category_id_1"))
    p = cat2.get(ann.get("category_id_2"))
    number: int | None = None
    if q is not None and p is not None and f"{q}{p}".isdigit() and fdi_rules.is_valid_fdi(int(f"{q}{p}")):
        number = int(f"{q}{p}")
    diagnosis = cat3.get(ann.get("category_id_3")) if "category_id_3" in ann else None
    unified = unify_category(diagnosis) if diagnosis is not None else None
    polygon = _segmentation_polygon(ann.get("segmentation"))
    return DentexBox(
        index=index,
        annotation_id=ann.get("id"),
        image_id=ann.get("image_id"),
        box=_coco_box(ann, polygon),
        polygon=polygon,
        quadrant=q,
        position=p,
        fdi=number,
        diagnosis=diagnosis,
        category=unified[0] if unified else None,
        lesion_type=unified[1] if unified else None,
    )


def parse_dentex(doc: dict[str, Any]) -> list[DentexBox]:
    """Every annotation of a DENTEX document, parsed (pure; no files touched)."""
    cat1, cat2, cat3 = (_names(doc.get(k)) for k in ("categories_1", "categories_2", "categories_3"))
    return [
        parse_dentex_annotation(a, i, cat1, cat2, cat3)
        for i, a in enumerate(doc.get("annotations", []))
        if isinstance(a, dict)
    ]


class DentexReader(CocoReader):
    """DENTEX quadrant-enumeration-disease COCO (see module docstring)."""

    default_annotations = DEFAULT_DENTEX_FILE
    default_images = "images"

    def candidates(self, ann: dict[str, Any], j: int, doc: dict[str, Any], spec: SourceSpec) -> list[Candidate]:
        cat1, cat2, cat3 = (_names(doc.get(k)) for k in ("categories_1", "categories_2", "categories_3"))
        parsed = parse_dentex_annotation(ann, j, cat1, cat2, cat3)
        extra = clean_extra({"id": ann.get("id"), "quadrant": parsed.quadrant, "position": parsed.position})
        if parsed.fdi is not None:
            tooth_label: Label | RejectReason = Label(Category.TOOTH, None, parsed.fdi)
        elif parsed.quadrant is None or parsed.position is None:
            tooth_label = RejectReason.UNKNOWN_CLASS
        else:
            tooth_label = RejectReason.INVALID_TOOTH
        tooth_name = f"{parsed.quadrant}{parsed.position}" if parsed.quadrant and parsed.position else str(
            (ann.get("category_id_1"), ann.get("category_id_2"))
        )
        out = [
            Candidate(
                record=f"annotations[{j}]#tooth",
                source_category=tooth_name,
                label=tooth_label,
                box=parsed.box,
                polygon=parsed.polygon,
                extra=extra,
            )
        ]
        if "category_id_3" in ann:
            if isinstance(tooth_label, RejectReason):
                diag_label: Label | RejectReason = tooth_label
            elif parsed.category is None:
                diag_label = RejectReason.UNKNOWN_CLASS
            else:
                diag_label = Label(parsed.category, parsed.lesion_type, parsed.fdi)
            out.append(
                Candidate(
                    record=f"annotations[{j}]#diagnosis",
                    source_category=parsed.diagnosis if parsed.diagnosis is not None else str(ann.get("category_id_3")),
                    label=diag_label,
                    box=parsed.box,
                    polygon=parsed.polygon,
                    extra=extra,
                )
            )
        return out
