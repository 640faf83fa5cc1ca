"""A small, complete upstream world for the dataset tests, written the way the IO manager writes it.

Images are tiny PNGs on disk; raw_annotations, image_attributes / tooth_attributes (built with the
attributes package's own frame builder), location_captions and the generation tables follow the
contracts in the contributor brief (InstructionItem rows for generation). Each image gets one row
of every task type, plus an exact duplicate, a near duplicate and an invalid row.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
from PIL import Image

from mmoral_pipeline.attributes.frames import attribute_frames
from mmoral_pipeline.domain.attributes import Condition, ImageAttributes, JawAttributes, ToothAttributes
from mmoral_pipeline.generation.rows import InstructionItem, to_frame
from mmoral_pipeline.tables import RAW_ANNOTATIONS, RAW_IMAGES

SOURCES = {"srcA": 8, "srcB": 6}
W, H = 160, 80
TEETH = {36: (100.0, 45.0, 118.0, 70.0), 11: (70.0, 10.0, 80.0, 35.0), 48: (130.0, 45.0, 150.0, 70.0)}


@dataclass
class World:
    home: Path
    tables: dict[str, pl.DataFrame] = field(default_factory=dict)

    def write(self) -> None:
        """Every table as `$MMORAL_HOME/<asset>/<partition>.parquet`, one file per partition."""
        for name, frame in self.tables.items():
            folder = self.home / name
            folder.mkdir(parents=True, exist_ok=True)
            for (part,), sub in frame.group_by("partition"):
                sub.write_parquet(folder / f"{part}.parquet")

    def read(self, name: str) -> pl.DataFrame | None:
        return self.tables.get(name)


def image_ids() -> list[tuple[str, str]]:
    return [(f"{src}-img{i:02d}", src) for src, n in SOURCES.items() for i in range(n)]


def _png(path: Path, seed: int) -> None:
    img = Image.new("L", (W, H), color=30 + seed * 7 % 60)
    for tid, box in TEETH.items():
        img.paste(180 + tid % 50, tuple(int(v) for v in box))
    img.save(path)


def _ann(aid: str, image_id: str, src: str, category: str, source_category: str, fdi: int | None, box) -> dict:
    return {
        "annotation_id": aid,
        "image_id": image_id,
        "source": src,
        "partition": src,
        "source_file": f"{src}/annotations.json",
        "record": f"annotations[{aid}]",
        "source_category": source_category,
        "category": category,
        "lesion_type": None,
        "fdi": fdi,
        "box": list(box),
        "polygon": None,
        "score": 0.9,
        "extra": None,
    }


def item(image_id: str, src: str, task: str, n: int, **kw) -> dict:
    """One generation row, validated by the generation package's own `InstructionItem`."""
    row = {
        "item_id": f"{task}-{image_id}-{n}", "image_id": image_id, "partition": src, "task_type": task,
        "question": "", "answer": "", "dimensions": ["Teeth"], "attribute_row_hash": "none", "prompt_template_id": task,
        "prompt_version": "v-abc123", "backend": "offline", "model": "offline-rules-v1",
        "params": json.dumps({"temperature": 0.7, "seed": n}), "request_hash": f"req-{task}-{image_id}-{n}",
        "cache_hit": n % 2 == 0, "raw_response": f"RAW<{task} {image_id} {n}>", "run_id": "run-1",
        "validators_passed": ["schema", "fdi"], "extra": json.dumps({"usage": {"prompt_tokens": 10 + n}}),
    }
    row.update(kw)
    return InstructionItem.model_validate(row).model_dump()


def frame(rows: list[dict]) -> pl.DataFrame:
    return to_frame(rows)


