"""instruction_samples -> files other tools read: LLaMA-Factory sharegpt, TRL JSONL / HF dataset, bench TSVs.

All three are built from the same `messages` column, so they agree sample by sample (tested).

Every export folder travels on its own (tar it, copy it to the training machine, point the tool at it):
its X-rays are in `<folder>/images/<sha256[:2]>/<sha256><suffix>` (content-addressed by the source
file's sha256: one file per X-ray, no clash between sources that reuse file names; hard-linked
when the filesystem allows, else copied; files no longer referenced are removed), and every
record names its image by that path relative to the folder.

- LLaMA-Factory: a JSON list of `{"sample_id", "messages": [{"role", "content": str}], "images": [rel path]}`
  with one `<image>` placeholder at the start of the first user turn, plus `dataset_info.json`
  (`formatting: sharegpt`, `columns: {messages, images}`, role/content tags). LLaMA-Factory joins
  relative image paths to `media_dir`, which defaults to `dataset_dir`: this folder.
- TRL conversational: `{"sample_id", "task_type", "images": [rel path], "messages": [{"role", "content":
  [{"type": "image"}, {"type": "text", "text"}]}]}` per line; the same rows as a `datasets` DatasetDict
  (`hf_dataset/`, images relative to the folder above it). `training.data.read_jsonl` resolves them.
- Benchmark: the held-out images' closed and open questions as MMOral-OPG-Bench TSVs, written with
  the evaluation package's writer (one TSV format in the project), images embedded as base64 JPEG.

The writers take a DataFrame or a LazyFrame and stream: a split is read and written a chunk of
`EXPORT_CHUNK_ROWS` at a time, so 1.3M conversations never sit in memory at once.
"""

from __future__ import annotations

import contextlib
import functools
import json
import shutil
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import polars as pl

from mmoral_pipeline import progress
from mmoral_pipeline.dataset.assemble import CLOSED_TASKS, OPEN_BENCH_TASKS

IMAGE_PLACEHOLDER = "<image>"
LLAMAFACTORY_NAMES = {"train": "mmoral_train", "val": "mmoral_val"}
EXPORT_VERSION = "export-v1"
EXPORT_CHUNK_ROWS = 20_000
EXPORT_COLUMNS = ("sample_id", "task_type", "messages", "image_path", "image_sha256")
TRAIN_VAL = ("train", "val")


def split_chunks(
    samples: pl.DataFrame | pl.LazyFrame, split: str, columns: Iterable[str] = EXPORT_COLUMNS
) -> Iterator[pl.DataFrame]:
    """The rows of one split, in table order, `EXPORT_CHUNK_ROWS` at a time (polars' streaming engine)."""
    lf = samples.lazy().filter(pl.col("split") == split).select(list(columns))
    yield from lf.collect_batches(chunk_size=EXPORT_CHUNK_ROWS)


def _messages(row: Mapping[str, Any]) -> list[dict[str, Any]]:
    m = row["messages"]
    return json.loads(m) if isinstance(m, str) else list(m)


IMAGES_DIR = "images"


@functools.lru_cache(maxsize=65536)
def _sha256_of(path: str) -> str:
    from mmoral_pipeline.sources.base import sha256_file

    return sha256_file(Path(path))


def _image_path(row: Mapping[str, Any]) -> str:
    """The image's path inside an export folder: `images/<sha256[:2]>/<sha256><suffix>` (content-addressed)."""
    source = str(row["image_path"])
    digest = row.get("image_sha256") or _sha256_of(source)
    return f"{IMAGES_DIR}/{digest[:2]}/{digest}{Path(source).suffix.lower()}"


def place_images(samples: pl.DataFrame | pl.LazyFrame, out_dir: str | Path) -> dict[str, int]:
    """Put each distinct image of `samples` once under `out_dir/images/` (hard link, else copy) and remove
    image files no sample references any more; returns counts {images, linked, copied, removed}."""
    import os

    out = Path(out_dir)
    wanted: dict[str, str] = {}  # relative path in the folder -> source file
    for row in samples.lazy().select("image_path", "image_sha256").unique().collect().iter_rows(named=True):
        wanted.setdefault(_image_path(row), str(row["image_path"]))
    counts = {"images": len(wanted), "linked": 0, "copied": 0, "removed": 0}
    for rel, source in sorted(wanted.items()):
        target = out / rel
        if target.exists() and target.stat().st_size == Path(source).stat().st_size:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.unlink(missing_ok=True)
        try:
            os.link(source, tmp)
            counts["linked"] += 1
        except OSError:  # another filesystem, or links not allowed: copy
            shutil.copyfile(source, tmp)
            counts["copied"] += 1
        tmp.replace(target)
    images_dir = out / IMAGES_DIR
    if images_dir.is_dir():
        for f in sorted(images_dir.rglob("*")):
            if f.is_file() and f.relative_to(out).as_posix() not in wanted:
                f.unlink()
                counts["removed"] += 1
    return counts


