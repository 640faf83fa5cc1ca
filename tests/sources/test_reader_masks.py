"""Mask readers: run-length connected components (checked against a plain BFS), UFBA, DC1000."""

from __future__ import annotations

import json
from collections import deque
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from mmoral_pipeline.domain.taxonomy import Category
from mmoral_pipeline.sources.masks import connected_components, whole_mask

from .conftest import reasons


def bfs_components(fg: np.ndarray, connectivity: int) -> list[tuple[int, list[float]]]:
    """Reference labelling: (area, box) per component, by breadth-first search."""
    h, w = fg.shape
    seen = np.zeros_like(fg, dtype=bool)
    steps = [(-1, 0), (1, 0), (0, -1), (0, 1)]
    if connectivity == 8:
        steps += [(-1, -1), (-1, 1), (1, -1), (1, 1)]
    out = []
    for y in range(h):
        for x in range(w):
            if not fg[y, x] or seen[y, x]:
                continue
            q, pts = deque([(y, x)]), []
            seen[y, x] = True
            while q:
                cy, cx = q.popleft()
                pts.append((cy, cx))
                for dy, dx in steps:
                    ny, nx = cy + dy, cx + dx
                    if 0 <= ny < h and 0 <= nx < w and fg[ny, nx] and not seen[ny, nx]:
                        seen[ny, nx] = True
                        q.append((ny, nx))
            ys, xs = zip(*pts, strict=False)
            out.append((len(pts), [float(min(xs)), float(min(ys)), float(max(xs) + 1), float(max(ys) + 1)]))
    return sorted(out, key=lambda c: (c[1][1], c[1][0], c[0]))


@settings(max_examples=60, deadline=None)
@given(
    data=st.lists(st.lists(st.booleans(), min_size=9, max_size=9), min_size=1, max_size=9),
    connectivity=st.sampled_from([4, 8]),
)
def test_connected_components_match_bfs(data, connectivity):
    fg = np.array(data, dtype=bool)
    got = sorted(
        ((c.area, c.box) for c in connected_components(fg, connectivity)), key=lambda c: (c[1][1], c[1][0], c[0])
    )
    assert got == bfs_components(fg, connectivity)


def test_components_diagonal_and_hull():
    fg = np.zeros((6, 6), dtype=bool)
    fg[1, 1] = fg[2, 2] = True  # diagonal neighbours
    fg[4:6, 3:6] = True
    assert len(connected_components(fg, 8)) == 2
    assert len(connected_components(fg, 4)) == 3
    comp = whole_mask(fg[4:6, 3:6])
    assert comp.box == [0.0, 0.0, 3.0, 2.0] and comp.area == 6
    assert sorted(zip(comp.polygon[0::2], comp.polygon[1::2], strict=False)) == [(0, 0), (0, 2), (3, 0), (3, 2)]
    assert whole_mask(np.zeros((3, 3), bool)) is None


def _tiff(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    import tifffile

    tifffile.imwrite(path, arr.astype(np.int32))


@pytest.fixture()
def ufba_root(tmp_path: Path, write_image) -> Path:
    root = tmp_path / "ufba"
    write_image(root / "p1.jpg", (40, 30), mode="RGB", color=(1, 2, 3))
    m = root / "masks" / "p1"
    a = np.zeros((30, 40))
    a[5:15, 2:8] = 3
    _tiff(m / "p1_18.ome.tiff", a)
    b = np.zeros((30, 40))
    b[16:28, 30:36] = 7
    _tiff(m / "p1_38.ome.tiff", b)
    _tiff(m / "p1_background.ome.tiff", np.ones((30, 40)))
    _tiff(m / "p1_99.ome.tiff", a)  # not a tooth
    _tiff(m / "p1_xx.ome.tiff", a)  # not a number
    _tiff(m / "p1_21.ome.tiff", np.zeros((30, 40)))  # empty
    _tiff(m / "p1_22.ome.tiff", np.ones((10, 10)))  # wrong size
    (m / "p1_23.ome.tiff").write_bytes(b"garbage")  # unreadable
    _tiff(root / "masks" / "lonely" / "lonely_11.ome.tiff", a)  # no image
    return root


def test_ufba_masks_reader(ufba_root: Path, ingest):
    batch = ingest(ufba_root, "ufba_masks")
    assert [i.file_name for i in batch.images] == ["p1.jpg"]
    got = {a.fdi: a for a in batch.annotations}
    assert set(got) == {18, 38} and all(a.category == Category.TOOTH for a in got.values())
    assert got[18].box == [2.0, 5.0, 8.0, 15.0] and got[38].box == [30.0, 16.0, 36.0, 28.0]
    assert json.loads(got[18].extra) == {"mask_area": 60, "mask_value": 3}
    assert got[18].record == "p1_18.ome.tiff" and got[18].source_file == "masks/p1/p1_18.ome.tiff"
    assert reasons(batch) == {
        "invalid_tooth": 1, "unknown_class": 1, "box_zero_area": 1, "malformed_record": 2, "image_missing": 2,
    }
    # background masks are not annotations: 7 non-background masks for p1 + 1 for lonely
    assert batch.annotations_seen == 8


@pytest.fixture()
def dc_root(tmp_path: Path, write_image) -> Path:
    root = tmp_path / "dc"
    write_image(root / "images" / "a.png", (50, 20))
    write_image(root / "images" / "clean.png", (50, 20))  # no mask: an image without caries
    lab = np.zeros((20, 50), np.uint8)
    lab[2:6, 3:9] = 255  # 24 px
    lab[10:12, 20:21] = 255  # 2 px
    lab[15:19, 40:48] = 255  # 32 px
    col = np.where(lab > 0, 102, 0).astype(np.uint8)
    col[15:17, 40:48] = 255
    (root / "labels").mkdir()
    (root / "colors").mkdir()
    Image.fromarray(lab).save(root / "labels" / "a.png")
    Image.fromarray(col).save(root / "colors" / "a.png")
    Image.fromarray(lab).save(root / "labels" / "orphan.png")
    return root


def test_dc1000_reader(dc_root: Path, ingest):
    batch = ingest(dc_root, "dc1000_masks")
    assert sorted(i.file_name for i in batch.images) == ["images/a.png", "images/clean.png"]
    boxes = [(a.box, json.loads(a.extra)) for a in batch.annotations]
    assert [b for b, _ in boxes] == [[3.0, 2.0, 9.0, 6.0], [20.0, 10.0, 21.0, 12.0], [40.0, 15.0, 48.0, 19.0]]
    assert [(e["mask_area"], e["depth"]) for _, e in boxes] == [(24, 102), (2, 102), (32, 255)]
    assert boxes[2][1]["depth_pixels"] == {"102": 16, "255": 16} and "undocumented" in boxes[2][1]["depth_note"]
    assert all(a.category == Category.CARIES for a in batch.annotations)
    assert reasons(batch) == {"image_missing": 4}  # orphan mask: its image + its 3 components


def test_dc1000_min_area_and_category(dc_root: Path, ingest):
    batch = ingest(dc_root, "dc1000_masks", options={"min_area": 10, "category": "deep caries"})
    assert [json.loads(a.extra)["mask_area"] for a in batch.annotations] == [24, 32]
    assert {a.category for a in batch.annotations} == {Category.DEEP_CARIES}
