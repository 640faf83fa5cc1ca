"""Visual experts in the graph: train one (`expert_model`, group `experts`) and let experts label a batch's
X-rays (`expert_annotations` / `expert_coverage`, group `ingest`: the batch's boxes, its own and its experts').

The rules and models live in `mmoral_pipeline/experts/` (no Dagster there). Training runs out of
process through Dagster Pipes (`python -m mmoral_pipeline.experts.run`), so the orchestrator never
imports torch; inference runs in the step (torch or ONNX Runtime imported there, not at load time).
"""


import os
import sys
import uuid
import warnings
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import polars as pl
from pydantic import Field

from mmoral_pipeline.batches import batch_for_partition
from mmoral_pipeline.config import TRAINED_EXPERT
from mmoral_pipeline.defs.freshness import INPUTS_KEY
from mmoral_pipeline.defs.ingest import _thumbnail_markdown  # the same thumbnails as raw_annotations'
from mmoral_pipeline.defs.metadata import counts_markdown, table_metadata
from mmoral_pipeline.defs.partitions import batch_partitions
from mmoral_pipeline.defs.resources import SourcesResource
from mmoral_pipeline.experts.frames import EXPERT_ANNOTATIONS, EXPERT_COVERAGE
from mmoral_pipeline.experts.run import CHECK_NAME, EXTRA_KEY
from mmoral_pipeline.experts.settings import KEEP_SCORE, ExpertTrainSettings, default_expert_root
from mmoral_pipeline.experts.spec import read_manifest

# Dagster 1.13's Pipes client calls a preview API of its own on every run: noise in the run log.
warnings.filterwarnings("ignore", message=".*PipesMessageReader.expected_writer_count", category=dg.PreviewWarning)

TRAINER_MODULE = "mmoral_pipeline.experts.run"
PIPES_CLIENT_KEY = "expert_pipes_client"
EXPERT_MODEL = dg.AssetKey("expert_model")
ANNOTATIONS_CODE_VERSION = "expert-annotations-v1"


class ExpertModelConfig(dg.Config):
    """Launchpad knobs of one expert training run (mirrors `mmoral_pipeline.experts.settings.ExpertTrainSettings`)."""

    sources: list[str] = Field(
        default=[], description="train on these sources only; empty: every source with annotations"
    )
    name: str = "mmoral-expert"
    arch: str = Field(default="fasterrcnn_tiny", description="fasterrcnn_tiny | fcos_tiny | fasterrcnn_mobilenet_v3")
    image_size: int = 512
    width: int = 16
    fpn_channels: int = 48
    coord_channels: bool = True
    categories: list[str] | None = Field(default=None, description="train only these unified categories; None: all")
    min_instances: int = 8
    epochs: float = 8.0
    max_steps: int = -1
    max_train_seconds: float | None = None
    batch_size: int = 4
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 20
    hflip: bool = True
    seed: int = 0
    device: str = Field(default="auto", description="'auto' (CUDA when there is one), 'cpu', 'cuda'")
    threads: int | None = Field(default=1, description="torch CPU threads; None: every core (see ExpertTrainSettings)")
    cover_min_ap50: float = 0.5
    map50_floor: float = 0.3
    export_onnx: bool = True

    def to_settings(self, run_name: str) -> ExpertTrainSettings:
        fields = self.model_dump(exclude={"sources"})
        return ExpertTrainSettings.model_validate(
            {**fields, "run_name": run_name, "output_root": default_expert_root()}
        )


_ALL = {"allow_missing_partitions": True}


