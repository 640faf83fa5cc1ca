"""The evaluation stage's tables: upstream rows in, benchmark rows out (polars), no Dagster.

- `report_texts` / `generated_closed`: the held-out images' generated reports and closed VQA from the
  `reports` / `vqa_items` tables (accepted rows only);
- `items_frame` / `items_from_frame`: benchmark items <-> the `benchmark_items` table;
- `holdout_pool_frame`: every held-out image and whether it is in the benchmark, and why not.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path

import polars as pl

from mmoral_pipeline.evaluation.build import GeneratedClosed, GeneratedReport
from mmoral_pipeline.evaluation.items import ClosedItem, OpenItem

ITEM_COLUMNS = {
    "kind": pl.String, "index": pl.String, "question": pl.String, "option1": pl.String, "option2": pl.String,
    "option3": pl.String, "option4": pl.String, "answer": pl.String, "category": pl.String, "image_id": pl.String,
    "file_name": pl.String, "type": pl.String, "open_kind": pl.String, "source": pl.String, "image_path": pl.String,
}
POOL_COLUMNS = {"image_id": pl.String, "source": pl.String, "in_benchmark": pl.Boolean, "status": pl.String,
                "closed_items": pl.Int64, "open_items": pl.Int64}
IN_BENCHMARK, RESERVE, NO_ITEMS = "benchmark", "reserve: over the image cap", "no item passed validation"


def _accepted(df: pl.DataFrame | None) -> pl.DataFrame | None:
    if df is None or df.height == 0 or "image_id" not in df.columns:
        return None
    return df.filter(pl.col("rejected_by").is_null()) if "rejected_by" in df.columns else df


def report_texts(reports: pl.DataFrame | None, image_ids: Iterable[str] | None = None) -> dict[str, GeneratedReport]:
    """image_id -> its generated report (the `reports` table keeps the final, audited text in `answer`); one per
    image, the first by item id when there are several."""
    rows = _accepted(reports)
    if rows is None or "answer" not in rows.columns:
        return {}
    if image_ids is not None:
        rows = rows.filter(pl.col("image_id").is_in(sorted(set(image_ids))))
    out: dict[str, GeneratedReport] = {}
    for r in rows.sort("item_id").iter_rows(named=True):
        if r["answer"] and str(r["answer"]).strip() and r["image_id"] not in out:
            out[r["image_id"]] = GeneratedReport(item_id=str(r["item_id"]), text=str(r["answer"]))
    return out


def generated_closed(vqa_items: pl.DataFrame | None, image_ids: Iterable[str]) -> dict[str, list[GeneratedClosed]]:
    """The held-out images' accepted generated closed VQA (report-based), by image id: the benchmark draws from them."""
    rows = _accepted(vqa_items)
    if rows is None:
        return {}
    rows = rows.filter((pl.col("task_type") == "vqa_closed") & pl.col("image_id").is_in(sorted(set(image_ids))))
    out: dict[str, list[GeneratedClosed]] = {}
    for r in rows.iter_rows(named=True):
        out.setdefault(r["image_id"], []).append(GeneratedClosed(
            item_id=r["item_id"], question=r["question"], options=list(r["options"] or []), answer_text=r["answer"],
            dimensions=list(r["dimensions"] or [])))
    return out


def pick_images(image_ids: Iterable[str], max_images: int) -> tuple[list[str], list[str]]:
    """(benchmark, reserve): `max_images` of the held-out images ranked by a hash of their id (a stable sample that
    no naming order decides), the rest in reserve."""
    ranked = sorted(set(image_ids), key=lambda i: (hashlib.sha256(i.encode()).hexdigest(), i))
    return sorted(ranked[:max_images]), sorted(ranked[max_images:])


def encode_images(paths: Mapping[str, str], max_side: int | None) -> dict[str, str]:
    from mmoral_pipeline.evaluation.tsv import encode_image_jpeg

    return {i: encode_image_jpeg(p, max_side=max_side) for i, p in paths.items() if p and Path(p).exists()}


def items_frame(closed: list[ClosedItem], open_: list[OpenItem], paths: Mapping[str, str]) -> pl.DataFrame:
    rows = [
        {
            "kind": "closed",
            "index": it.index,
            "question": it.question,
            **{f"option{k + 1}": o for k, o in enumerate(it.options)},
            "answer": it.answer,
            "category": it.category,
            "image_id": it.image_id,
            "file_name": it.file_name,
            "type": it.type,
            "open_kind": None,
            "source": it.source,
            "image_path": paths.get(it.image_id),
        }
        for it in closed
    ]
    rows += [
        {
            "kind": "open",
            "index": it.index,
            "question": it.question,
            "option1": None,
            "option2": None,
            "option3": None,
            "option4": None,
            "answer": it.answer,
            "category": it.category,
            "image_id": it.image_id,
            "file_name": it.file_name,
            "type": "open",
            "open_kind": it.kind,
            "source": it.source,
            "image_path": paths.get(it.image_id),
        }
        for it in open_
    ]
    return pl.DataFrame(rows, schema=ITEM_COLUMNS)


def items_from_frame(
    df: pl.DataFrame, with_images: bool = True, max_side: int | None = None
) -> tuple[list[ClosedItem], list[OpenItem]]:
    paths = {r["image_id"]: r["image_path"] for r in df.select("image_id", "image_path").unique().iter_rows(named=True)}
    images = encode_images(paths, max_side) if with_images else {}
    closed, open_ = [], []
    for r in df.iter_rows(named=True):
        if r["kind"] == "closed":
            closed.append(
                ClosedItem(
                    index=r["index"],
                    question=r["question"],
                    options=[r[f"option{k}"] for k in range(1, 5)],
                    answer=r["answer"],
                    category=r["category"],
                    image_id=r["image_id"],
                    file_name=r["file_name"] or "",
                    image=images.get(r["image_id"], ""),
                    source=r["source"] or "",
                )
            )
        else:
            open_.append(
                OpenItem(
                    index=r["index"],
                    question=r["question"],
                    answer=r["answer"],
                    category=r["category"],
                    image_id=r["image_id"],
                    file_name=r["file_name"] or "",
                    image=images.get(r["image_id"], ""),
                    kind=r["open_kind"] or "",
                    source=r["source"] or "",
                )
            )
    return closed, open_


def holdout_pool_frame(held: Mapping[str, str], chosen: Iterable[str], closed: list[ClosedItem],
                       open_: list[OpenItem]) -> pl.DataFrame:
    """One row per held-out image (image id -> source): in the benchmark, in reserve (over the cap), or chosen but
    left without any valid item."""
    chosen = set(chosen)
    n_closed: dict[str, int] = {}
    n_open: dict[str, int] = {}
    for it in closed:
        n_closed[it.image_id] = n_closed.get(it.image_id, 0) + 1
    for it in open_:
        n_open[it.image_id] = n_open.get(it.image_id, 0) + 1
    rows = []
    for image_id in sorted(held):
        c, o = n_closed.get(image_id, 0), n_open.get(image_id, 0)
        status = RESERVE if image_id not in chosen else (IN_BENCHMARK if c or o else NO_ITEMS)
        rows.append({"image_id": image_id, "source": held[image_id], "in_benchmark": status == IN_BENCHMARK,
                     "status": status, "closed_items": c, "open_items": o})
    return pl.DataFrame(rows, schema=POOL_COLUMNS)
