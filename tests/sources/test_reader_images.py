"""Format `images`: a folder of X-rays, no annotations; bad files are quarantined like elsewhere."""

from __future__ import annotations

from pathlib import Path

from mmoral_pipeline.config import SourcesFile, SourceSpec
from mmoral_pipeline.sources import list_source_items, read_source


def test_images_folder_reads_every_image_and_quarantines_bad_ones(tmp_path, write_image):
    root = tmp_path / "clinic"
    write_image(root / "xrays" / "a.png", size=(200, 100))
    write_image(root / "xrays" / "sub" / "b.jpg", size=(200, 100), fmt="JPEG")
    (root / "xrays" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (root / "xrays" / "notes.txt").write_text("not an image, not an input")
    spec = SourceSpec(name="clinic", format="images", root=str(root), images="xrays", experts=["expert_model"])
    sources = SourcesFile(sources=[spec], base_dir=str(tmp_path))
    assert list_source_items(spec, sources) == ["xrays/a.png", "xrays/broken.png", "xrays/sub/b.jpg"]
    batch = read_source(spec, sources)
    ok, counts = batch.counts_balance()
    assert ok and counts["images_seen"] == 3 and counts["images_accepted"] == 2 and counts["annotations_seen"] == 0
    assert [r.reason.value for r in batch.rejections] == ["not_an_image"]
    assert {i.image_id for i in batch.images} == {"clinic-xrays_a", "clinic-xrays_sub_b"}
    shard = read_source(spec, sources, ["xrays/sub/b.jpg"])
    assert [i.file_name for i in shard.images] == ["xrays/sub/b.jpg"]


def test_a_labelled_folder_read_as_images_keeps_the_image_ids(tmp_path):
    from mmoral_pipeline.synth.generate import generate

    generate(2, seed=1, out=tmp_path / "s", fmt="coco", width=300, height=150)
    as_coco = SourceSpec(name="s", format="coco", root=str(tmp_path / "s"))
    as_images = SourceSpec(name="s", format="images", root=str(tmp_path / "s"), images="images")
    ids = [
        {i.image_id for i in read_source(spec, SourcesFile(sources=[spec], base_dir="/")).images}
        for spec in (as_coco, as_images)
    ]
    assert ids[0] == ids[1] and len(ids[0]) == 2


def test_experts_resolve_relative_to_the_sources_file_and_the_trained_one_to_mmoral_home(tmp_path, mmoral_home):
    spec = SourceSpec(name="c", format="images", root=".", experts=["expert_model", "ckpts/caries", "/abs/ckpt"])
    paths = spec.expert_paths(tmp_path)
    assert paths == [
        mmoral_home.resolve() / "expert_model" / "latest",
        tmp_path.resolve() / "ckpts" / "caries",
        Path("/abs/ckpt"),
    ]
