"""MMOral per-image attribute JSON (the `ImageAttributes` layout, domain/attributes.py).

One JSON document per image under `<root>/<annotations>` (default: the root). The image is
`<root>/<images>/<file_name>` (default images folder: the root, so `file_name` is relative to
the root and equals `ImageRecord.file_name`); without a `file_name` an image with the JSON's stem
is looked up there. `image_id` is the document's own `image_id` when it is filesystem-safe,
else `make_image_id(source, file_name)`.

Mapping (one annotation per element; `record` is the JSON path of the element; nothing else is
inferred, so rebuilding `ImageAttributes` from the annotations gives the same document):

| document element                       | category        | fdi               | extra                           |
|----------------------------------------|-----------------|-------------------|---------------------------------|
| `teeth[i]`                             | tooth           | `tooth_id`        | `wisdom_status` (when set)      |
| `teeth[i].conditions[j]`               | its `category`  | parent `tooth_id` | `region`, `side`, `teeth`       |
| `jaw.<bone_loss|mandibular_canal|maxillary_sinus>[k]` | its `category` | none   | `region`, `side`                |
| `missing_teeth[k]`                     | its `category`  | none              | `teeth`, `side`                 |
| `unknown_tooth_findings[k]`            | its `category`  | none              | `side`, `region`, `teeth`       |

Every annotation: box = `bbox`, score = `score`, lesion_type = condition `type`; extra also holds
`section` (the list the element came from), the element's own `annotation_ids` as
`source_annotation_ids`, and the document's `acquisition_time` when set. The document's `assessed`
list (label coverage) becomes the image's `covers`; without it, everything was assessed. Derived fields
(`quadrant`, `is_wisdom`, `side` and `center` of teeth; `recommendations`) are not carried: the
attribute stage recomputes them from the FDI number and the rules.

A document that is not valid JSON / not an object is one rejected image (`malformed_json`);
its elements cannot be enumerated and are not counted. A malformed element (missing bbox,
unknown category, invalid tooth id) is one rejected annotation.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mmoral_pipeline.config import SourcesFile, SourceSpec
from mmoral_pipeline.domain.coverage import parse_coverage, sorted_categories
from mmoral_pipeline.domain.records import ImageRecord, IngestBatch, Rejection, RejectReason
from mmoral_pipeline.domain.taxonomy import Category
from mmoral_pipeline.sources.base import IMAGE_SUFFIXES, make_image_id, resolve_inside
from mmoral_pipeline.sources.common import (
    Label,
    add_image,
    clean_extra,
    emit_annotation,
    folder,
    parse_fdi,
    parse_label,
    reject_annotation,
    reject_for_image,
    reject_image,
    rel_to,
)

JAW_SECTIONS = ("bone_loss", "mandibular_canal", "maxillary_sinus")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]+$")


def document_elements(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any] | None, int | None]]:
    """(record, section, element, parent tooth id) for every element of a document, in order."""
    out: list[tuple[str, str, dict[str, Any] | None, int | None]] = []

    def as_list(v: Any) -> list[Any]:
        return v if isinstance(v, list) else []

    for i, tooth in enumerate(as_list(doc.get("teeth"))):
        t = tooth if isinstance(tooth, dict) else None
        out.append((f"teeth[{i}]", "teeth", t, None))
        if t is None:
            continue
        tid = parse_fdi(t.get("tooth_id"))
        for j, cond in enumerate(as_list(t.get("conditions"))):
            out.append(
                (
                    f"teeth[{i}].conditions[{j}]",
                    "conditions",
                    cond if isinstance(cond, dict) else None,
                    tid if isinstance(tid, int) else None,
                )
            )
    jaw = doc.get("jaw") if isinstance(doc.get("jaw"), dict) else {}
    for name in JAW_SECTIONS:
        for k, cond in enumerate(as_list(jaw.get(name))):
            out.append((f"jaw.{name}[{k}]", f"jaw.{name}", cond if isinstance(cond, dict) else None, None))
    for section in ("missing_teeth", "unknown_tooth_findings"):
        for k, cond in enumerate(as_list(doc.get(section))):
            out.append((f"{section}[{k}]", section, cond if isinstance(cond, dict) else None, None))
    return out


class MmoralJsonReader:
    """MMOral attribute JSON documents (see module docstring)."""

    def _dirs(self, spec: SourceSpec, sources: SourcesFile) -> tuple[Path, Path, Path]:
        root = sources.root_of(spec)
        return root, folder(spec, sources, spec.annotations, "."), folder(spec, sources, spec.images, ".")

    def list_items(self, spec: SourceSpec, sources: SourcesFile) -> list[str]:
        root, ann_dir, _ = self._dirs(spec, sources)
        if not ann_dir.is_dir():
            return []
        return sorted(rel_to(p, root) for p in ann_dir.rglob("*.json") if p.is_file())

    def read(self, spec: SourceSpec, sources: SourcesFile, items: Sequence[str] | None = None) -> IngestBatch:
        root, _, images_dir = self._dirs(spec, sources)
        batch = IngestBatch()
        for key in self.list_items(spec, sources) if items is None else sorted(items):
            self._read_one(spec, sources, root, images_dir, key, batch)
        return batch

    def _read_one(
        self, spec: SourceSpec, sources: SourcesFile, root: Path, images_dir: Path, key: str, batch: IngestBatch
    ) -> None:
        src = spec.name
        path = resolve_inside(root, key)
        if path is None:
            reject_image(
                batch,
                source=src,
                path=key,
                reason=RejectReason.PATH_ESCAPES_SOURCE,
                message=f"{key!r} escapes the source folder",
            )
            return
        try:
            doc = json.loads(path.read_bytes())
            if not isinstance(doc, dict):
                raise ValueError("not a JSON object")
        except FileNotFoundError:
            reject_image(
                batch, source=src, path=str(path), reason=RejectReason.MISSING_ANNOTATIONS, message=f"{key} not found"
            )
            return
        except (OSError, ValueError) as exc:
            reject_image(batch, source=src, path=str(path), reason=RejectReason.MALFORMED_JSON, message=f"{key}: {exc}")
            return
        elements = document_elements(doc)
        records = [e[0] for e in elements]
        try:  # the document's own label coverage (absent: everything was assessed, as MMOral's experts do)
            assessed = sorted_categories(parse_coverage(doc["assessed"])) if "assessed" in doc else []
        except ValueError as exc:
            rej = reject_image(
                batch,
                source=src,
                path=str(path),
                record="assessed",
                reason=RejectReason.MALFORMED_RECORD,
                message=f"{key}: {exc}",
            )
            reject_for_image(batch, rej, source=src, path=str(path), records=records)
            return
        image = self._image(spec, sources, root, images_dir, key, path, doc, batch)
        if isinstance(image, Rejection):
            reject_for_image(batch, image, source=src, path=str(path), records=records)
            return
        image.covers = assessed
        acquisition = doc.get("acquisition_time")
        for record, section, el, parent in elements:
            if el is None:
                reject_annotation(
                    batch,
                    source=src,
                    path=str(path),
                    record=record,
                    reason=RejectReason.MALFORMED_RECORD,
                    message="element is not an object",
                )
                continue
            extra: dict[str, Any] = {
                "section": section,
                "source_annotation_ids": el.get("annotation_ids"),
                "acquisition_time": acquisition,
            }
            if section == "teeth":
                label: Label | RejectReason = Label(Category.TOOTH)
                fdi = el.get("tooth_id")
                if fdi is None:
                    label = RejectReason.INVALID_TOOTH
                category_name = "tooth"
                extra["wisdom_status"] = el.get("wisdom_status")
                lesion = None
            else:
                category_name = str(el.get("category"))
                parsed = parse_label(el.get("category"))
                label = (
                    parsed
                    if isinstance(parsed, RejectReason) or parsed.category != Category.TOOTH
                    else RejectReason.UNKNOWN_CLASS
                )
                fdi = parent
                lesion = el.get("type")
                extra.update(region=el.get("region"), side=el.get("side"), teeth=el.get("teeth"))
            emit_annotation(
                batch, image=image, source_file=key, path=str(path), record=record, source_category=category_name,
                box=el.get("bbox"), label=label, fdi=fdi, score=el.get("score", 1.0),
                lesion_type=str(lesion) if lesion else None, extra=clean_extra(extra),
            )

    def _image(
        self, spec: SourceSpec, sources: SourcesFile, root: Path, images_dir: Path, key: str, json_path: Path,
        doc: dict[str, Any], batch: IngestBatch,
    ) -> ImageRecord | Rejection:
        src = spec.name
        file_name = doc.get("file_name")
        if isinstance(file_name, str) and file_name:
            image_path = resolve_inside(images_dir, file_name)
            if image_path is None:
                return reject_image(
                    batch,
                    source=src,
                    path=file_name,
                    record="file_name",
                    reason=RejectReason.PATH_ESCAPES_SOURCE,
                    message=f"file_name {file_name!r} escapes the image folder",
                )
        else:
            stem = Path(key).stem
            found = [images_dir / f"{stem}{s}" for s in IMAGE_SUFFIXES if (images_dir / f"{stem}{s}").exists()]
            image_path = found[0] if found else images_dir / f"{stem}.png"
        rel = rel_to(image_path, root)
        doc_id = doc.get("image_id")
        image_id = doc_id if isinstance(doc_id, str) and _SAFE_ID.match(doc_id) else make_image_id(src, rel)
        return add_image(
            batch, image_path, source=src, root=root, max_pixels=sources.max_image_pixels, image_id=image_id
        )