@dg.asset(
    key=EXPERT_MODEL,
    group_name="experts",
    kinds={"pytorch"},
    tags={"mmoral/training": "true"},  # defs.automation: never started by a job, schedule or sensor
    ins={
        "raw_images": dg.AssetIn("raw_images", metadata=_ALL),
        "raw_annotations": dg.AssetIn("raw_annotations", metadata=_ALL),
    },
    code_version="expert-model-v1",
    check_specs=[
        dg.AssetCheckSpec(
            CHECK_NAME,
            asset=EXPERT_MODEL,
            blocking=True,
            description="The expert's validation mAP@0.5 reaches the floor (config map50_floor) "
            "and its losses are finite; "
            "expert_annotations refuses a checkpoint that failed it.",
        )
    ],
)
def expert_model(
    context: dg.AssetExecutionContext,
    config: ExpertModelConfig,
    expert_pipes_client: dg.PipesSubprocessClient,
    raw_images: pl.DataFrame,
    raw_annotations: pl.DataFrame,
) -> dg.MaterializeResult:
    """A visual expert (torchvision detector, trained from scratch, no downloaded weights) on the annotated sources.

    Images are split as the dataset splits them (train / val / benchmark hold-out, by image); the expert learns
    one class per FDI tooth and one per finding, is scored on the validation images with COCO metrics
    (pycocotools) and assesses only the categories it detects well enough (`cover_min_ap50`). Checkpoints:
    `$MMORAL_HOME/expert_model/<run>/` (model.pt, model.onnx, expert.json, metrics.json), newest at `latest`.
    Runs out of process through Dagster Pipes, on the GPU when there is one.
    """
    annotated = set(raw_annotations["source"].unique().to_list()) if raw_annotations.height else set()
    wanted = set(config.sources) or annotated
    unknown = sorted(set(config.sources) - set(raw_images["source"].unique().to_list()))
    if unknown:
        raise dg.Failure(f"expert_model: sources {unknown} have no images in raw_images")
    images = raw_images.filter(pl.col("source").is_in(sorted(wanted & annotated)))
    annotations = raw_annotations.filter(pl.col("image_id").is_in(images["image_id"].implode()))
    if images.height == 0:
        raise dg.Failure("expert_model: no annotated images to train on (materialise raw_annotations first)")
    run_name = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + (context.run_id or uuid.uuid4().hex)[:8]
    settings = config.to_settings(run_name)
    run_dir = Path(settings.output_root) / run_name
    run_dir.mkdir(parents=True, exist_ok=True)
    images_path, annotations_path = run_dir / "train_images.parquet", run_dir / "train_annotations.parquet"
    images.write_parquet(images_path)  # what this run learnt from, kept beside its weights
    annotations.write_parquet(annotations_path)
    env = {"PYTHONUNBUFFERED": "1"}
    for name in ("MMORAL_HOME", "OMP_NUM_THREADS"):
        if os.environ.get(name):
            env[name] = os.environ[name]
    context.log.info(f"training {settings.arch} on {images.height} images of {sorted(wanted & annotated)} -> {run_dir}")
    result = expert_pipes_client.run(
        command=[sys.executable, "-m", TRAINER_MODULE],
        context=context,
        extras={EXTRA_KEY: {"settings": settings.model_dump(mode="json"), "images": str(images_path),
                            "annotations": str(annotations_path)}},
        env=env,
    ).get_materialize_result()
    return result


class ExpertAnnotationsConfig(dg.Config):
    """How the experts run over a batch."""

    backend: str = Field(default="auto", description="auto | torchvision | onnxruntime")
    device: str = Field(default="auto", description="'auto' (CUDA when there is one), 'cpu', 'cuda'")
    batch_size: int = 8
    keep_score: float = Field(default=KEEP_SCORE, description="keep boxes scoring above this (MMOral: 0.3)")


def trained_expert_refusal(instance: dg.DagsterInstance, version: str) -> str | None:
    """Why the trained checkpoint may not label data (None: it may): its `expert_map_floor` check must have
    passed on the materialisation that wrote it."""
    event = instance.get_latest_materialization_event(EXPERT_MODEL)
    if event is None or event.asset_materialization is None:
        return "expert_model was never materialised on this instance"
    md = event.asset_materialization.metadata
    latest_version = getattr(md.get("expert_version"), "value", None)
    if latest_version != version:
        return (
            f"the checkpoint at expert_model/latest ({version}) is not the one expert_model last materialised "
            f"({latest_version})"
        )
    record = instance.get_latest_asset_check_evaluation_record(dg.AssetCheckKey(EXPERT_MODEL, CHECK_NAME))
    evaluation = record.evaluation if record is not None else None
    if evaluation is None or record.run_id != event.run_id:
        return f"{CHECK_NAME} has no result for the latest expert_model materialisation"
    if not evaluation.passed:
        meta = {k: getattr(v, "value", v) for k, v in evaluation.metadata.items()}
        return f"{CHECK_NAME} failed (mAP@0.5 {meta.get('map50')} < floor {meta.get('floor')})"
    return None


def expert_inputs(sources_file, partition_key: str, files: str | None = None) -> str:
    """What an expert run saw from outside the graph (recorded as `mmoral/inputs`): the batch's files and
    source settings (its `experts:` list included) and every checkpoint file (mtime, size). A new
    checkpoint at the same path makes `mmoral materialize` run the experts again; nothing else does."""
    from mmoral_pipeline.defs.automation import batch_fingerprints, folder_stats
    from mmoral_pipeline.defs.freshness import fingerprint

    if files is None:
        files = batch_fingerprints(sources_file).get(partition_key, "")
    spec = batch_for_partition(sources_file, partition_key).source
    checkpoints = {
        str(path): sorted(folder_stats(path.resolve()).items()) if path.exists() else None
        for path in spec.expert_paths(Path(sources_file.base_dir))
    }
    return fingerprint({"files": files, "checkpoints": checkpoints})


