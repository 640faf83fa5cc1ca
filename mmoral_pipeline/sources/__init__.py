"""One reader per on-disk format. `get_reader(format)` is the only lookup the pipeline uses.

Entry points for the orchestration layer:

- `list_source_items(spec, sources)`: the stable, sorted item keys a source is sharded by. Keys
  are opaque to callers (usually image paths relative to the source root; paired formats use
  stems; single-document formats may add one `<file>#document` key for document-level
  problems). Pass slices of this list back to `read_source`.
- `read_source(spec, sources, items=None)`: an `IngestBatch` for those items (all when None).
  Every input ends up either accepted or as a `Rejection`; `counts_balance()` holds.

Formats and their layout / options (details in each module's docstring):

| format        | annotations (default)                 | images (default) | options                                        |
|---------------|---------------------------------------|------------------|------------------------------------------------|
| coco          | `annotations.json`                    | `images`         | class_map (name -> name), score_field          |
| dentex        | `train_quadrant_enumeration_disease.json` | `images`     | (tooth + diagnosis annotation per box)         |
| labelme       | `*.json` under the root               | embedded / imagePath | class_map, score_field, group_id_is_fdi, extract_dir |
| yolo          | options.labels (`labels`)             | `images`         | class_map (id -> name) or dataset_yaml: REQUIRED |
| ufba_masks    | options.masks (`masks`)               | root             |                                                |
| dc1000_masks  | options.labels (`labels`), colors     | `images`         | min_area, connectivity, category               |
| tufts         | `teeth_bbox.json`                     | `images`         | box_order (`xyxy` / `yxyx`; Tufts data: yxyx)  |
| mmoral_json   | `*.json` under the root               | root             |                                                |
| manifest      | `manifest.parquet` / `manifest.jsonl` | root             | class_map, score_field                         |
| dicom         | options.annotations_format's layout   | root (`.dcm`)    | annotations_format, modalities, accept_burned_in_text |
| images        | none (a folder of X-rays; experts label it) | root       |                                                |

Any format accepts DICOM images (`sources/dicom.py`), named by file name or SOP Instance UID.

Every format also takes `patient_key` (a regex over the image's relative file name: its `patient`
group is the patient key the split groups by) and `quadrant_map`.

Shared building blocks (accounting helpers, label parsing) live in `sources/common.py`.
"""  # noqa: E501 - the format table stays one row per line

from __future__ import annotations

import importlib
from collections.abc import Sequence

from mmoral_pipeline.config import SourcesFile, SourceSpec
from mmoral_pipeline.domain.records import IngestBatch
from mmoral_pipeline.sources.base import SourceReader, source_options
from mmoral_pipeline.sources.common import quarantine_not_panoramic
from mmoral_pipeline.sources.coverage import apply_coverage

# format name -> "module:ReaderClass"
READERS: dict[str, str] = {
    "coco": "mmoral_pipeline.sources.coco:CocoReader",
    "dentex": "mmoral_pipeline.sources.dentex:DentexReader",
    "labelme": "mmoral_pipeline.sources.labelme:LabelmeReader",
    "yolo": "mmoral_pipeline.sources.yolo:YoloReader",
    "ufba_masks": "mmoral_pipeline.sources.masks:UfbaMasksReader",
    "dc1000_masks": "mmoral_pipeline.sources.masks:Dc1000MasksReader",
    "tufts": "mmoral_pipeline.sources.tufts:TuftsReader",
    "mmoral_json": "mmoral_pipeline.sources.mmoral_json:MmoralJsonReader",
    "manifest": "mmoral_pipeline.sources.manifest:ManifestReader",
    "dicom": "mmoral_pipeline.sources.dicom:DicomReader",
    "images": "mmoral_pipeline.sources.images:ImagesReader",
}


def get_reader(fmt: str) -> SourceReader:
    if fmt not in READERS:
        raise ValueError(f"unknown source format {fmt!r}; supported: {sorted(READERS)}")
    module, cls = READERS[fmt].split(":")
    return getattr(importlib.import_module(module), cls)()


def list_source_items(spec: SourceSpec, sources: SourcesFile) -> list[str]:
    """Stable sorted item keys of one source (what shards are cut from)."""
    return get_reader(spec.format).list_items(spec, sources)


def read_source(spec: SourceSpec, sources: SourcesFile, items: Sequence[str] | None = None) -> IngestBatch:
    """Read one source (or the given items of it) through its format's reader.

    `options.quadrant_map` (e.g. `{3: 4, 4: 3}`) corrects a source whose labels use another
    side convention (AKUDENTAL's lower jaw is mirrored): every FDI number in the batch moves to
    the mapped quadrant, and the number as labelled is kept in `extra.source_fdi`. The source's
    options are visible to `inspect_image` while it reads (DICOM modalities, burned-in text).
    Then images whose shape rules out an OPG are quarantined (`not_panoramic`), and every image
    gets its label coverage (`covers`, sources/coverage.py).
    """
    with source_options(spec.options):  # DICOM policy knobs for inspect_image
        batch = get_reader(spec.format).read(spec, sources, items)
    qmap = spec.options.get("quadrant_map")
    if qmap:
        remap_quadrants(batch, {int(k): int(v) for k, v in qmap.items()})
    quarantine_not_panoramic(batch, sources.panoramic_limits(spec))
    apply_coverage(spec, sources, batch)
    pattern = spec.options.get("patient_key")
    if pattern:
        declare_patient_keys(batch, str(pattern))
    return batch


def declare_patient_keys(batch: IngestBatch, pattern: str) -> None:
    """`options.patient_key`: a regular expression searched in each image's file name (relative to the
    source root); its group `patient` (else its first group, else the whole match) is the patient key,
    so the split keeps that patient's X-rays together. Keys are compared across sources (one hospital's
    sources share patients); an image the pattern does not match keeps no key.
    """
    import re

    regex = re.compile(pattern)
    for image in batch.images:
        m = regex.search(image.file_name)
        if m is None:
            continue
        key = m.group("patient") if "patient" in regex.groupindex else (m.group(1) if regex.groups else m.group(0))
        image.patient_key = key or None


def remap_quadrants(batch: IngestBatch, quadrant_map: dict[int, int]) -> None:
    import json

    for ann in batch.annotations:
        if ann.fdi is None or ann.fdi // 10 not in quadrant_map:
            continue
        extra = json.loads(ann.extra) if ann.extra else {}
        extra["source_fdi"] = ann.fdi
        ann.fdi = quadrant_map[ann.fdi // 10] * 10 + ann.fdi % 10
        ann.extra = json.dumps(extra, sort_keys=True)


def clear_caches() -> None:
    """Drop the readers' parsed documents (one COCO file of MMOral's size is about 1 GB of Python objects).

    Readers cache a parsed annotation file so that shard after shard re-uses one parse; `mmoral materialize`
    needs them to plan shards, then drops them so that steps which read no source do not carry them.
    """
    from mmoral_pipeline.sources import coco, common, manifest

    for cached in (common._load_json_cached, coco._index_cached, manifest._index_cached):
        cached.cache_clear()
