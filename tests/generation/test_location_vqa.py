import json
import random

from mmoral_pipeline.generation.facts import facts_of
from mmoral_pipeline.generation.location_vqa import (
    NONE_OF_THE_ABOVE,
    build_rule_items,
    count_options,
    true_count,
    verify_rule_item,
)
from mmoral_pipeline.generation.samples import random_attributes
from mmoral_pipeline.generation.validators import mcq_form


def test_count_options_rule():
    for n in (0, 1, 7, 16, 28, 32):
        for seed in range(5):
            opts = count_options(n, random.Random(seed))
            assert opts[0] == str(n) and len(opts) == 4 and len(set(opts)) == 4
            allowed = {n + d for d in range(-5, 6)} | {0, 32, n // 2, 2 * n}
            assert all(int(o) in allowed and 0 <= int(o) <= 32 for o in opts[1:])


def test_none_of_the_above_when_fewer_than_four_counts_exist():
    opts = count_options(1, random.Random(0), cap=2)  # only 0, 1, 2 are possible
    assert sorted(opts[:3]) == ["0", "1", "2"] and opts[3] == NONE_OF_THE_ABOVE


def test_rule_items_are_well_formed_and_true(hand_facts):
    items = build_rule_items(hand_facts, random.Random(0))
    kinds = {i.task_type for i in items}
    assert kinds == {"loc_closed", "loc_open", "count_closed"}
    for item in items:
        assert verify_rule_item(item, hand_facts).passed, item
        if item.options is not None:
            assert mcq_form(item.options, item.answer_letter, item.answer).passed, item
        else:
            parsed = json.loads(item.answer)
            assert isinstance(parsed, list) and all(("box_2d" in e) or ("point_2d" in e) for e in parsed)


def test_rule_items_on_many_random_images():
    for seed in range(30):
        attrs = random_attributes(random.Random(seed), f"r{seed}")
        facts = facts_of(attrs)
        for item in build_rule_items(facts, random.Random(seed)):
            assert verify_rule_item(item, facts).passed, (seed, item)


def test_verify_catches_a_wrong_answer(hand_facts):
    items = build_rule_items(hand_facts, random.Random(1))
    count = next(i for i in items if i.fact["kind"] == "count" and i.fact["target"] == "teeth")
    assert true_count("teeth", hand_facts) == 15
    wrong = count.model_copy(update={"fact": {**count.fact, "n": 14}, "answer": "14"})
    assert not verify_rule_item(wrong, hand_facts).passed
    box_item = next(i for i in items if i.fact["kind"] == "tooth_box")
    moved = box_item.model_copy(update={"fact": {**box_item.fact, "box": [0, 0, 5, 5]}})
    assert not verify_rule_item(moved, hand_facts).passed
    closed = next(i for i in items if i.options is not None)
    other = next(letter for letter in "ABCD" if letter != closed.answer_letter)
    assert not verify_rule_item(closed.model_copy(update={"answer_letter": other}), hand_facts).passed
