"""Pydantic records at the ingest boundary: one image, one annotation, one rejection.

Their `model_dump()` is exactly one row of `raw_images`, `raw_annotations` and `rejected_inputs`.
"""

from __future__ import annotations

import hashlib
import json
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field, PrivateAttr, field_validator, model_validator

from mmoral_pipeline.domain import fdi as fdi_rules
from mmoral_pipeline.domain.taxonomy import Category


class RejectReason(StrEnum):
    """Why an input was quarantined. Stable codes: tests and dashboards key on them."""

    IMAGE_CORRUPT = "image_corrupt"  # truncated or undecodable
    NOT_AN_IMAGE = "not_an_image"
    EMPTY_FILE = "empty_file"
    IMAGE_TOO_LARGE = "image_too_large"  # decompression-bomb guard
    IMAGE_MISSING = "image_missing"  # annotation points to a file that is not there
    PATH_ESCAPES_SOURCE = "path_escapes_source"  # '../' or absolute path outside the source folder
    BOX_OUT_OF_BOUNDS = "box_out_of_bounds"
    BOX_NEGATIVE = "box_negative"
    BOX_ZERO_AREA = "box_zero_area"
    BOX_NAN = "box_nan"
    BOX_MALFORMED = "box_malformed"
    UNKNOWN_CLASS = "unknown_class"
    INVALID_TOOTH = "invalid_tooth"
    MALFORMED_JSON = "malformed_json"
    MALFORMED_RECORD = "malformed_record"
    DUPLICATE_ID = "duplicate_id"
    ID_COLLISION = "id_collision"  # two files whose names clean to the same image id (a/b.png, a_b.png, a b.jpg)
    DUPLICATE_STEM = "duplicate_stem"  # two images with one stem (x.png, x.jpg): a paired label cannot say which
    DUPLICATE_IMAGE = "duplicate_image"
    MISSING_ANNOTATIONS = "missing_annotations"
    IMAGE_REJECTED = "image_rejected"  # an annotation whose image was itself quarantined
    MULTI_FRAME = "multi_frame"  # a DICOM with several frames (a series, not one X-ray)
    NOT_PANORAMIC = "not_panoramic"
    BURNED_IN_TEXT = "burned_in_text"  # DICOM BurnedInAnnotation = YES: patient data may be in the pixels


def stable_id(*parts: Any, length: int = 16) -> str:
    """Short content hash used for ids that must not change between runs."""
    h = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()
    return h[:length]


class ImageRecord(BaseModel):
    image_id: str
    source: str
    path: str  # absolute (or fsspec) path of the source file, as it was read (lineage: sha256 is of this file)
    file_name: str  # path relative to the source root
    sha256: str
    width: int  # of the image the model sees (EXIF orientation applied): the frame boxes are read in
    height: int
    mode: str  # of the source file: a PIL mode, or 'DICOM <photometric interpretation> <bits stored>-bit'
    bytes: int
    # Groups X-rays of one patient (the split never separates them). Declared by a source, or a
    # salted hash of a DICOM PatientID; never the identifier itself. None: unknown.
    patient_key: str | None = None
    # Perceptual hash (hex) of the decoded pixels, robust to re-encoding and resizing: the split
    # groups near-duplicate copies by it (mmoral_pipeline.domain.near_duplicates). None: not computed.
    phash: str | None = None
    # The 8-bit L/RGB image the model sees: `path` itself when the file needs no normalisation,
    # else a PNG written once under $MMORAL_HOME/_model_images (sources/base.py).
    model_image_path: str = ""
    normalisation: str | None = None  # what was done to get it (window, inversion, rotation, ...); None: nothing
    # Label coverage: the categories its source labels completely (`covers:`, or the format's default),
    # set by `sources.read_source`. Nothing may be said about a category outside it.
    covers: list[Category] = Field(default_factory=list)

    @model_validator(mode="after")
    def _model_image_defaults_to_path(self) -> ImageRecord:
        if not self.model_image_path:
            self.model_image_path = self.path
        return self


class AnnotationRecord(BaseModel):
    annotation_id: str
    image_id: str
    source: str
    source_file: str  # the annotation file (or image file for mask formats)
    record: str  # pointer inside that file: JSON path, line number, mask file
    source_category: str
    category: Category
    lesion_type: str | None = None
    fdi: int | None = None
    box: list[float] = Field(min_length=4, max_length=4)  # [x1, y1, x2, y2] pixels
    polygon: list[float] | None = None  # flat [x1, y1, x2, y2, ...] pixels
    score: float | None = None  # detector confidence; None for human labels
    extra: str | None = None  # JSON of any other source attributes

    @field_validator("fdi")
    @classmethod
    def _valid_fdi(cls, v: int | None) -> int | None:
        if v is not None and not fdi_rules.is_valid_fdi(v):
            raise ValueError(f"invalid FDI tooth {v}")
        return v

    @staticmethod
    def dump_extra(extra: dict[str, Any] | None) -> str | None:
        return json.dumps(extra, sort_keys=True, default=str) if extra else None


class Rejection(BaseModel):
    source: str
    path: str  # the file that was rejected or that holds the rejected record
    record: str | None = None  # pointer inside the file, when the problem is one record
    reason: RejectReason
    message: str
    kind: str = "image"  # "image" or "annotation": which count it reduces


class IngestBatch(BaseModel):
    """What a reader returns for one batch of inputs: nothing is dropped without a rejection."""

    images: list[ImageRecord] = Field(default_factory=list)
    annotations: list[AnnotationRecord] = Field(default_factory=list)
    rejections: list[Rejection] = Field(default_factory=list)
    images_seen: int = 0
    annotations_seen: int = 0
    _owner_of_id: dict[str, str] = PrivateAttr(default_factory=dict)  # image_id -> file_name of its holder

    def id_owner(self, image_id: str) -> str | None:
        """The file name of the accepted image that holds `image_id`, or None when the id is free."""
        if len(self._owner_of_id) != len(self.images):  # images appended without `accept_image`
            self._owner_of_id = {}
            for im in self.images:
                self._owner_of_id.setdefault(im.image_id, im.file_name)
        return self._owner_of_id.get(image_id)

    def accept_image(self, image: ImageRecord) -> None:
        """Append an accepted image (whose id `id_owner` said is free) and index its id."""
        self.id_owner(image.image_id)  # brings the index up to date first
        self.images.append(image)
        self._owner_of_id.setdefault(image.image_id, image.file_name)

    def extend(self, other: IngestBatch) -> None:
        self.images.extend(other.images)
        self.annotations.extend(other.annotations)
        self.rejections.extend(other.rejections)
        self.images_seen += other.images_seen
        self.annotations_seen += other.annotations_seen

    def reject(self, rejection: Rejection) -> None:
        self.rejections.append(rejection)

    def counts_balance(self) -> tuple[bool, dict[str, int]]:
        """inputs seen = accepted + rejected, separately for images and annotations."""
        rej_img = sum(1 for r in self.rejections if r.kind == "image")
        rej_ann = sum(1 for r in self.rejections if r.kind == "annotation")
        counts = {
            "images_seen": self.images_seen,
            "images_accepted": len(self.images),
            "images_rejected": rej_img,
            "annotations_seen": self.annotations_seen,
            "annotations_accepted": len(self.annotations),
            "annotations_rejected": rej_ann,
        }
        ok = self.images_seen == len(self.images) + rej_img and self.annotations_seen == len(self.annotations) + rej_ann
        return ok, counts
