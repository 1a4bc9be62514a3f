"""The synthetic world: reproducible, within its stated ranges, and with answers that match the pixels."""
import json
import random
import re

import numpy as np
import pytest

from glmv.training.synthetic import BOX_END, BOX_START, COLORS, PLURAL, TASKS, make_sample, norm_box, scene


def boxes_in(answer: str) -> list[list[int]]:
    inner = answer[len(BOX_START):-len(BOX_END)]
    value = json.loads(inner)
    return value if isinstance(value[0], list) else [value]


def test_same_seed_same_data():
    a, b = make_sample(random.Random(7)), make_sample(random.Random(7))
    assert (a.task, a.question, a.answer, a.reasoning) == (b.task, b.question, b.answer, b.reasoning)
    assert a.image.tobytes() == b.image.tobytes()


def test_scenes_are_within_their_ranges_and_drawn_where_they_say():
    rng = random.Random(0)
    for _ in range(60):
        image, shapes = scene(rng)
        width, height = image.size
        assert 224 <= width <= 640 and 224 <= height <= 640 and 1 <= len(shapes) <= 6
        pixels = np.asarray(image)
        for i, s in enumerate(shapes):
            x1, y1, x2, y2 = s.box
            assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
            assert 0.08 * min(width, height) - 1 <= x2 - x1 <= 0.35 * min(width, height) + 1
            for o in shapes[i + 1:]:  # no overlap
                assert x2 <= o.box[0] or o.box[2] <= x1 or y2 <= o.box[1] or o.box[3] <= y1
            cx, cy = (x1 + x2) // 2, (y1 + y2) // 2 + (y2 - y1) // 8  # inside every shape kind
            assert tuple(pixels[cy, cx]) == COLORS[s.color], (s, pixels[cy, cx])


def test_grounding_and_counting_answers_match_the_scene():
    rng = random.Random(1)
    for _ in range(40):
        sample = make_sample(rng, "grounding")
        expected = {tuple(norm_box(s.box, *sample.image.size)) for s in sample.shapes}
        got = boxes_in(sample.answer)
        assert got and all(tuple(b) in expected for b in got)
        assert all(0 <= v <= 1000 for b in got for v in b)
        count = make_sample(rng, "counting")
        n = int(count.answer[len(BOX_START):-len(BOX_END)])
        words = count.question.rstrip("?.").split()
        kind = next((k for k, plural in PLURAL.items() if plural in words), None)
        if kind is None:  # "How many shapes are there?" and its variants
            assert n == len(count.shapes), count.question
        else:
            before = words[words.index(PLURAL[kind]) - 1]
            color = before if before in COLORS else None
            assert n == sum(s.kind == kind and color in (None, s.color) for s in count.shapes), count.question


def test_every_task_has_varied_wording_and_both_thinking_forms():
    rng = random.Random(2)
    for task in TASKS:
        samples = [make_sample(rng, task) for _ in range(30)]
        assert len({s.question for s in samples}) >= 3, task
        for s in samples[:3]:
            on, off = s.messages(thinking=True), s.messages(thinking=False)
            assert on[1]["content"] == f"<think>{s.reasoning}</think>{s.answer}" and s.reasoning
            assert off[0]["content"][1]["text"].endswith("/nothink")
            assert off[1]["content"] == f"<think></think>{s.answer}"
    table = make_sample(random.Random(3), "chart").answer.splitlines()
    assert table[0] == "| label | value |" and 2 <= len(table) - 2 <= 6
    problem = make_sample(random.Random(4), "problem")
    a, op, b = re.search(r"asks (\d+) (.) (\d+)", problem.reasoning).groups()
    assert int(problem.answer[len(BOX_START):-len(BOX_END)]) == eval(f"{a}{'*' if op == 'x' else op}{b}")


@pytest.mark.parametrize("task", ["reading", "problem", "chart"])
def test_text_is_drawn(task):
    image = make_sample(random.Random(5), task).image
    assert np.asarray(image).std() > 5  # something is drawn on the card


@pytest.mark.parametrize("seed", range(4))
def test_glyph_boxes_hold_the_drawn_characters(seed):
    sample = make_sample(random.Random(seed), "problem")
    text = sample.reasoning.split("asks ")[1].split(".")[0] + " = ?"
    assert "".join(g.char for g in sample.glyphs) == text.replace(" ", "")
    pixels = np.asarray(sample.image).astype(int)
    # the text's own colour: the candidate with the most exact pixels (the background is mid-grey)
    ink = max((np.all(pixels == COLORS[c], axis=-1) for c in ("black", "white", "blue", "red")), key=np.sum)
    inside = np.zeros_like(ink)
    lefts = []
    for glyph in sample.glyphs:
        x1, y1, x2, y2 = glyph.box
        assert 0 <= x1 < x2 <= sample.image.width and 0 <= y1 < y2 <= sample.image.height
        assert ink[y1:y2, x1:x2].any(), glyph
        inside[y1:y2, x1:x2] = True
        lefts.append(x1)
    assert lefts == sorted(lefts)
    assert ink[inside].sum() >= 0.97 * ink.sum()
