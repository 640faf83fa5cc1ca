"""Referential integrity of instruction_samples: no orphans, images unchanged on disk.

Every sample's parents must exist: its generation row (table + item_id), its raw image, its
attribute row (image_id + attribute_row_hash) and the annotations that row cites; every image
path must exist and hash to the sha256 recorded at ingest. Problems are counted per kind with
a few examples, so the asset check can show them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
from pydantic import BaseModel, Field

from mmoral_pipeline import progress
from mmoral_pipeline.dataset.assemble import GENERATION_TABLES
from mmoral_pipeline.dataset.lineage import TableReader, all_annotation_ids, read_annotations, sha256_file

# What the check reads of the samples and of each parent table (those that exist): at 1.3M samples, nothing else.
SAMPLE_COLUMNS = ["sample_id", "item_id", "generation_table", "image_id", "image_path", "attribute_row_hash"]
LINK_COLUMNS: dict[str, list[str]] = {
    "raw_images": ["image_id", "path", "sha256", "model_image_path"],
    "image_attributes": ["image_id", "attribute_row_hash", "document"],
    "raw_annotations": ["annotation_id"],
    **{t: ["item_id"] for t in GENERATION_TABLES},
}


class IntegrityReport(BaseModel):
    samples: int = 0
    images_checked: int = 0
    problems: dict[str, int] = Field(default_factory=dict)  # kind -> count
    examples: dict[str, list[str]] = Field(default_factory=dict)  # kind -> up to 5 examples
    missing_tables: list[str] = Field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(self.problems.values()) and not self.missing_tables

    def add(self, kind: str, example: str) -> None:
        self.problems[kind] = self.problems.get(kind, 0) + 1
        ex = self.examples.setdefault(kind, [])
        if len(ex) < 5:
            ex.append(example)


def _read(read: TableReader, name: str, report: IntegrityReport) -> pl.DataFrame | None:
    try:
        frame = read(name)
    except FileNotFoundError:
        frame = None
    if frame is None:
        report.missing_tables.append(name)
    return frame


def check_integrity(
    samples: pl.DataFrame,
    read: TableReader,
    *,
    verify_sha256: bool = True,
    hasher: Callable[[str], str] = sha256_file,
) -> IntegrityReport:
    """Check every parent link of every sample; tables are read once each."""
    report = IntegrityReport(samples=samples.height)
    if samples.height == 0:
        return report

    # generation rows
    for table in sorted(set(samples["generation_table"].drop_nulls().to_list())):
        gen = _read(read, table, report)
        if gen is None:
            continue
        have = (
            gen.select("item_id").unique() if "item_id" in gen.columns else pl.DataFrame(schema={"item_id": pl.String})
        )
        mine = samples.filter(pl.col("generation_table") == table).select("sample_id", "item_id")
        for sid, item in mine.join(have, on="item_id", how="anti").iter_rows():
            report.add("orphan_generation_row", f"{sid}: {table}/{item}")

    # raw images: exist in the table, file exists, sha256 unchanged
    raw = _read(read, "raw_images", report)
    if raw is not None:
        cols = [c for c in ("image_id", "path", "sha256", "model_image_path") if c in raw.columns]
        recorded: dict[str, dict[str, Any]] = {r["image_id"]: r for r in raw.select(cols).iter_rows(named=True)}
        for image_id in sorted(set(samples["image_id"].to_list())):
            progress.tick()
            rec = recorded.get(image_id)
            if rec is None:
                report.add("orphan_image", image_id)
                continue
            report.images_checked += 1
            if not rec["path"] or not Path(rec["path"]).exists():
                report.add("image_path_missing", f"{image_id}: {rec['path']}")
            elif verify_sha256 and hasher(rec["path"]) != rec["sha256"]:
                report.add("image_sha256_changed", f"{image_id}: {rec['path']}")
        paths = samples.select("image_id", "image_path").unique()
        for image_id, path in paths.iter_rows():
            rec = recorded.get(image_id)
            model_image = (rec or {}).get("model_image_path") or (rec or {}).get("path")
            if rec is not None and path != model_image:
                report.add("sample_path_differs_from_raw_images", f"{image_id}: {path} != {model_image}")
            elif rec is not None and path != rec["path"] and not Path(path).exists():  # a normalised image, gone
                report.add("model_image_missing", f"{image_id}: {path}")

    # attribute rows and the annotations they cite
    with_hash = samples.filter(pl.col("attribute_row_hash").is_not_null())
    if with_hash.height:
        attrs = _read(read, "image_attributes", report)
        anns = _read(read, "raw_annotations", report)
        anns = read_annotations(read) if anns is not None else None  # + the experts' boxes documents cite
        if attrs is not None:
            docs = {
                (r["image_id"], r["attribute_row_hash"]): r["document"]
                for r in attrs.select("image_id", "attribute_row_hash", "document").iter_rows(named=True)
            }
            ann_ids = set(anns["annotation_id"].to_list()) if anns is not None else None
            checked_docs: set[tuple[str, str]] = set()
            for sid, image_id, h in with_hash.select("sample_id", "image_id", "attribute_row_hash").iter_rows():
                key = (image_id, h)
                if key not in docs:
                    report.add("orphan_attribute_row", f"{sid}: {image_id}/{h}")
                    continue
                if ann_ids is None or key in checked_docs:
                    continue
                checked_docs.add(key)
                doc = docs[key]
                doc = json.loads(doc) if isinstance(doc, str) else doc
                for aid in all_annotation_ids(doc):
                    if aid not in ann_ids:
                        report.add("orphan_annotation", f"{image_id}: {aid}")
    return report


def report_markdown(report: IntegrityReport) -> str:
    lines = [
        f"{report.samples} samples, {report.images_checked} images re-hashed",
        "",
        "| problem | count | examples |",
        "|---|---|---|",
    ]
    for kind, n in sorted(report.problems.items()):
        lines.append(f"| {kind} | {n} | {'; '.join(report.examples.get(kind, []))[:300]} |")
    for t in report.missing_tables:
        lines.append(f"| table not materialised | {t} | |")
    if len(lines) == 4:
        lines.append("| none | 0 | |")
    return "\n".join(lines)