@dg.multi_asset(
    outs={
        "expert_annotations": dg.AssetOut(
            description="One row per box an expert kept (score > keep_score) in a category it assesses for the batch: "
            "image_id, category, tooth (FDI), box, score, expert, expert_version.",
            kinds={"parquet", "polars"},
            code_version=ANNOTATIONS_CODE_VERSION,
        ),
        "expert_coverage": dg.AssetOut(
            description="One row per (image, expert): the categories the expert assessed on the image "
            "(its coverage) and "
            "those it deferred to the source's human labels.",
            kinds={"parquet", "polars"},
            code_version=ANNOTATIONS_CODE_VERSION,
        ),
    },
    ins={"raw_images": dg.AssetIn("raw_images")},
    deps=[EXPERT_MODEL],
    partitions_def=batch_partitions,
    group_name="ingest",  # a batch's boxes: its own labels (ingest_batch) and its experts'; `group:ingest` selects both
    check_specs=[
        dg.AssetCheckSpec(
            "experts_ran_on_every_image",
            asset="expert_coverage",
            blocking=True,
            partitions_def=batch_partitions,  # recorded per batch, so the fan-in gate can read it
            description="Every image of the batch has a coverage row from every configured expert.",
        )
    ],
)
def expert_annotations_batch(
    context: dg.AssetExecutionContext,
    config: ExpertAnnotationsConfig,
    sources: SourcesResource,
    raw_images: pl.DataFrame,
):
    """Run the experts named in the source's `experts:` over the batch's images (none configured: empty tables).

    Human labels win: an expert assesses only the categories the source's own labels do not cover.
    """
    sources_file = sources.load()
    spec = batch_for_partition(sources_file, context.partition_key).source
    checkpoints = spec.expert_paths(Path(sources_file.base_dir))
    key = context.partition_key
    inputs = {INPUTS_KEY: expert_inputs(sources_file, key)}
    if not checkpoints:
        empty_a, empty_c = pl.DataFrame(schema=EXPERT_ANNOTATIONS), pl.DataFrame(schema=EXPERT_COVERAGE)
        yield dg.Output(
            empty_a,
            output_name="expert_annotations",
            metadata={**table_metadata(empty_a), **inputs, "experts": "none configured"},
        )
        yield dg.Output(
            empty_c,
            output_name="expert_coverage",
            metadata={**table_metadata(empty_c), **inputs, "experts": "none configured"},
        )
        yield dg.AssetCheckResult(check_name="experts_ran_on_every_image", asset_key="expert_coverage", passed=True,
                                  metadata={"experts": 0, "images": raw_images.height})
        return

    from mmoral_pipeline.experts.annotate import annotate_images, human_covers
    from mmoral_pipeline.experts.load import load_expert

    experts = []
    for entry, path in zip(spec.experts, checkpoints, strict=True):
        if not (path / "expert.json").exists():
            raise dg.Failure(f"source {spec.name!r}: expert {entry!r} -> {path} is not an expert checkpoint folder "
                             + ("(materialise expert_model first)" if entry == TRAINED_EXPERT else ""))
        if entry == TRAINED_EXPERT:
            refusal = trained_expert_refusal(context.instance, read_manifest(path).version)
            if refusal:
                raise dg.Failure(f"source {spec.name!r}: the trained expert may not label data: {refusal}")
        experts.append(load_expert(path, backend=config.backend, device=config.device))  # type: ignore[arg-type]
    human = human_covers(spec)
    run = annotate_images(
        raw_images, experts, [str(p) for p in checkpoints], partition=key, human_covers=human,
        keep_score=config.keep_score, batch_size=config.batch_size,
    )
    stats = [s.as_dict() for s in run.experts]
    total_images = sum(int(s["images"]) for s in stats)
    total_seconds = sum(float(s["seconds"]) for s in stats)
    per_category = Counter(run.annotations["category"].to_list())
    yield dg.Output(
        run.annotations,
        output_name="expert_annotations",
        metadata={
            **table_metadata(run.annotations, max_cell=60),
            **inputs,
            "experts": dg.MetadataValue.json(stats),
            "images_per_s": dg.MetadataValue.float(round(total_images / total_seconds, 2) if total_seconds else 0.0),
            "device": ", ".join(sorted({str(s["device"]) for s in stats})),
            "backend": ", ".join(sorted({str(s["backend"]) for s in stats})),
            "keep_score": dg.MetadataValue.float(config.keep_score),
            "human_covers": dg.MetadataValue.json(sorted(human)),
            "per_category": dg.MetadataValue.md(counts_markdown(per_category)),
            "thumbnails": dg.MetadataValue.md(_thumbnail_markdown(raw_images, run.annotations)),
        },
    )
    yield dg.Output(
        run.coverage,
        output_name="expert_coverage",
        metadata={
            **table_metadata(run.coverage, max_cell=60),
            **inputs,
            "assessed": dg.MetadataValue.json({s["expert"]: s["assessed"] for s in stats}),
        },
    )
    expected = {(i, s.expert) for i in raw_images["image_id"].to_list() for s in run.experts}
    have = set(zip(run.coverage["image_id"].to_list(), run.coverage["expert"].to_list(), strict=True))
    missing = sorted(expected - have)
    yield dg.AssetCheckResult(
        check_name="experts_ran_on_every_image",
        asset_key="expert_coverage",
        passed=not missing and run.coverage.height == len(expected),
        metadata={"images": raw_images.height, "experts": len(run.experts), "coverage_rows": run.coverage.height,
                  "missing": dg.MetadataValue.json([list(m) for m in missing[:10]])},
    )


experts_assets = [expert_model, expert_annotations_batch]
experts_resources = {PIPES_CLIENT_KEY: dg.PipesSubprocessClient()}
experts_defs = dg.Definitions(assets=experts_assets, resources=experts_resources)
