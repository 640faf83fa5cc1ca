"""`options.quadrant_map` corrects a source's side convention in one place, for every format."""

from mmoral_pipeline.config import SourcesFile, SourceSpec
from mmoral_pipeline.domain.taxonomy import Category
from mmoral_pipeline.sources import read_source
from mmoral_pipeline.synth import generate


def test_quadrant_map_swaps_lower_quadrants_and_keeps_the_original(tmp_path):
    generate(n=1, seed=3, out=tmp_path, fmt="coco", width=700, height=350)
    plain = SourceSpec(name="s", format="coco", root=str(tmp_path))
    mapped = SourceSpec(name="s", format="coco", root=str(tmp_path), options={"quadrant_map": {3: 4, 4: 3}})
    sf = SourcesFile(sources=[plain], base_dir=str(tmp_path))
    before = {a.annotation_id: a.fdi for a in read_source(plain, sf).annotations}
    after = read_source(mapped, sf).annotations
    assert {a.annotation_id for a in after} == set(before)
    swapped = 0
    for a in after:
        old = before[a.annotation_id]
        if old is None or old // 10 in (1, 2):
            assert a.fdi == old
        else:
            assert a.fdi == {3: 4, 4: 3}[old // 10] * 10 + old % 10 and f'"source_fdi": {old}' in a.extra
            swapped += a.category == Category.TOOTH
    assert swapped >= 10
