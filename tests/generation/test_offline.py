import json
import random

from mmoral_pipeline.generation import validators as V
from mmoral_pipeline.generation.backends import CachedBackend
from mmoral_pipeline.generation.offline import OFFLINE_MODEL, OfflineBackend
from mmoral_pipeline.generation.pipeline import GenerationSettings, generate, rejection_stats
from mmoral_pipeline.generation.rows import TASK_TYPES, InstructionItem, to_frame
from mmoral_pipeline.generation.schemas import parse_reply


def test_offline_generation_is_valid_and_labelled(make_images):
    images = make_images(25, seed=3)
    out = generate(images, CachedBackend(OfflineBackend(), None), GenerationSettings(), run_id="r1")
    stats = rejection_stats(out)
    assert stats["rejected"] == 0, [(r.rejected_by, r.reject_reason) for r in out.rejected[:5]]
    assert len(out.reports) == len(out.dialogues) == 25
    rows = out.reports + out.vqa_items + out.dialogues + out.attribute_tasks
    for row in rows:  # rows are built without validation for speed: they must still validate
        InstructionItem.model_validate(row.model_dump())
    df = to_frame(rows)
    assert set(df["task_type"].unique().to_list()) == set(TASK_TYPES)
    llm_rows = df.filter(df["backend"] != "rules")
    assert set(llm_rows["backend"].unique().to_list()) == {"offline"}
    assert set(llm_rows["model"].unique().to_list()) == {OFFLINE_MODEL} and "no LLM" in OFFLINE_MODEL
    assert df["item_id"].n_unique() == df.height
    assert (df["run_id"] == "r1").all() and (df["attribute_row_hash"].str.len_chars() > 0).all()
    # the user turn never carries the caption: the trained model sees the image
    assert not df["question"].str.contains("Location caption").any()
    for r in out.dialogues:
        assert 8 <= len(r.turns) <= 12 and r.turns[0]["role"] == "user" and r.turns[-1]["role"] == "assistant"
    per_image = df.height / 25
    assert per_image > 40  # MMOral is about 63 instances per image


def test_offline_is_deterministic_and_varied(hand_attributes):
    from mmoral_pipeline.generation.pipeline import ImageInput, _request

    img = ImageInput("hand1", "b1", hand_attributes.content_hash(), hand_attributes, "caption")
    req = _request("report", img, GenerationSettings(params={"temperature": 0.7}))
    a = OfflineBackend().complete([req])[0]
    b = OfflineBackend().complete([req])[0]
    assert a.text == b.text and a.backend == "offline"
    texts = {OfflineBackend(seed=s).complete([req])[0].text for s in range(8)}
    assert len(texts) > 1  # seeded phrasing varies


def test_offline_json_matches_the_llm_schemas(hand_attributes):
    from mmoral_pipeline.generation.pipeline import ImageInput, _request

    img = ImageInput("hand1", "b1", hand_attributes.content_hash(), hand_attributes, "caption")
    s = GenerationSettings()
    report = OfflineBackend().complete([_request("report", img, s)])[0].text
    reqs = [_request("audit", img, s, "audit", report=report),
            _request("vqa_report", img, s, "vqa", report=report, n_closed=5, n_open=4),
            _request("dialogue", img, s, "dialogue", report=report, n_turns=12)]
    audit, vqa, dialogue = OfflineBackend().complete(reqs)
    assert parse_reply("audit", audit.text).verdict == "no revision needed"
    v = parse_reply("vqa", vqa.text)
    assert 0 < len(v.closed) <= 5 and 0 < len(v.open) <= 4
    assert len(parse_reply("dialogue", dialogue.text).turns) == 12
    # the offline auditor revises a report that breaks the rules
    bad = report + "\nTooth 22 shows caries."
    revised = json.loads(OfflineBackend().complete([_request("audit", img, s, "audit", report=bad)])[0].text)
    assert revised["verdict"] == "revised" and revised["revision_log"]
    facts = __import__("mmoral_pipeline.generation.facts", fromlist=["facts_of"]).facts_of(hand_attributes)
    assert all(x.passed for x in V.validate_report(revised["revised_report"], facts))


def test_offline_reports_valid_on_random_images(make_images):
    from mmoral_pipeline.generation.facts import facts_of
    from mmoral_pipeline.generation.offline import write_report

    for img in make_images(60, seed=7):
        f = facts_of(img.attributes)
        text = write_report(f, random.Random(1))
        failed = [v for v in V.validate_report(text, f) if not v.passed]
        assert not failed, (failed, text)