# ---------------------------------------------------------------- LLaMA-Factory


def to_sharegpt(row: Mapping[str, Any]) -> dict[str, Any]:
    """One sample -> a LLaMA-Factory sharegpt record (text content, `<image>` in the first user turn)."""
    out = []
    for i, m in enumerate(_messages(row)):
        parts = m["content"]
        text = "".join(p.get("text") or "" for p in parts if p.get("type") == "text")
        if i == 0:
            text = IMAGE_PLACEHOLDER + text
        out.append({"role": m["role"], "content": text})
    return {"sample_id": row["sample_id"], "messages": out, "images": [_image_path(row)]}


def dataset_info(files: Mapping[str, str]) -> dict[str, Any]:
    """dataset_info.json entries for the given {dataset name: file name}."""
    return {
        name: {
            "file_name": file_name,
            "formatting": "sharegpt",
            "columns": {"messages": "messages", "images": "images"},
            "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"},
        }
        for name, file_name in files.items()
    }


def write_llamafactory(samples: pl.DataFrame | pl.LazyFrame, out_dir: str | Path) -> dict[str, Any]:
    """Train and val JSON lists + dataset_info.json + their images; returns {files, counts, images}."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    placed = place_images(samples.lazy().filter(pl.col("split").is_in(list(LLAMAFACTORY_NAMES))), out)
    files: dict[str, str] = {}
    counts: dict[str, int] = {}
    for split, name in LLAMAFACTORY_NAMES.items():
        fname = f"{name}.json"
        n = 0
        with _atomic_writer(out / fname) as fh:  # one JSON list, written record by record
            fh.write("[\n")
            for chunk in split_chunks(samples, split):
                for r in chunk.iter_rows(named=True):
                    fh.write((",\n" if n else "") + json.dumps(to_sharegpt(r), ensure_ascii=False))
                    n += 1
                progress.tick(chunk.height)
            fh.write("\n]\n")
        files[name] = fname
        counts[split] = n
    _write_text(out / "dataset_info.json", json.dumps(dataset_info(files), indent=2))
    return {"files": [str(out / f) for f in [*files.values(), "dataset_info.json"]], "counts": counts, "images": placed}


# ---------------------------------------------------------------- TRL


def to_trl(row: Mapping[str, Any]) -> dict[str, Any]:
    """One sample -> the TRL conversational row the training package reads (image as a typed part)."""
    messages = []
    for m in _messages(row):
        content: list[dict[str, Any]] = []
        for p in m["content"]:
            if p.get("type") == "image":
                content.append({"type": "image"})
            else:
                content.append({"type": "text", "text": p.get("text") or ""})
        messages.append({"role": m["role"], "content": content})
    return {
        "sample_id": row["sample_id"],
        "task_type": row["task_type"],
        "images": [_image_path(row)],
        "messages": messages,
    }


def write_trl(samples: pl.DataFrame | pl.LazyFrame, out_dir: str | Path, *, hf_dataset: bool = True) -> dict[str, Any]:
    """train.jsonl / val.jsonl and (optionally) the same rows as a `datasets` DatasetDict on disk."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    placed = place_images(samples.lazy().filter(pl.col("split").is_in(list(TRAIN_VAL))), out)
    arrow_dir = out / ".hf_arrow"  # the rows as Arrow streams, for the HF dataset (removed after)
    if hf_dataset:
        arrow_dir.mkdir(exist_ok=True)
    counts: dict[str, int] = {}
    files = []
    for split in TRAIN_VAL:
        path = out / f"{split}.jsonl"
        n = 0
        with _atomic_writer(path) as fh, _arrow_stream(arrow_dir / f"{split}.arrow" if hf_dataset else None) as arrow:
            for chunk in split_chunks(samples, split):
                rows = [to_trl(r) for r in chunk.iter_rows(named=True)]
                fh.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
                arrow(rows)
                n += len(rows)
                progress.tick(chunk.height)
        counts[split] = n
        files.append(str(path))
    if hf_dataset:
        files.append(
            str(save_hf_dataset({split: arrow_dir / f"{split}.arrow" for split in counts}, out / "hf_dataset"))
        )
        shutil.rmtree(arrow_dir)
    return {"files": files, "counts": counts, "images": placed}


def _trl_schema():
    import pyarrow as pa

    part = pa.struct([("type", pa.string()), ("text", pa.string())])
    return pa.schema(
        [
            ("sample_id", pa.string()),
            ("task_type", pa.string()),
            ("images", pa.list_(pa.string())),
            ("messages", pa.list_(pa.struct([("role", pa.string()), ("content", pa.list_(part))]))),
        ]
    )


