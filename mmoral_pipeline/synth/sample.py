"""Rebuild the embedded sample in assets/sample/ (and docs/contact_sheet.png) deterministically.

    python -m mmoral_pipeline.synth.sample [--root assets/sample] [--sheet docs/contact_sheet.png]

coco/        24 images, seed 2025, detector-like scores, COCO layout
labelme/     4 images, seed 7, no scores (like human labels), labelme 5.x layout
quarantine/  a COCO source that deliberately holds bad inputs (see assets/sample/README.md)
README.md in assets/sample/ is hand-written and left alone.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

from mmoral_pipeline.domain.taxonomy import Category
from mmoral_pipeline.synth.contact_sheet import contact_sheet
from mmoral_pipeline.synth.generate import case_for, generate, jpeg_bytes
from mmoral_pipeline.synth.model import CATEGORY_IDS
from mmoral_pipeline.synth.writers import coco_document, coco_entries

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLE_QUALITY = 85
COCO_SEED, COCO_N = 2025, 24
LABELME_SEED, LABELME_N = 7, 4
QUARANTINE_SEED = 99
UNKNOWN_CATEGORY = {"id": 99, "name": "orthodontic bracket", "supercategory": "dental"}


def build_quarantine(folder: Path, width: int = 1400, height: int = 700) -> dict[str, Any]:
    """3 good images plus one of each kind of bad input a reader must reject, in COCO layout."""
    images_dir = folder / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for index in range(3):
        case = case_for(QUARANTINE_SEED, index, width, height)
        (images_dir / f"{case.name}.jpg").write_bytes(jpeg_bytes(case, SAMPLE_QUALITY))
        image, anns = coco_entries(case, scores=False, polygons=False)
        images.append(image)
        annotations.extend(anns)
    good = [im["id"] for im in images]
    # Bad files.
    truncated = jpeg_bytes(case_for(QUARANTINE_SEED, 3, width, height), SAMPLE_QUALITY)
    (images_dir / "truncated.jpg").write_bytes(truncated[: len(truncated) * 2 // 5])
    (images_dir / "empty.png").write_bytes(b"")
    (images_dir / "not_an_image.jpg").write_text("This is a text file with a .jpg name, not an image.\n")
    bad_images = [
        (101, "truncated.jpg"),
        (102, "empty.png"),
        (103, "not_an_image.jpg"),
        (104, "missing.jpg"),  # listed but not on disk
        (105, "../../etc/passwd"),  # escapes the source folder
    ]
    tooth = CATEGORY_IDS[Category.TOOTH]
    for image_id, name in bad_images:
        images.append({"id": image_id, "file_name": name, "width": width, "height": height})
        annotations.append(
            {
                "id": image_id * 1000,
                "image_id": image_id,
                "category_id": tooth,
                "bbox": [600.0, 300.0, 40.0, 120.0],
                "area": 4800.0,
                "iscrowd": 0,
                "attributes": {"fdi": 11},
            }
        )
    # Bad boxes and an unknown category on the good images.
    filling = CATEGORY_IDS[Category.FILLING]
    annotations.append(
        {
            "id": 900001,
            "image_id": good[0],
            "category_id": filling,
            "bbox": [1350.0, 640.0, 200.0, 150.0],
            "area": 30000.0,
            "iscrowd": 0,
            "attributes": {"fdi": 47, "why": "box out of bounds"},
        }
    )
    annotations.append({"id": 900002, "image_id": good[1], "category_id": filling, "bbox": [500.0, 300.0, 0.0, 40.0],
                        "area": 0.0, "iscrowd": 0, "attributes": {"fdi": 36, "why": "zero-area box"}})
    annotations.append(
        {
            "id": 900003,
            "image_id": good[2],
            "category_id": UNKNOWN_CATEGORY["id"],
            "bbox": [640.0, 380.0, 30.0, 20.0],
            "area": 600.0,
            "iscrowd": 0,
            "attributes": {"fdi": 21, "why": "unknown category"},
        }
    )
    doc = coco_document(images, annotations, "mmoral-pipeline quarantine demo: 3 good images and deliberate bad inputs")
    doc["categories"].append(UNKNOWN_CATEGORY)
    (folder / "annotations.json").write_text(json.dumps(doc, separators=(",", ":")) + "\n")
    return doc


def rebuild_sample(root: Path | None = None, sheet: Path | None = None) -> dict[str, Any]:
    """Delete and regenerate coco/, labelme/ and quarantine/ under `root`; redraw the contact sheet."""
    root = Path(root or REPO_ROOT / "assets" / "sample")
    for sub in ("coco", "labelme", "quarantine"):
        shutil.rmtree(root / sub, ignore_errors=True)
    coco = generate(COCO_N, COCO_SEED, root / "coco", "coco", scores=True, quality=SAMPLE_QUALITY)
    labelme = generate(LABELME_N, LABELME_SEED, root / "labelme", "labelme", scores=False, quality=SAMPLE_QUALITY)
    build_quarantine(root / "quarantine")
    if sheet is not None:
        contact_sheet(root / "coco", sheet, cover=True)
    return {"coco": coco.model_dump(), "labelme": labelme.model_dump()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mmoral_pipeline.synth.sample", description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, default=REPO_ROOT / "assets" / "sample")
    p.add_argument("--sheet", type=Path, default=REPO_ROOT / "docs" / "contact_sheet.png")
    p.add_argument("--no-sheet", action="store_true")
    args = p.parse_args(argv)
    out = rebuild_sample(args.root, None if args.no_sheet else args.sheet)
    print(json.dumps({k: {"n": v["n_images"], "counts": v["counts"]} for k, v in out.items()}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
