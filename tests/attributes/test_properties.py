"""Invariants over generated images: synthetic OPG cases (many seeds) and random annotation frames."""

from __future__ import annotations

from collections import Counter

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmoral_pipeline import tables
from mmoral_pipeline.attributes.build import KEPT_OUTCOMES, build_image_attributes
from mmoral_pipeline.attributes.caption import render_caption
from mmoral_pipeline.attributes.settings import AttributeSettings
from mmoral_pipeline.attributes.synth_tables import cases_to_tables
from mmoral_pipeline.domain import fdi as fdi_rules
from mmoral_pipeline.domain.attributes import ImageAttributes
from mmoral_pipeline.domain.geometry import center, iou
from mmoral_pipeline.domain.taxonomy import Category
from mmoral_pipeline.synth import case_for

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def document_ids(doc: ImageAttributes) -> list[str]:
    ids = []
    for t in doc.teeth:
        ids += t.annotation_ids
        for c in t.conditions:
            ids += c.annotation_ids
    for group in (
        doc.jaw.bone_loss,
        doc.jaw.mandibular_canal,
        doc.jaw.maxillary_sinus,
        doc.missing_teeth,
        doc.unknown_tooth_findings,
    ):
        for c in group:
            ids += c.annotation_ids
    return ids


def assert_invariants(images: pl.DataFrame, anns: pl.DataFrame, s: AttributeSettings) -> None:
    r = build_image_attributes(images, anns, s)
    # count conservation: one outcome per raw annotation, and they add up
    ids = [row[0] for row in r.outcome_rows]
    assert len(ids) == len(set(ids)) == anns.height
    assert set(ids) == set(anns["annotation_id"].to_list())
    counts = r.outcome_counts()
    assert sum(counts.values()) == anns.height
    in_docs = Counter(i for d in r.documents for i in document_ids(d))
    kept = {a for a, o in r.outcomes.items() if o in KEPT_OUTCOMES}
    assert set(in_docs) == kept and all(n == 1 for n in in_docs.values())  # each traced exactly once
    n_teeth = sum(len(d.teeth) for d in r.documents)
    n_conditions = sum(len(t.conditions) for d in r.documents for t in d.teeth)
    assert counts["tooth"] == n_teeth and counts["condition"] == n_conditions
    assert counts["unknown_tooth"] == sum(len(d.unknown_tooth_findings) for d in r.documents)
    by_id = {row[0]: row for row in anns.select("annotation_id", "category", "score").iter_rows()}
    for aid, outcome in r.outcomes.items():
        if outcome.startswith("dropped:") and by_id[aid][2] is not None and "threshold" in outcome:
            assert by_id[aid][2] < s.threshold_for(Category(by_id[aid][1]))[1]
    for d in r.documents:
        tooth_ids = [t.tooth_id for t in d.teeth]
        assert len(tooth_ids) == len(set(tooth_ids))  # no tooth twice
        for t in d.teeth:
            # side consistency: the recorded side is the quadrant's, and agrees with quadrant/wisdom
            assert fdi_rules.is_valid_fdi(t.tooth_id)
            assert t.side == fdi_rules.side_label(t.tooth_id) and t.quadrant == fdi_rules.quadrant(t.tooth_id)
            assert t.is_wisdom == fdi_rules.is_wisdom(t.tooth_id)
            assert (t.wisdom_status is not None) == t.is_wisdom
            for c in t.conditions:
                assert c.score >= s.threshold_for(c.category)[1]
            for a in d.teeth:
                assert a is t or iou(a.bbox, t.bbox) <= s.duplicate_tooth_iou
            crowns = [c for c in t.conditions if c.category == Category.CROWN]
            fills = [c for c in t.conditions if c.category == Category.FILLING]
            assert all(iou(c.bbox, f.bbox) <= s.crown_filling_iou for c in crowns for f in fills)
        for c in d.unknown_tooth_findings:
            if c.teeth:
                assert c.side == fdi_rules.side_label(c.teeth[0])
            else:
                cx, cy = center(c.bbox)
                assert (
                    c.side == f"{'upper' if cy < d.height / 2 else 'lower'} {'right' if cx < d.width / 2 else 'left'}"
                )
        caption = render_caption(d)
        assert f"(total: {len(d.teeth)})" in caption


