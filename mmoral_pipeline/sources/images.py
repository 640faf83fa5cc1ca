"""Format `images`: a folder of X-rays and nothing else (a clinic's unannotated archive).

Every image file (`.png .jpg .jpeg .tif .tiff .bmp`, recursive) under `root/<images>` (default: the
root itself) is inspected and accepted or quarantined like any other reader's; there are no
annotations. What such a source says comes from the visual experts named in its `experts:` list
(`expert_annotations`); without experts it contributes images whose every category is unassessed.
Items, `file_name` and image ids: image paths relative to the source root (as the COCO reader has
them, so the same folder read as `coco` gives the same image ids), sorted.
"""

from __future__ import annotations

from collections.abc import Sequence

from mmoral_pipeline.config import SourcesFile, SourceSpec
from mmoral_pipeline.domain.records import IngestBatch
from mmoral_pipeline.sources.base import list_images
from mmoral_pipeline.sources.common import add_image, folder, rel_to


class ImagesReader:
    def list_items(self, spec: SourceSpec, sources: SourcesFile) -> list[str]:
        root = sources.root_of(spec)
        return [rel_to(p, root) for p in list_images(folder(spec, sources, spec.images, "."))]

    def read(self, spec: SourceSpec, sources: SourcesFile, items: Sequence[str] | None = None) -> IngestBatch:
        root = sources.root_of(spec)
        batch = IngestBatch()
        for rel in items if items is not None else self.list_items(spec, sources):
            add_image(batch, root / rel, source=spec.name, root=root, max_pixels=sources.max_image_pixels)
        return batch