def build_world(tmp: Path) -> World:
    raw_dir = tmp / "raw"
    raw_dir.mkdir(parents=True, exist_ok=True)
    world = World(home=tmp / "home")
    images, anns, docs, captions = [], [], [], []
    gen: dict[str, list[dict]] = {"reports": [], "vqa_items": [], "dialogues": [], "attribute_tasks": []}
    for k, (image_id, src) in enumerate(image_ids()):
        path = raw_dir / f"{image_id}.png"
        _png(path, k)
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        images.append({"image_id": image_id, "source": src, "partition": src, "path": str(path), "file_name": path.name,
                       "sha256": sha, "width": W, "height": H, "mode": "L", "bytes": path.stat().st_size})
        teeth = []
        for tid, box in TEETH.items():
            aid = f"{image_id}-t{tid}"
            anns.append(_ann(aid, image_id, src, "tooth", f"Tooth {tid}", tid, box))
            conds = []
            if tid == 36:
                cid = f"{image_id}-caries36"
                cbox = (104.0, 46.0, 112.0, 54.0)
                anns.append(_ann(cid, image_id, src, "caries", "Caries", None, cbox))
                conds.append(Condition(category="caries", bbox=list(cbox), score=0.85, annotation_ids=[cid]))
            teeth.append(
                ToothAttributes(
                    tooth_id=tid,
                    quadrant=tid // 10,
                    is_wisdom=tid % 10 == 8,
                    side="lower left" if tid < 40 else "lower right",
                    bbox=list(box),
                    center=[(box[0] + box[2]) / 2, (box[1] + box[3]) / 2],
                    conditions=conds,
                    annotation_ids=[aid],
                )
            )
        bid = f"{image_id}-boneloss"
        bbox = (10.0, 40.0, 60.0, 60.0)
        anns.append(_ann(bid, image_id, src, "bone_loss", "Bone Loss", None, bbox))
        doc = ImageAttributes(
            image_id=image_id,
            file_name=path.name,
            width=W,
            height=H,
            teeth=teeth,
            jaw=JawAttributes(
                bone_loss=[Condition(category="bone_loss", bbox=list(bbox), region="lower", annotation_ids=[bid])]
            ),
        )
        docs.append(doc)
        h = doc.content_hash()
        captions.append(
            {
                "image_id": image_id,
                "partition": src,
                "attribute_row_hash": h,
                "caption": f"Teeth: {{'box_2d': [100, 45, 118, 70], 'tooth_id': '36'}} caries on 36 ({image_id})",
                "caption_version": "caption-test",
            }
        )
        common = {"attribute_row_hash": h}
        gen["reports"].append(
            item(
                image_id,
                src,
                "report",
                0,
                question="Write the report.",
                answer=f"1) Teeth: 3 teeth. 2) Caries on tooth 36. 3) Bone loss in the lower jaw. ({image_id})",
                dimensions=["Report"],
                **common,
            )
        )
        gen["vqa_items"] += [
            item(
                image_id,
                src,
                "vqa_closed",
                1,
                question=f"Which tooth has caries? ({image_id})",
                options=["Tooth 36", "Tooth 11", "Tooth 48", "None of the above"],
                answer_letter="A",
                answer="Tooth 36",
                dimensions=["Teeth", "Patho"],
                **common,
            ),
            item(
                image_id,
                src,
                "vqa_open",
                2,
                question=f"Describe the bone level. ({image_id})",
                answer="There is bone loss in the lower jaw.",
                dimensions=["Jaw"],
                **common,
            ),
            item(
                image_id,
                src,
                "loc_closed",
                3,
                question=f"Which tooth is at point [109, 57]? ({image_id})",
                options=["36", "11", "48", "21"],
                answer="36",
                answer_letter="A",
                dimensions=["Teeth"],
                prompt_template_id="rule:tooth_at_point",
                prompt_version="rules-v1",
                backend="rules",
                model="rules-v1",
                raw_response="",
                request_hash="",
                params="{}",
                **common,
            ),
            item(
                image_id,
                src,
                "loc_open",
                4,
                question=f"Where is tooth 11? ({image_id})",
                answer='[{"box_2d": [70, 10, 80, 35], "tooth_id": "11"}]',
                dimensions=["Teeth"],
                prompt_template_id="rule:locate_tooth",
                backend="rules",
                model="rules-v1",
                **common,
            ),
            item(
                image_id,
                src,
                "count_closed",
                5,
                question=f"How many teeth are visible? ({image_id})",
                options=["2", "3", "4", "32"],
                answer="3",
                answer_letter="B",
                dimensions=["Teeth", "SumRec"],
                **common,
            ),
        ]
        gen["dialogues"].append(
            item(
                image_id,
                src,
                "dialogue",
                6,
                question=f"Is something wrong with my teeth? ({image_id})",
                answer="There is a small cavity on a lower left molar.",
                turns=[
                    {"role": "user", "content": f"Is something wrong with my teeth? ({image_id})"},
                    {"role": "assistant", "content": "There is a small cavity on a lower left molar."},
                    {"role": "user", "content": "Is it serious?"},
                    {"role": "assistant", "content": "It is small; your dentist can treat it."},
                ],
                dimensions=["SumRec", "Patho"],
                **common,
            )
        )
        gen["attribute_tasks"].append(item(image_id, src, "attribute", 7, question="List the teeth as JSON.",
                                           answer=json.dumps({"teeth": sorted(TEETH)}), dimensions=[], **common))
    # an exact duplicate (other item id, same content), a near duplicate (case/punctuation) and an invalid row
    dup_src = gen["vqa_items"][1]
    gen["vqa_items"].append({**dup_src, "item_id": "dup-exact", "run_id": "run-2"})
    gen["vqa_items"].append({**dup_src, "item_id": "dup-near", "question": dup_src["question"].upper() + "  "})
    gen["vqa_items"].append(
        item(
            images[0]["image_id"],
            images[0]["source"],
            "vqa_closed",
            9,
            question="Broken?",
            options=["a", "b"],
            answer_letter="A",
        )
    )
    world.tables["raw_images"] = pl.DataFrame(images, schema=RAW_IMAGES)
    world.tables["raw_annotations"] = pl.DataFrame(anns, schema=RAW_ANNOTATIONS)
    img_attr, tooth_attr = attribute_frames(
        docs, world.tables["raw_images"], rules_version="rules-test", settings_hash="s"
    )
    world.tables["image_attributes"] = img_attr
    world.tables["tooth_attributes"] = tooth_attr
    world.tables["location_captions"] = pl.DataFrame(captions)
    for name, rows in gen.items():
        world.tables[name] = to_frame(rows)
    return world


def generated(world: World) -> dict[str, pl.DataFrame]:
    return {name: world.tables[name] for name in ("reports", "vqa_items", "dialogues", "attribute_tasks")}
