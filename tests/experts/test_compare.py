"""Pseudo-labelled documents against true ones: recovered, missed, invented, hedged, unsaid."""

from __future__ import annotations

from mmoral_pipeline.domain import fdi
from mmoral_pipeline.domain.attributes import Condition, ImageAttributes, JawAttributes, ToothAttributes
from mmoral_pipeline.experts.compare import compare_documents, comparison_markdown


def _tooth(t: int, conds=()) -> ToothAttributes:
    x = 100 + 50 * (t % 10)
    return ToothAttributes(tooth_id=t, quadrant=fdi.quadrant(t), is_wisdom=fdi.is_wisdom(t), side=fdi.side_label(t),
                           bbox=[x, 100, x + 40, 200], center=[x + 20, 150],
                           conditions=[Condition(category=c, bbox=[x, 100, x + 10, 110], score=s) for c, s in conds])


def _doc(teeth, assessed=None, canals=()) -> ImageAttributes:
    jaw = JawAttributes(
        mandibular_canal=[Condition(category="mandibular_canal", bbox=[0, 300, 100, 350], side=s) for s in canals]
    )
    kw = {"assessed": assessed} if assessed is not None else {}
    return ImageAttributes(image_id="img", width=1000, height=500, teeth=teeth, jaw=jaw, **kw)


def test_statements_are_matched_by_category_and_tooth():
    truth = _doc([_tooth(11, [("caries", 1.0)]), _tooth(21), _tooth(36, [("filling", 1.0)])], canals=("left", "right"))
    pseudo = _doc(
        [_tooth(11, [("caries", 0.6)]), _tooth(22, [("caries", 0.9)]), _tooth(36)],
        assessed=["tooth", "caries", "mandibular_canal"], canals=("left",),
    )
    result = compare_documents([pseudo], [truth])
    teeth, caries, canal = (result.per_category[c] for c in ("tooth", "caries", "mandibular_canal"))
    assert (teeth.true, teeth.pseudo, teeth.recovered, teeth.missed, teeth.invented) == (3, 3, 2, 1, 1)  # 21 read as 22
    assert (caries.recovered, caries.invented, caries.hedged_recovered, caries.hedged_invented) == (1, 1, 1, 0)
    assert (canal.recovered, canal.missed) == (1, 1)
    assert result.unsaid == {"filling": 1}  # the expert did not assess fillings: the pseudo report is silent
    assert result.images == 1 and result.assessed == ["tooth", "caries", "mandibular_canal"]
    md = comparison_markdown(result)
    assert "| caries | 1 | 2 | 1 | 0 | 1 | 1 / 0 | 100 % | 50 % |" in md and "filling 1" in md


def test_images_without_truth_are_not_compared():
    other = _doc([_tooth(11)]).model_copy(update={"image_id": "other"})
    assert compare_documents([other], [_doc([_tooth(11)])]).images == 0
