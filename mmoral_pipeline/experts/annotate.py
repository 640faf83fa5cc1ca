"""Run experts over a batch of images: the `expert_annotations` and `expert_coverage` rows.

Who assesses what, per category: the source's human labels first (the categories it covers), then
the experts in the order the sources file lists them; each category is assessed by one party only.
An expert assesses the categories of its manifest's `covers` (those its validation showed it can
detect); boxes of its other classes are not kept. Boxes are kept above `keep_score` (0.3, as in
MMOral); the attribute rules then apply their per-class thresholds to the scores.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from mmoral_pipeline.config import SourceSpec
from mmoral_pipeline.domain.records import stable_id
from mmoral_pipeline.domain.taxonomy import Category
from mmoral_pipeline.experts.base import Expert, Throughput, predict_in_batches
from mmoral_pipeline.experts.frames import EXPERT_ANNOTATIONS, EXPERT_COVERAGE
from mmoral_pipeline.experts.imageio import model_image_paths
from mmoral_pipeline.experts.settings import KEEP_SCORE


@dataclass
class ExpertRunStats:
    expert: str
    version: str
    checkpoint: str
    assessed: list[str]
    deferred: list[str]
    throughput: Throughput
    boxes_predicted: int = 0
    boxes_kept: int = 0
    below_keep_score: int = 0
    not_assessed: int = 0  # boxes of a class outside the categories it assesses here

    def as_dict(self) -> dict[str, Any]:
        return {
            "expert": self.expert, "version": self.version, "checkpoint": self.checkpoint, "assessed": self.assessed,
            "deferred": self.deferred, "boxes_predicted": self.boxes_predicted, "boxes_kept": self.boxes_kept,
            "below_keep_score": self.below_keep_score, "not_assessed": self.not_assessed, **self.throughput.as_dict(),
        }


@dataclass
class AnnotationRun:
    annotations: pl.DataFrame
    coverage: pl.DataFrame
    experts: list[ExpertRunStats] = field(default_factory=list)


def human_covers(spec: SourceSpec) -> set[str]:
    """The categories a source's own labels cover: none for a folder of images, else every category
    (a labelled source assesses everything unless it says otherwise)."""
    if spec.format == "images":
        return set()
    return {c.value for c in Category}


def assignments(
    human_covers: Iterable[str], expert_covers: Sequence[Sequence[str]]
) -> list[tuple[list[str], list[str]]]:
    """Per expert: (categories it assesses, its categories that someone earlier in line already covers)."""
    taken = {Category(c).value for c in human_covers}
    out = []
    for covers in expert_covers:
        mine = [c for c in covers if c not in taken]
        out.append((mine, [c for c in covers if c in taken]))
        taken.update(mine)
    return out


def annotation_id(version: str, image_id: str, label: str, box: Sequence[float]) -> str:
    return "x" + stable_id("expert", version, image_id, label, *(round(v, 1) for v in box), length=15)


def annotate_images(
    images: pl.DataFrame,
    experts: Sequence[Expert],
    checkpoints: Sequence[str],
    *,
    partition: str,
    human_covers: Iterable[str] = (),
    keep_score: float = KEEP_SCORE,
    batch_size: int = 8,
) -> AnnotationRun:
    """`images`: raw_images rows of one batch; `experts` and their `checkpoints` (folders) in priority order.

    The human labels' coverage is the image's own `covers` cell where the frame has one, else
    `human_covers` (the source's): per image, an expert assesses the categories nobody before it covers.
    """
    paths = model_image_paths(images)
    ids = images["image_id"].to_list()
    sources = images["source"].to_list()
    default = frozenset(Category(c).value for c in human_covers)
    own = images["covers"].to_list() if "covers" in images.columns else [None] * images.height
    every = frozenset(c.value for c in Category)
    human = [
        default if c is None and "covers" not in images.columns else every if c is None else frozenset(c) for c in own
    ]
    plans = {h: assignments(h, [e.manifest.covers for e in experts]) for h in set(human)}
    rows: list[dict[str, Any]] = []
    coverage: list[dict[str, Any]] = []
    stats: list[ExpertRunStats] = []
    for k, (expert, checkpoint) in enumerate(zip(experts, checkpoints, strict=True)):
        m = expert.manifest
        needed = [i for i, h in enumerate(human) if plans[h][k][0]]  # images where it assesses anything
        run = predict_in_batches(expert, [paths[i] for i in needed], batch_size) if needed else None
        found_by_image = dict(zip(needed, run.detections, strict=True)) if run else {}
        assessed_any = sorted({c for h in set(human) for c in plans[h][k][0]})
        deferred_any = sorted({c for h in set(human) for c in plans[h][k][1]})
        st = ExpertRunStats(m.name, m.version, str(checkpoint), assessed_any, deferred_any,
                            run.throughput if run else Throughput(device=expert.device, backend=expert.backend))
        for i, (image_id, source) in enumerate(zip(ids, sources, strict=True)):
            assessed, deferred = plans[human[i]][k]
            wanted = set(assessed)
            found = found_by_image.get(i, [])
            kept = 0
            for d in found:
                if d.category not in wanted:
                    st.not_assessed += 1
                    continue
                if not d.score > keep_score:
                    st.below_keep_score += 1
                    continue
                kept += 1
                box = [round(v, 2) for v in d.box]
                rows.append({
                    "annotation_id": annotation_id(m.version, image_id, d.label, box), "image_id": image_id,
                    "source": source, "partition": partition, "category": d.category, "tooth": d.tooth, "box": box,
                    "score": round(d.score, 4), "label": d.label, "expert": m.name, "expert_version": m.version,
                    "checkpoint": str(checkpoint),
                })
            st.boxes_predicted += len(found)
            st.boxes_kept += kept
            coverage.append({
                "image_id": image_id, "source": source, "partition": partition, "expert": m.name,
                "expert_version": m.version, "assessed": assessed, "deferred": deferred,
                "boxes_predicted": len(found), "boxes_kept": kept,
            })
        stats.append(st)
    ann = pl.DataFrame(rows, schema=EXPERT_ANNOTATIONS) if rows else pl.DataFrame(schema=EXPERT_ANNOTATIONS)
    cov = pl.DataFrame(coverage, schema=EXPERT_COVERAGE) if coverage else pl.DataFrame(schema=EXPERT_COVERAGE)
    return AnnotationRun(ann, cov, stats)
