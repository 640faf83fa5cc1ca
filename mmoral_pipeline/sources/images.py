"""Format `images`: a folder of X-rays and nothing else (a clinic's unannotated archive).

Every image file (`.png .jpg .jpeg .tif .tiff .bmp`, recursive) under `root/<images>` (default: the
root itself) is inspected and accepted or quarantined like any other reader's; there are no
annotations. What such a source says comes from the visual experts named in its `experts:` list
(`expert_annotations`); without experts it contributes images whose every category is unassessed.
Items: image paths relative to the image folder, sorted.
"""

from __future__ import annotations

from collections.abc import Sequence

from mmoral_pipeline.config import SourcesFile, SourceSpec
from mmoral_pipeline.domain.records import IngestBatch
from mmoral_pipeline.sources.base import list_images
from mmoral_pipeline.sources.common import add_image, folder, rel_to


class ImagesReader:
    def list_items(self, spec: SourceSpec, sources: SourcesFile) -> list[str]:
        images_dir = folder(spec, sources, spec.images, ".")
        return [rel_to(p, images_dir) for p in list_images(images_dir)]

    def read(self, spec: SourceSpec, sources: SourcesFile, items: Sequence[str] | None = None) -> IngestBatch:
        images_dir = folder(spec, sources, spec.images, ".")
        batch = IngestBatch()
        for rel in items if items is not None else self.list_items(spec, sources):
            add_image(batch, images_dir / rel, source=spec.name, root=images_dir, max_pixels=sources.max_image_pixels)
        return batch
