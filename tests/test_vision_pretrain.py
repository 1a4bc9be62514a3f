"""The fresh vision tower and its dense pretraining: position in the fresh features, per-token
targets that match the drawing, and a run that trains the tower alone and leaves a loadable checkpoint."""
import json
import random

import torch
from PIL import Image
from safetensors.torch import load_file

from glmv.inputs.processor import ProcessorConfig, image_grid, process_image
from glmv.model.loader import load_model
from glmv.training.recipe import init_weights
from glmv.training.synthetic import COLORS, SHAPES, Glyph, Sample, Shape, scene
from glmv.training.vision_pretrain import CHARS, Heads, pretrain_vision, token_targets


def test_token_targets_follow_the_shape_and_the_glyphs():
    processor = ProcessorConfig()
    image = Image.new("RGB", (400, 400), (128, 128, 128))
    grid = image_grid(400, 400, processor)
    cols = grid[2] // 2
    square = Sample("grounding", image, "", "", "", shapes=[Shape("square", "red", (100, 100, 300, 300))])
    targets = token_targets(square, grid, 2).view(cols, cols, 7)
    side = 400 / cols
    for r in range(cols):
        for c in range(cols):
            top, left = r * side, c * side
            if 100 <= left and left + side <= 300 and 100 <= top and top + side <= 300:  # wholly inside
                assert targets[r, c, :3].tolist() == [list(COLORS).index("red") + 1, SHAPES.index("square") + 1, 0]
                assert torch.allclose(targets[r, c, 3:], torch.tensor([0.25, 0.25, 0.75, 0.75]))
            elif left + side <= 100 or left >= 300 or top + side <= 100 or top >= 300:  # wholly outside
                assert targets[r, c].tolist() == [0, 0, 0, -1, -1, -1, -1]
    text = Sample("reading", image, "", "", "", glyphs=[Glyph("7", (0, 0, 200, 400)), Glyph("a", (200, 0, 400, 400))])
    chars = token_targets(text, grid, 2).view(cols, cols, 7)[:, :, 2]
    assert (chars[:, : cols // 2] == CHARS.index("7") + 1).all() and (chars[:, cols // 2 + 1:] == CHARS.index("a") + 1).all()


def test_a_shape_smaller_than_a_token_still_owns_one():
    """A square over one patch centre but no token centre: that token carries the square."""
    processor = ProcessorConfig()
    image = Image.new("RGB", (400, 400), (128, 128, 128))
    grid = image_grid(400, 400, processor)
    cols, patch = grid[2] // 2, 400 / grid[2]
    centre = 2.5 * patch  # the centre of the token's second patch, in both directions (token row 1, column 1)
    box = (round(centre - patch / 3), round(centre - patch / 3), round(centre + patch / 3), round(centre + patch / 3))
    targets = token_targets(Sample("grounding", image, "", "", "", shapes=[Shape("square", "blue", box)]), grid, 2)
    owned = (targets[:, 1] > 0).nonzero().squeeze(1).tolist()
    assert owned == [1 * cols + 1]
    assert torch.allclose(targets[owned[0], 3:], torch.tensor(box) / 400)


def test_box_digits_are_those_the_answer_writes():
    labels = Heads.digits(torch.tensor([[0.25, 0.2561, 0.7449, 1.0]]))
    assert labels["hundreds"].tolist() == [[2, 2, 7, 10]] and labels["tens"].tolist() == [[5, 5, 4, 0]]


def test_pretraining_moves_the_tower_only_and_saves_a_checkpoint(moe_checkpoint, tmp_path):
    out = pretrain_vision(moe_checkpoint, tmp_path / "vision", steps=3, batch_size=2, progress=False)
    before, after = load_file(moe_checkpoint / "model.safetensors"), load_file(out / "model.safetensors")
    assert before.keys() == after.keys()
    for name in before:
        same = torch.equal(before[name], after[name])
        if "visual" in name and name.endswith("weight") and before[name].dim() >= 2:
            assert not same, name
        elif "visual" not in name:
            assert same, name
    held_out = json.loads((out / "vision_pretrain.json").read_text())["held_out"]
    assert {"colour", "kind", "box_l1", "hundreds", "tens"} <= held_out.keys()
    load_model(out, dtype="float32", progress=False)


def test_fresh_tower_knows_where_each_token_is(moe_checkpoint):
    """The recipe's fresh weights: a linear read-out fitted on some scenes finds each merged token's
    place in the image on other scenes. (With a N(0, 0.02) position table it does no better than
    guessing the middle.)"""
    model = load_model(moe_checkpoint, dtype="float32", progress=False)
    init_weights(model, seed=0)
    processor = ProcessorConfig.from_pretrained(moe_checkpoint)
    rng = random.Random(0)
    features, places = [], []
    for _ in range(8):
        patches, grid = process_image(scene(rng)[0], processor)
        with torch.no_grad():
            features.append(model.model.visual(torch.from_numpy(patches), [grid]))
        rows, cols = grid[1] // 2, grid[2] // 2
        x = ((torch.arange(cols) + 0.5) / cols).repeat(rows)
        y = ((torch.arange(rows) + 0.5) / rows).repeat_interleave(cols)
        places.append(torch.stack((x, y), dim=1))

    def with_bias(f):
        return torch.cat((f, torch.ones(len(f), 1)), dim=1)

    readout = torch.linalg.lstsq(with_bias(torch.cat(features[:6])), torch.cat(places[:6])).solution
    held_out = torch.cat(places[6:])
    error = (with_bias(torch.cat(features[6:])) @ readout - held_out).abs().mean()
    guess_middle = (held_out - held_out.mean(0)).abs().mean()
    assert error < 0.4 * guess_middle, (float(error), float(guess_middle))
