"""Dense pretraining of a fresh vision tower on the synthetic world, before the conversations.

Trained from scratch on conversations alone, the decoder learns the wording of the answers long
before the tower learns to see: the few answer tokens that depend on the image send the tower a
thin gradient, and the model settles on answers that ignore it. So the tower first learns targets
on every merged token (the unit the decoder reads): the colour and kind of the shape under the
token, that shape's box in 0-1 coordinates and the first two digits of its 0-1000 coordinates, and
the character of rendered text under it. Linear heads read them off the merger's output and are
thrown away afterwards; what stays is a tower whose features already say what is where.

The digits are there because the decoder writes a box digit by digit, so the features offer each
coordinate's leading digits as classes to read, as they offer colours.
"""
from __future__ import annotations

import json
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from tqdm import tqdm

from ..inputs.processor import ProcessorConfig, process_image
from ..model.loader import load_model
from .synthetic import COLORS, SHAPES, Sample, draw_shape, make_sample
from .trainer import TrainConfig, learning_rate, save_model_folder

CHARS = "0123456789abcdefghijklmnopqrstuvwxyz+-=?"
COLOUR_NAMES = list(COLORS)
# Scenes of shapes, words and numbers, sums. Mostly scenes: telling the shapes' outlines apart takes the
# tower some 500-700 steps of scenes before its kind loss falls at all.
TASKS = {"grounding": 5.0, "reading": 1.0, "problem": 1.0}
NONE_WEIGHT = 0.05  # most tokens show no shape and no character: without this the heads only learn "none"
BOX_WEIGHT = 5.0  # an L1 error of 0.1 in box coordinates costs about as much as a wrong class
CLASSES = ("colour", "kind", "char")  # the class targets, in the order of token_targets' first columns
DIGITS = ("hundreds", "tens")  # of the box's 0-1000 coordinates (hundreds 0-10: 1000 has ten)


def centres(count: int, length: int) -> np.ndarray:
    """Pixel coordinates of the centres of `count` equal cells along `length` pixels."""
    return ((np.arange(count) + 0.5) * length / count).astype(int)


def token_targets(sample: Sample, grid: tuple[int, int, int], merge: int) -> torch.Tensor:
    """[tokens, 7]: colour (0 none), kind (0 none), character (0 none), then the covering shape's box
    x1 y1 x2 y2 in 0-1 (-1 where no shape), for each merged token in row-major order. A token belongs
    to the shape under its centre, else to one under one of its patches' centres: a shape of 8 % of
    the side may cover no token's centre, and would then be invisible to the targets."""
    width, height = sample.image.size
    rows, cols = grid[1] // merge, grid[2] // merge
    owner = Image.new("L", sample.image.size, 0)  # which shape covers each pixel (1-based)
    draw = ImageDraw.Draw(owner)
    for i, shape in enumerate(sample.shapes):
        draw_shape(draw, shape.kind, shape.box, i + 1)
    owner = np.asarray(owner)
    ys, xs = centres(rows, height), centres(cols, width)
    patches = owner[centres(rows * merge, height)[:, None], centres(cols * merge, width)[None, :]]
    owners = owner[ys[:, None], xs[None, :]]
    owners = np.where(owners > 0, owners, patches.reshape(rows, merge, cols, merge).max(axis=(1, 3))).reshape(-1)
    out = torch.zeros(rows * cols, 7)
    out[:, 3:] = -1
    for index, who in enumerate(owners):
        if who:
            shape = sample.shapes[who - 1]
            x1, y1, x2, y2 = shape.box
            out[index, :2] = torch.tensor([COLOUR_NAMES.index(shape.color) + 1, SHAPES.index(shape.kind) + 1])
            out[index, 3:] = torch.tensor([x1 / width, y1 / height, x2 / width, y2 / height])
    for glyph in sample.glyphs:
        x1, y1, x2, y2 = glyph.box
        inside = np.outer((ys >= y1) & (ys < y2), (xs >= x1) & (xs < x2)).reshape(-1)
        out[torch.from_numpy(inside), 2] = CHARS.index(glyph.char) + 1
    return out


def make_batch(seed: int, step: int, size: int, processor: ProcessorConfig):
    rng = random.Random(f"{seed}:vision:{step}")
    pixels, grids, targets = [], [], []
    for _ in range(size):
        sample = make_sample(rng, rng.choices(list(TASKS), weights=list(TASKS.values()))[0])
        patches, grid = process_image(sample.image, processor)
        pixels.append(torch.from_numpy(patches))
        grids.append(grid)
        targets.append(token_targets(sample, grid, processor.merge_size))
    return torch.cat(pixels), grids, torch.cat(targets)


