"""YOLO txt labels: `class cx cy w h` (normalised), optionally `... conf`, or polygon lines
`class x1 y1 x2 y2 ...` (normalised, YOLO segmentation).

- Class names are configuration, never guessed: `options.class_map` (class id -> name) or
  `options.dataset_yaml` (a YOLO dataset.yaml, relative to the root, whose `names` are used).
  Without either, `list_items`/`read` raise ValueError naming the source. Names are resolved with
  `parse_label`: taxonomy names/synonyms or FDI tooth labels ('11 - Central Incisor' -> tooth 11,
  'Filling - Crown' -> crown). A class id missing from the map gives `unknown_class`.
- Folders: labels `options.labels` (default `labels`), images `spec.images` or `options.images`
  (default `images`). Both are configuration and may lie outside the root (e.g. labels next to
  a sibling folder's images). Label and image are matched by relative path without suffix.
- Items: those stems (relative path without suffix, '/'-separated), sorted: the union of
  label files and image files. An image without a label file is an image with no findings;
  a label file without an image rejects its lines as `image_missing` (plus one `image_missing`
  image for the stem). `classes.txt` in the labels folder is ignored. Two images with one stem
  (`x.jpg`, `x.png`): the first in name order is paired, the other is `duplicate_stem`.
- Line layout by the number of values after the class: 4 = box, 5 = box + score, an even number
  >= 6 = polygon; anything else is `malformed_record`. `record` is `line N` (1-based).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from mmoral_pipeline.config import SourcesFile, SourceSpec
from mmoral_pipeline.domain.geometry import yolo_to_xyxy
from mmoral_pipeline.domain.records import IngestBatch, Rejection, RejectReason
from mmoral_pipeline.sources.base import IMAGE_SUFFIXES
from mmoral_pipeline.sources.common import (
    Label,
    add_image,
    emit_annotation,
    folder,
    parse_label,
    polygon_box,
    reject_annotation,
    reject_for_image,
    reject_image,
    rel_to,
)
from mmoral_pipeline.sources.dicom import alias_sop_uids

_IGNORED_LABEL_FILES = {"classes.txt"}


def load_class_names(spec: SourceSpec, sources: SourcesFile) -> dict[int, str]:
    """Class id -> name from options.class_map or options.dataset_yaml; ValueError when neither."""
    class_map = spec.options.get("class_map")
    if isinstance(class_map, dict) and class_map:
        try:
            return {int(k): str(v) for k, v in class_map.items()}
        except (TypeError, ValueError) as exc:
            raise ValueError(f"source {spec.name!r}: options.class_map keys must be class ids: {exc}") from exc
    if isinstance(class_map, list) and class_map:
        return {i: str(v) for i, v in enumerate(class_map)}
    yaml_file = spec.options.get("dataset_yaml")
    if yaml_file:
        path = folder(spec, sources, str(yaml_file), "")
        try:
            with open(path) as fh:
                doc = yaml.safe_load(fh) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ValueError(f"source {spec.name!r}: cannot read dataset_yaml {path}: {exc}") from exc
        names = doc.get("names") if isinstance(doc, dict) else None
        if isinstance(names, dict):
            return {int(k): str(v) for k, v in names.items()}
        if isinstance(names, list):
            return {i: str(v) for i, v in enumerate(names)}
        raise ValueError(f"source {spec.name!r}: {path} has no 'names'")
    raise ValueError(
        f"source {spec.name!r} (format yolo) needs options.class_map (class id -> name) or options.dataset_yaml; "
        "YOLO class ids are never guessed"
    )


def _px(v: float) -> float:
    """Pixel coordinate from normalised * size, rounded to 1e-4 px (no float noise like 110.00000000000001)."""
    return round(v, 4)


def parse_yolo_line(line: str) -> tuple[int, list[float], float | None, bool] | str:
    """(class id, normalised values, score, is_polygon) or a message saying what is wrong."""
    parts = line.split()
    try:
        cls_f = float(parts[0])
        values = [float(v) for v in parts[1:]]
    except ValueError:
        return f"not numbers: {line.strip()!r}"
    if not cls_f.is_integer() or cls_f < 0:
        return f"class is not a non-negative integer: {parts[0]!r}"
    n = len(values)
    if n == 4:
        return int(cls_f), values, None, False
    if n == 5:
        return int(cls_f), values[:4], values[4], False
    if n >= 6 and n % 2 == 0:
        return int(cls_f), values, None, True
    return f"{n} values after the class (expected 4, 5 or an even number >= 6)"


def _stems(folder_path: Path, suffixes: tuple[str, ...], ignore: set[str] = frozenset()) -> dict[str, list[Path]]:
    """Stem (relative path without suffix) -> every file with it, sorted (x.jpg before x.png)."""
    out: dict[str, list[Path]] = {}
    if not folder_path.is_dir():
        return out
    for p in sorted(folder_path.rglob("*")):
        if p.is_file() and p.suffix.lower() in suffixes and p.name not in ignore:
            out.setdefault(p.relative_to(folder_path).with_suffix("").as_posix(), []).append(p)
    return out


class YoloReader:
    """YOLO detection / segmentation labels (see module docstring)."""

    def _dirs(self, spec: SourceSpec, sources: SourcesFile) -> tuple[Path, Path, Path]:
        root = sources.root_of(spec)
        labels = folder(spec, sources, spec.options.get("labels"), "labels")
        images = folder(spec, sources, spec.images or spec.options.get("images"), "images")
        return root, labels, images

    def _maps(self, spec: SourceSpec, sources: SourcesFile) -> tuple[dict[str, list[Path]], dict[str, list[Path]]]:
        _, labels_dir, images_dir = self._dirs(spec, sources)
        labels = _stems(labels_dir, (".txt",), _IGNORED_LABEL_FILES)
        images = alias_sop_uids(_stems(images_dir, IMAGE_SUFFIXES), labels, images_dir)  # labels named by DICOM UID
        return labels, images

    def list_items(self, spec: SourceSpec, sources: SourcesFile) -> list[str]:
        load_class_names(spec, sources)  # configuration error surfaces at planning time
        labels, images = self._maps(spec, sources)
        return sorted(set(labels) | set(images))

    def read(self, spec: SourceSpec, sources: SourcesFile, items: Sequence[str] | None = None) -> IngestBatch:
        names = load_class_names(spec, sources)
        root, _, images_dir = self._dirs(spec, sources)
        labels, images = self._maps(spec, sources)
        known = set(labels) | set(images)
        keys = sorted(known) if items is None else sorted(k for k in items if k in known)
        batch = IngestBatch()
        src = spec.name
        labels_resolved: dict[int, Label | Any] = {cid: parse_label(n) for cid, n in names.items()}
        for stem in keys:
            label_path = labels[stem][0] if stem in labels else None  # one .txt per stem
            image_path, *same_stem = images.get(stem) or [None]
            for other in same_stem:  # x.jpg and x.png: the label file cannot say which one it describes
                reject_image(
                    batch,
                    source=src,
                    path=str(other),
                    reason=RejectReason.DUPLICATE_STEM,
                    message=f"{other.name} has the same stem {stem!r} as {image_path.name}; "
                    f"only {image_path.name} is paired with "
                    f"{label_path.name if label_path else 'the (absent) label file'}",
                )
            lines: list[tuple[int, str]] = []
            source_file = ""
            if label_path is not None:
                source_file = rel_to(label_path, root)
                try:
                    text = label_path.read_text(encoding="utf-8", errors="replace")
                except OSError as exc:
                    text = ""
                    reject_annotation(
                        batch,
                        source=src,
                        path=str(label_path),
                        record="$",
                        reason=RejectReason.MALFORMED_RECORD,
                        message=f"cannot read: {exc}",
                    )
                lines = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
            records = [f"line {n}" for n, _ in lines]
            if image_path is None:
                rej = reject_image(
                    batch, source=src, path=str(images_dir / stem), reason=RejectReason.IMAGE_MISSING,
                    message=f"no image for label file {source_file or stem} in {images_dir}",
                )
                reject_for_image(batch, rej, source=src, path=str(label_path or stem), records=records)
                continue
            image_root = root if image_path.is_relative_to(root) else images_dir
            image = add_image(batch, image_path, source=src, root=image_root, max_pixels=sources.max_image_pixels)
            if isinstance(image, Rejection):
                reject_for_image(batch, image, source=src, path=str(label_path), records=records)
                continue
            for (_, line), record in zip(lines, records, strict=True):
                parsed = parse_yolo_line(line)
                if isinstance(parsed, str):
                    reject_annotation(
                        batch,
                        source=src,
                        path=str(label_path),
                        record=record,
                        reason=RejectReason.MALFORMED_RECORD,
                        message=parsed,
                    )
                    continue
                cid, values, score, is_polygon = parsed
                polygon = None
                if is_polygon:
                    polygon = [_px(v * (image.width if k % 2 == 0 else image.height)) for k, v in enumerate(values)]
                    box = polygon_box(polygon)
                else:
                    box = [_px(v) for v in yolo_to_xyxy(*values, image.width, image.height)]
                if cid not in names:
                    reject_annotation(
                        batch,
                        source=src,
                        path=str(label_path),
                        record=record,
                        reason=RejectReason.UNKNOWN_CLASS,
                        message=f"class id {cid} not in the class map",
                    )
                    continue
                emit_annotation(
                    batch, image=image, source_file=source_file, path=str(label_path), record=record,
                    source_category=names[cid], box=box, label=labels_resolved[cid], polygon=polygon, score=score,
                    extra={"class_id": cid},
                )
        return batch
