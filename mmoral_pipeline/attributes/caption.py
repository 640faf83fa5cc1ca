"""Location caption: the attributes of one image as the titled plain-text digest the LLM reads.

`render_caption` is deterministic (same document -> same bytes). Only what was assessed on the image
(its label coverage, `ImageAttributes.assessed`) gets a section; a partly labelled image's caption
says which categories were assessed and which were not. The wording is in
`prompts/location_caption.j2`; this module only picks and formats the entries.
`CAPTION_VERSION` hashes both, so a changed template marks `location_captions` stale.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import jinja2
import polars as pl

from mmoral_pipeline.attributes.gcpause import paused_gc
from mmoral_pipeline.attributes.versions import CAPTION_FILES, CAPTION_TEMPLATE, files_hash
from mmoral_pipeline.domain import fdi as fdi_rules
from mmoral_pipeline.domain.attributes import Condition, ImageAttributes
from mmoral_pipeline.domain.coverage import may_state, plural_names
from mmoral_pipeline.domain.taxonomy import DISPLAY_NAMES, Category

CAPTION_VERSION = f"caption-{files_hash(CAPTION_FILES)}"

CAPTIONS_SCHEMA = {
    "image_id": pl.String,
    "partition": pl.String,
    "attribute_row_hash": pl.String,
    "caption": pl.String,
    "caption_version": pl.String,
    "n_chars": pl.Int64,
}

CARIES = (Category.CARIES, Category.DEEP_CARIES)
TREATMENTS = (Category.FILLING, Category.CROWN, Category.ROOT_CANAL_TREATMENT, Category.IMPLANT, Category.BRIDGE)


@lru_cache(maxsize=1)
def _template() -> jinja2.Template:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(CAPTION_TEMPLATE.parent)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=False,
    )
    return env.get_template(CAPTION_TEMPLATE.name)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(v, float):
        return repr(round(v, 2))
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    return str(v)


def entry(fields: Mapping[str, Any]) -> str:
    """One caption entry in the paper's style: {'box_2d': [x1, y1, x2, y2], 'tooth_id': '36', ...}."""
    return "{" + ", ".join(f"'{k}': {_value(v)}" for k, v in fields.items()) + "}"


def _box(b: Sequence[float]) -> list[int]:
    return [int(round(v)) for v in b]


def label(c: Condition) -> str:
    name = DISPLAY_NAMES[c.category]
    name = name[0].upper() + name[1:]
    if c.category == Category.PERIAPICAL_LESION and c.type:
        name += f" ({c.type})"
    return name


def _unknown_tooth(c: Condition) -> dict[str, Any]:
    """Where an unknown-tooth finding is: the tooth the source named (if any) and its side."""
    tid = ",".join(str(t) for t in c.teeth) if c.teeth else "unknown"
    return {"tooth_id": tid, "side": c.side or "unknown"}