class Heads(torch.nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.colour = torch.nn.Linear(width, len(COLORS) + 1)
        self.kind = torch.nn.Linear(width, len(SHAPES) + 1)
        self.char = torch.nn.Linear(width, len(CHARS) + 1)
        self.box = torch.nn.Linear(width, 4)
        self.hundreds = torch.nn.Linear(width, 4 * 11)
        self.tens = torch.nn.Linear(width, 4 * 10)

    @staticmethod
    def digits(boxes: torch.Tensor) -> dict[str, torch.Tensor]:
        """[n, 4] class labels of each coordinate's hundreds and tens digit in 0-1000."""
        thousandths = (boxes * 1000).round().long()
        return {"hundreds": thousandths // 100, "tens": thousandths // 10 % 10}

    def losses(self, features: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        labels = targets[:, :len(CLASSES)].long()
        has_box = targets[:, 3] >= 0
        out = {}
        for i, name in enumerate(CLASSES):
            weight = torch.where(labels[:, i] > 0, 1.0, NONE_WEIGHT)
            loss = F.cross_entropy(getattr(self, name)(features), labels[:, i], reduction="none")
            out[name] = (loss * weight).sum() / weight.sum()
        if not has_box.any():
            return out | {name: features.sum() * 0 for name in ("box",) + DIGITS}
        shaped, boxes = features[has_box], targets[has_box, 3:]
        out["box"] = F.l1_loss(self.box(shaped), boxes)
        for name, labels in self.digits(boxes).items():
            logits = getattr(self, name)(shaped).view(len(boxes) * 4, -1)
            out[name] = F.cross_entropy(logits, labels.view(-1))
        return out

    @torch.no_grad()
    def accuracy(self, features: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        """Class accuracy on the tokens that carry the class, and box L1 on shape tokens."""
        out = {}
        for i, name in enumerate(CLASSES):
            labelled = targets[:, i] > 0
            if labelled.any():
                guess = getattr(self, name)(features[labelled]).argmax(-1)
                out[name] = round(float((guess == targets[labelled, i].long()).float().mean()), 3)
        has_box = targets[:, 3] >= 0
        if has_box.any():
            shaped, boxes = features[has_box], targets[has_box, 3:]
            out["box_l1"] = round(float((self.box(shaped) - boxes).abs().mean()), 4)
            for name, labels in self.digits(boxes).items():
                guess = getattr(self, name)(shaped).view(len(boxes), 4, -1).argmax(-1)
                out[name] = round(float((guess == labels).float().mean()), 3)
        return out


def pretrain_vision(model_path: str | Path, out: str | Path, steps: int, batch_size: int = 16, lr: float = 1e-3,
                    seed: int = 0, progress: bool = True) -> Path:
    """Train the tower of `model_path` on the dense targets; the whole model (decoder untouched) is
    saved to `out`, a checkpoint folder. Held-out accuracies go to out/vision_pretrain.json."""
    model_path, out = Path(model_path), Path(out)
    processor = ProcessorConfig.from_pretrained(model_path)
    model = load_model(model_path, dtype="float32", progress=False)
    tower = model.model.visual.train().requires_grad_(True)
    heads = Heads(model.config.vision.out_hidden_size)
    params = list(tower.parameters()) + list(heads.parameters())
    optimizer = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.95), weight_decay=0.05)
    schedule = TrainConfig(steps, lr=lr, warmup=max(1, steps // 20))
    bar = tqdm(range(steps), desc="vision pretraining", unit="step", disable=not progress)
    with ThreadPoolExecutor(max_workers=1) as prefetch:
        upcoming = prefetch.submit(make_batch, seed, 0, batch_size, processor)
        for step in bar:
            pixels, grids, targets = upcoming.result()
            if step + 1 < steps:
                upcoming = prefetch.submit(make_batch, seed, step + 1, batch_size, processor)
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, schedule)
            losses = heads.losses(tower(pixels, grids), targets)
            loss = sum(value * (BOX_WEIGHT if name == "box" else 1.0) for name, value in losses.items())
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            bar.set_postfix({name: f"{value.item():.3f}" for name, value in losses.items()})
    tower.eval()
    with torch.no_grad():
        pixels, grids, targets = make_batch(seed + 1, -1, 64, processor)  # another seed: scenes never trained on
        held_out = heads.accuracy(tower(pixels, grids), targets)
    save_model_folder(model, out, model_path)
    (out / "vision_pretrain.json").write_text(json.dumps({"steps": steps, "held_out": held_out}, indent=1) + "\n")
    return out
