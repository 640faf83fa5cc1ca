"""The HF runner end to end on the real MMOral-OPG-Bench sample with a tiny random Qwen2.5-VL checkpoint."""

from __future__ import annotations

import pytest

from mmoral_pipeline.evaluation.bench import ModelRun, score_run
from mmoral_pipeline.evaluation.runners import HFRunner, closed_prompt
from mmoral_pipeline.evaluation.tsv import read_closed_tsv

from .tiny_vlm import _own, build_tiny_vlm


@pytest.fixture(scope="module")
def sample_items(closed_sample_tsv):
    return read_closed_tsv(closed_sample_tsv)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory, sample_items):
    texts = [closed_prompt(it) for it in sample_items] * 3 + ["A", "B", "C", "D", "The answer is (B)."] * 5
    return build_tiny_vlm(texts, tmp_path_factory.mktemp("tiny_vlm"))


@pytest.mark.parametrize("use_training_infer", [True, False], ids=["training-infer", "own-generation"])
def test_hf_runner_end_to_end_on_real_sample(tiny_checkpoint, sample_items, use_training_infer):
    kw = {"max_new_tokens_closed": 6, "max_pixels": 64 * 28 * 28, "use_training_infer": use_training_infer}
    runner = HFRunner(str(tiny_checkpoint), batch_size=3, **kw)
    outputs = runner.answer_closed(sample_items)
    assert len(outputs) == 4 and all(isinstance(o, str) for o in outputs)
    again = HFRunner(str(tiny_checkpoint), batch_size=4, **kw).answer_closed(sample_items)
    assert again == outputs  # greedy decoding; batching (and its left padding) does not change answers
    res = score_run(ModelRun(model=runner.name, closed_outputs=outputs), sample_items, [])
    s = res.scores
    assert s.closed_counts["Overall"] == 4
    assert s.extraction_failure_rate is not None and 0.0 <= s.extraction_failure_rate <= 100.0
    assert sum(s.extraction_methods.values()) == 4
    assert all(p.method in ("paren", "letter", "option_text", "failed") for p in res.closed)


def test_hf_runner_text_only_sends_no_image(tiny_checkpoint, sample_items):
    runner = HFRunner(str(tiny_checkpoint), use_images=False, max_new_tokens_closed=4, use_training_infer=False)
    assert runner.name.endswith("-text-only")
    assert len(runner.answer_closed(sample_items[:2])) == 2


def test_own_tiny_builder_and_generation_without_realdata(tmp_path):
    # the fallback recipe (used when the training factory is absent) gives a checkpoint the runner can use;
    # synthetic items with images, so this runs where the realdata folder is absent too
    from PIL import Image

    from mmoral_pipeline.evaluation.build import build_benchmark
    from mmoral_pipeline.evaluation.tsv import encode_image_jpeg

    from .factories import make_attributes

    a = make_attributes(4)
    closed, open_, _ = build_benchmark(
        [a], images_b64={a.image_id: encode_image_jpeg(Image.new("RGB", (300, 150), (90, 90, 90)))}
    )
    ck = _own([closed_prompt(it) for it in closed] * 2, tmp_path / "own")
    runner = HFRunner(str(ck), batch_size=2, max_new_tokens_closed=3, max_new_tokens_open=4, max_pixels=32 * 28 * 28,
                      use_training_infer=False)
    res = score_run(
        ModelRun(model="own", closed_outputs=runner.answer_closed(closed), open_outputs=runner.answer_open(open_[:2])),
        closed,
        open_[:2],
    )
    assert res.scores.closed_counts["Overall"] == 5 and res.scores.open_counts["Overall"] == 2
    assert res.scores.extraction_failure_rate is not None


def test_other_images_shows_each_question_another_items_xray():
    from mmoral_pipeline.evaluation.items import ClosedItem

    def item(i: int, image: str) -> ClosedItem:
        return ClosedItem(index=str(i), question="Q?", options=["a", "b", "c", "d"], answer="A", category="Teeth",
                          image_id=image, image=image)

    from mmoral_pipeline.evaluation.runners import shown_images

    items = [item(0, "x"), item(1, "x"), item(2, "y"), item(3, "z")]
    assert shown_images(items, other_images=True) == ["y", "y", "z", "x"]  # every question gets a different image
    assert shown_images(items, other_images=False) == ["x", "x", "y", "z"]
    with pytest.raises(ValueError, match="two different images"):
        shown_images(items[:2], other_images=True)