@contextlib.contextmanager
def _arrow_stream(path: Path | None) -> Iterator[Any]:
    """A function that appends TRL rows to an Arrow IPC stream file (the format `datasets` memory-maps); no-op without a path."""  # noqa: E501
    if path is None:
        yield lambda rows: None
        return
    import pyarrow as pa

    schema = _trl_schema()
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        yield lambda rows: writer.write_table(pa.Table.from_pylist(rows, schema=schema)) if rows else None


def save_hf_dataset(arrow_files: Mapping[str, Path], path: str | Path) -> Path:
    """TRL rows (Arrow stream files, one per split) as a DatasetDict saved with `save_to_disk`; image paths stay
    relative to the export folder (the parent of `path`).

    The splits are memory-mapped, not loaded: saving a million conversations needs little memory.
    (datasets is imported only here.)
    """
    import datasets

    datasets.disable_progress_bars()  # a progress bar per save is noise in Dagster logs
    dd = datasets.DatasetDict({split: datasets.Dataset.from_file(str(f)) for split, f in arrow_files.items()})
    path = Path(path)
    if path.exists():
        shutil.rmtree(path)
    dd.save_to_disk(str(path))
    return path


# ---------------------------------------------------------------- benchmark TSVs


def bench_items(
    samples: pl.DataFrame, *, image_max_side: int | None = None
) -> tuple[list[Any], list[Any], dict[str, int]]:
    """Held-out samples -> (ClosedItem list, OpenItem list, skipped counts by task).

    Closed: the 4-option tasks; open: open VQA, open location questions and reports ("Report" when
    unlabelled). Dialogues and attribute tasks have no benchmark form and are counted as skipped.
    """
    from mmoral_pipeline.evaluation.items import ClosedItem, OpenItem
    from mmoral_pipeline.evaluation.tsv import encode_image_jpeg

    bench = samples.lazy().filter(pl.col("split") == "bench").sort("image_id", "task_type", "sample_id").collect()
    encoded: dict[str, str] = {}

    def image_b64(row: Mapping[str, Any]) -> str:
        if row["image_id"] not in encoded:
            encoded[row["image_id"]] = encode_image_jpeg(row["image_path"], max_side=image_max_side)
        return encoded[row["image_id"]]

    closed: list[Any] = []
    opened: list[Any] = []
    skipped: Counter[str] = Counter()
    for row in bench.iter_rows(named=True):
        progress.tick()
        task = row["task_type"]
        if task in CLOSED_TASKS:
            closed.append(
                ClosedItem(
                    index=str(len(closed)),
                    image=image_b64(row),
                    question=row["question_stem"],
                    options=list(row["options"]),
                    answer=row["answer_letter"],
                    category=row["category"] or "",
                    image_id=row["image_id"],
                    file_name=row["file_name"] or "",
                    type=task,
                    source=f"sample:{row['sample_id']}",
                )
            )
        elif task in OPEN_BENCH_TASKS:
            category = row["category"] or ("Report" if task == "report" else "")
            opened.append(
                OpenItem(
                    index=str(len(opened)),
                    image=image_b64(row),
                    question=row["question_stem"] or row["question"],
                    answer=row["answer"],
                    category=category,
                    image_id=row["image_id"],
                    file_name=row["file_name"] or "",
                    kind=task,
                    source=f"sample:{row['sample_id']}",
                )
            )
        else:
            skipped[task] += 1
    return closed, opened, dict(skipped)


def write_bench_tsvs(
    samples: pl.DataFrame, out_dir: str | Path, *, image_max_side: int | None = None
) -> dict[str, Any]:
    from mmoral_pipeline.evaluation.tsv import write_closed_tsv, write_open_tsv

    out = Path(out_dir)
    closed, opened, skipped = bench_items(samples, image_max_side=image_max_side)
    closed_path = write_closed_tsv(closed, out / "closed_ended.tsv")
    open_path = write_open_tsv(opened, out / "open_ended.tsv")
    return {
        "files": [str(closed_path), str(open_path)],
        "counts": {"closed": len(closed), "open": len(opened)},
        "skipped": skipped,
        "images": len({i.image_id for i in [*closed, *opened]}),
    }


# ---------------------------------------------------------------- helpers


def _write_text(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so a reader never sees half a file."""
    with _atomic_writer(path) as fh:
        fh.write(text)


@contextlib.contextmanager
def _atomic_writer(path: Path) -> Iterator[IO[str]]:
    """A text file written under a temporary name and renamed when complete (a reader never sees half a file)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        yield fh
    tmp.replace(path)


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def conversation_of(record: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(role, text) per turn of a sharegpt or TRL record, `<image>` removed: the comparable content."""
    out = []
    for m in record["messages"]:
        c = m["content"]
        text = c if isinstance(c, str) else "".join((p.get("text") or "") for p in c if p.get("type") == "text")
        out.append((m["role"], text.replace(IMAGE_PLACEHOLDER, "")))
    return out


def exported_ids(records: Iterable[Mapping[str, Any]]) -> list[str]:
    return [r["sample_id"] for r in records]