def caption_context(doc: ImageAttributes) -> dict[str, Any]:
    """The template's variables: one list of formatted entries per section."""
    teeth, wisdom, impacted = [], [], []
    caries, periapical, roots, treatments = [], [], [], []
    have = frozenset(doc.assessed)
    impaction = Category.IMPACTED_TOOTH in have  # without it, "is_impacted: false" would claim an erupted tooth

    def finding(c: Condition, where: dict[str, Any]) -> str:
        return entry({"box_2d": _box(c.bbox), **where, "label": label(c), "score": c.score})

    for t in doc.teeth:
        where = {"tooth_id": str(t.tooth_id)}
        teeth.append(entry({"point_2d": _box(t.center), **where, "score": t.score}))
        imp = [c for c in t.conditions if c.category == Category.IMPACTED_TOOTH]
        if t.is_wisdom:
            status = {"is_impacted": bool(imp)} if impaction else {}
            wisdom.append(entry({"box_2d": _box(t.bbox), **where, **status, "score": t.score}))
        elif imp:
            impacted.append(entry({"box_2d": _box(t.bbox), **where, "score": max(c.score for c in imp)}))
        for c in t.conditions:
            if c.category in CARIES:
                caries.append(finding(c, where))
            elif c.category == Category.PERIAPICAL_LESION:
                periapical.append(finding(c, where))
            elif c.category == Category.RETAINED_ROOT:
                roots.append(finding(c, where))
            elif c.category in TREATMENTS:
                treatments.append(finding(c, where))
    for c in doc.unknown_tooth_findings:
        where = _unknown_tooth(c)
        if c.category == Category.IMPACTED_TOOTH:
            if c.teeth and all(fdi_rules.is_wisdom(t) for t in c.teeth):
                wisdom.append(entry({"box_2d": _box(c.bbox), **where, "is_impacted": True, "score": c.score}))
            else:
                impacted.append(entry({"box_2d": _box(c.bbox), **where, "score": c.score}))
        elif c.category in CARIES:
            caries.append(finding(c, where))
        elif c.category == Category.PERIAPICAL_LESION:
            periapical.append(finding(c, where))
        elif c.category == Category.RETAINED_ROOT:
            roots.append(finding(c, where))
        else:
            treatments.append(finding(c, where))
    missing = [
        entry({"box_2d": _box(c.bbox), **_unknown_tooth(c), "score": c.score}) for c in doc.missing_teeth
    ]
    jaw = doc.jaw
    treated = [c for c in TREATMENTS if c in have]
    return {
        "assessed": plural_names(have),
        "not_assessed": plural_names(frozenset(Category) - have),
        "show": {
            "teeth": Category.TOOTH in have,
            "missing": Category.MISSING_TOOTH in have,
            "impacted": impaction,
            "caries": bool(have & set(CARIES)),
            "periapical": Category.PERIAPICAL_LESION in have,
            "retained_roots": Category.RETAINED_ROOT in have,
            "treatments": bool(treated),
            "treatments_assessed": ", ".join(DISPLAY_NAMES[c] for c in treated)
            if 0 < len(treated) < len(TREATMENTS)
            else "",
            "bone_loss": Category.BONE_LOSS in have,
            "mandibular_canals": Category.MANDIBULAR_CANAL in have,
            "maxillary_sinuses": Category.MAXILLARY_SINUS in have,
            "recommendations": may_state("extraction_rule", have),
        },
        "width": doc.width,
        "height": doc.height,
        "teeth": teeth,
        "wisdom": wisdom,
        "missing": missing,
        "impacted": impacted,
        "caries": caries,
        "periapical": periapical,
        "retained_roots": roots,
        "treatments": treatments,
        "bone_loss": [
            entry(
                {"box_2d": _box(c.bbox), "label": label(c), "site": c.side or c.region or "unknown", "score": c.score}
            )
            for c in jaw.bone_loss
        ],
        "mandibular_canals": [
            entry({"box_2d": _box(c.bbox), "label": label(c), "side": c.side or "unknown", "score": c.score})
            for c in jaw.mandibular_canal
        ],
        "maxillary_sinuses": [
            entry({"box_2d": _box(c.bbox), "label": label(c), "side": c.side or "unknown", "score": c.score})
            for c in jaw.maxillary_sinus
        ],
        "recommendations": [
            entry({"tooth_id": str(r.tooth_id), "recommendation": r.kind, "reason": r.reason})
            for r in doc.recommendations
        ],
        "acquisition_time": doc.acquisition_time,
    }


def render_caption(doc: ImageAttributes) -> str:
    """The location caption of one image (deterministic)."""
    return _template().render(**caption_context(doc)).strip() + "\n"


def render_captions(documents_json: Sequence[str]) -> list[str]:
    """Captions for many documents given as JSON strings (the `document` column), GC paused."""
    with paused_gc():
        return [render_caption(ImageAttributes.model_validate_json(blob)) for blob in documents_json]


def captions_frame(image_attributes: pl.DataFrame, *, chunk_images: int = 2000) -> pl.DataFrame:
    """The `location_captions` table for an `image_attributes` table (one caption per row)."""
    captions: list[str] = []
    documents = image_attributes["document"]
    for start in range(0, documents.len(), chunk_images):
        captions.extend(render_captions(documents.slice(start, chunk_images).to_list()))
    return (
        image_attributes.select("image_id", "partition", "attribute_row_hash")
        .with_columns(
            pl.Series("caption", captions, dtype=pl.String),
            pl.lit(CAPTION_VERSION, dtype=pl.String).alias("caption_version"),
            pl.Series("n_chars", [len(c) for c in captions], dtype=pl.Int64),
        )
        .cast(CAPTIONS_SCHEMA)  # type: ignore[arg-type]
    )