@FAST
@given(seed=st.integers(0, 2**31 - 1), scores=st.booleans())
def test_synth_cases_keep_every_invariant(seed: int, scores: bool):
    cases = [case_for(seed, i, 700, 350) for i in range(3)]
    images, anns = cases_to_tables(cases, scores=scores)
    assert_invariants(images, anns, AttributeSettings())
    r = build_image_attributes(images, anns)
    ann_ids = anns["annotation_id"].to_list()
    offset = 0
    for case, doc in zip(cases, r.documents, strict=True):
        # synthetic teeth lie on the image half their quadrant says (patient's right = image left)
        for t in doc.teeth:
            if not fdi_rules.is_incisor(t.tooth_id):
                assert (t.center[0] < doc.width / 2) == (fdi_rules.image_half(t.tooth_id) == "left")
        # a finding the generator put on a present tooth ends on that tooth
        present = {t.tooth_id: t for t in doc.teeth}
        on_tooth = {c.annotation_ids[0]: t.tooth_id for t in doc.teeth for c in t.conditions}
        k = offset + len(case.teeth)
        for j, f in enumerate(case.findings):
            aid = ann_ids[k + j]
            outcome = r.outcomes[aid]
            if f.fdi in present and not outcome.startswith(("dropped:", "suppressed:")):
                assert outcome == "condition" and on_tooth[aid] == f.fdi
        offset += len(case.teeth) + len(case.findings)


@FAST
@given(seed=st.integers(0, 2**31 - 1))
def test_row_order_does_not_change_documents(seed: int):
    images, anns = cases_to_tables([case_for(seed, 0, 700, 350)], scores=True)
    a = build_image_attributes(images, anns)
    b = build_image_attributes(images, anns.sample(fraction=1.0, shuffle=True, seed=seed % 1000))
    assert [d.content_hash() for d in a.documents] == [d.content_hash() for d in b.documents]
    assert a.outcomes == b.outcomes


CATEGORIES = [c.value for c in Category] + ["root piece"]
FDIS = [None, 11, 18, 21, 28, 36, 38, 46, 48, 55]


@st.composite
def annotation_frames(draw) -> tuple[pl.DataFrame, pl.DataFrame]:
    n_images = draw(st.integers(1, 3))
    images = [
        {"image_id": f"i{k}", "source": "h", "partition": "p", "path": "", "file_name": f"i{k}.png", "sha256": "",
         "width": 400, "height": 200, "mode": "L", "bytes": 0}
        for k in range(n_images)
    ]
    rows = []
    for j in range(draw(st.integers(0, 30))):
        x1 = draw(st.integers(0, 380))
        y1 = draw(st.integers(0, 180))
        # few distinct sizes/positions so duplicates and big overlaps actually happen
        w = draw(st.sampled_from([5, 20, 20, 21, 60]))
        h = draw(st.sampled_from([5, 20, 40, 41]))
        rows.append({
            "annotation_id": f"a{j}", "image_id": f"i{draw(st.integers(0, n_images))}", "source": "h", "partition": "p",
            "source_file": "f", "record": str(j), "source_category": "x", "category": draw(st.sampled_from(CATEGORIES)),
            "lesion_type": draw(st.sampled_from([None, "cyst", "granuloma"])), "fdi": draw(st.sampled_from(FDIS)),
            "box": [float(x1), float(y1), float(x1 + w), float(y1 + h)], "polygon": None,
            "score": draw(st.one_of(st.none(), st.floats(0.0, 1.0))), "extra": None,
        })
    anns = pl.DataFrame(rows, schema=tables.RAW_ANNOTATIONS) if rows else pl.DataFrame(schema=tables.RAW_ANNOTATIONS)
    return pl.DataFrame(images, schema=tables.RAW_IMAGES), anns


@settings(max_examples=60, deadline=None)
@given(frames=annotation_frames(), threshold=st.floats(0.0, 1.0))
def test_random_frames_keep_every_invariant(frames, threshold: float):
    """Arbitrary categories, ids, overlaps and scores (incl. annotations of an image not given)."""
    images, anns = frames
    anns = anns.with_columns(pl.col("category").replace("root piece", "retained_root"))
    assert_invariants(images, anns, AttributeSettings(finding_threshold=threshold))
