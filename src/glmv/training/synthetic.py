"""The synthetic visual world the shipped model learns from: scenes of shapes, rendered text, bar
charts and arithmetic problems, each with questions and exact answers.

Every sample is drawn from one `random.Random`, so a seed gives the same data on every machine.
Answers to grounding, counting and problems sit between <|begin_of_box|> and <|end_of_box|>, as
GLM-4.5V writes them; boxes are [x1,y1,x2,y2] in 0-1000 coordinates of the image.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..outputs.boxes import BOX_END, BOX_START

COLORS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (240, 210, 30),
          "purple": (140, 60, 180), "orange": (245, 140, 20), "black": (15, 15, 15), "white": (250, 250, 250)}
SHAPES = ("circle", "square", "triangle", "star")
PLURAL = {"circle": "circles", "square": "squares", "triangle": "triangles", "star": "stars"}
WORDS = ("cat", "sun", "tree", "river", "glmv", "vision", "apple", "moon", "robot", "house", "zebra", "piano",
         "cloud", "pixel", "model", "answer")
CHART_LABELS = ("A", "B", "C", "D", "E", "F", "Mon", "Tue", "Wed", "Thu", "Fri", "Q1", "Q2", "Q3", "Q4")
TASKS = ("grounding", "counting", "colour", "shape", "reading", "chart", "problem")

GROUNDING = ("Where is the {what}? Provide coordinates in [[xmin,ymin,xmax,ymax]] format.",
             "Tell me the position of the {what} in the picture. Answer in [x1,y1,x2,y2] format.",
             "Locate the {what} and give its bounding box.",
             "Find every {what} in the image and output the boxes.",
             "Give the bounding box of the {what}.",
             "Where in the image is the {what}? Answer with [x1,y1,x2,y2] coordinates.")
COUNT_ALL = ("How many shapes are there?", "How many objects are in the image?", "Count the shapes in the picture.",
             "What is the number of shapes in this image?")
COUNT_SOME = ("How many {what} are in the image?", "Count the {what}.", "How many {what} can you see?",
              "What is the number of {what} in the picture?")
COLOUR_Q = ("What colour is the {shape}?", "What is the color of the {shape}?", "Which colour does the {shape} have?")
SHAPE_Q = ("What shape is the {color} object?", "What is the shape of the {color} object?",
           "Which shape is drawn in {color}?")
READ_Q = ("What does the text in the image say?", "Read the text in the image.", "What is written in the picture?",
          "Transcribe the text shown.")
CHART_Q = ("Convert the chart to a Markdown table.", "Turn this bar chart into a Markdown table.",
           "Write the data of this chart as a Markdown table.")
PROBLEM_Q = ("Solve the problem in the image.", "What is the answer to the question in the picture?",
             "Work out the result shown in the image.")


@dataclass
class Shape:
    kind: str
    color: str
    box: tuple[int, int, int, int]  # pixels, x1 y1 x2 y2


@dataclass
class Glyph:
    char: str
    box: tuple[int, int, int, int]  # pixels, x1 y1 x2 y2


@dataclass
class Sample:
    task: str
    image: Image.Image
    question: str
    answer: str  # what follows </think>
    reasoning: str  # what goes inside <think>...</think>
    shapes: list[Shape] = field(default_factory=list)
    glyphs: list[Glyph] = field(default_factory=list)  # the rendered text's characters

    def messages(self, thinking: bool) -> list[dict]:
        return conversation([self], thinking)


def conversation(samples: list[Sample], thinking: bool) -> list[dict]:
    """An OpenAI-style conversation about the first sample's image, one turn per sample. With thinking
    off each user turn ends in /nothink, as GLM-4.5V's switch does, and the think block is empty."""
    messages = []
    for i, sample in enumerate(samples):
        question = sample.question if thinking else sample.question + "/nothink"
        answer = f"<think>{sample.reasoning if thinking else ''}</think>{sample.answer}"
        content = [{"type": "image", "image": sample.image}, {"type": "text", "text": question}] if i == 0 else question
        messages += [{"role": "user", "content": content}, {"role": "assistant", "content": answer}]
    return messages


def norm_box(box: tuple[int, int, int, int], width: int, height: int) -> list[int]:
    x1, y1, x2, y2 = box
    return [round(x1 * 1000 / width), round(y1 * 1000 / height), round(x2 * 1000 / width), round(y2 * 1000 / height)]


def background(rng: random.Random, width: int, height: int) -> Image.Image:
    """Plain, gradient or noisy, in muted mid-tones so that every shape colour stands out."""
    base = np.array([rng.randint(110, 190) for _ in range(3)], dtype=np.float32)
    style = rng.choice(("plain", "gradient", "noise"))
    pixels = np.broadcast_to(base, (height, width, 3)).copy()
    if style == "gradient":
        other = np.array([rng.randint(110, 190) for _ in range(3)], dtype=np.float32)
        t = np.linspace(0, 1, width if rng.random() < 0.5 else height, dtype=np.float32)
        ramp = t[None, :, None] if len(t) == width else t[:, None, None]
        pixels = base * (1 - ramp) + other * ramp + np.zeros((height, width, 3), np.float32)
    elif style == "noise":
        pixels += np.random.default_rng(rng.getrandbits(32)).normal(0, 12, (height, width, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def draw_shape(draw: ImageDraw.ImageDraw, kind: str, box: tuple[int, int, int, int], fill) -> None:
    x1, y1, x2, y2 = box
    if kind == "circle":
        draw.ellipse(box, fill=fill)
    elif kind == "square":
        draw.rectangle(box, fill=fill)
    elif kind == "triangle":
        draw.polygon([((x1 + x2) / 2, y1), (x2, y2), (x1, y2)], fill=fill)
    else:
        cx, cy, r = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2
        points = [(cx + (r if i % 2 == 0 else r * 0.45) * math.sin(i * math.pi / 5),
                   cy - (r if i % 2 == 0 else r * 0.45) * math.cos(i * math.pi / 5)) for i in range(10)]
        ys = [p[1] for p in points]  # a star's points do not reach the bottom of its square: stretch to fill it
        top, bottom = min(ys), max(ys)
        draw.polygon([(x, y1 + (y - top) * (y2 - y1) / (bottom - top)) for x, y in points], fill=fill)


def image_size(rng: random.Random) -> tuple[int, int]:
    return rng.randint(224, 640), rng.randint(224, 640)


def scene(rng: random.Random) -> tuple[Image.Image, list[Shape]]:
    """1 to 6 non-overlapping shapes, each 8% to 35% of the short side."""
    width, height = image_size(rng)
    image = background(rng, width, height)
    draw = ImageDraw.Draw(image)
    shapes: list[Shape] = []
    wanted = rng.randint(1, 6)
    for _ in range(200):
        if len(shapes) == wanted:
            break
        side = round(min(width, height) * rng.uniform(0.08, 0.35))
        x, y = rng.randint(0, width - side), rng.randint(0, height - side)
        box = (x, y, x + side, y + side)
        if any(box[0] < s.box[2] + 2 and s.box[0] < box[2] + 2 and box[1] < s.box[3] + 2 and s.box[1] < box[3] + 2
               for s in shapes):
            continue
        shape = Shape(rng.choice(SHAPES), rng.choice(list(COLORS)), box)
        draw_shape(draw, shape.kind, box, COLORS[shape.color])
        shapes.append(shape)
    return image, shapes


def font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def text_card(rng: random.Random, text: str) -> tuple[Image.Image, list[Glyph]]:
    """The text in one line spanning 40% to 90% of the width (at most 60% of the height), so that it
    stays legible after the processor scales the image down to the model's pixel budget; with the
    box of each character."""
    width, height = image_size(rng)
    image = background(rng, width, height)
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font(100))
    scale = min(width * rng.uniform(0.4, 0.9) / (right - left), height * 0.6 / (bottom - top))
    face = font(max(12, int(100 * scale)))
    left, top, right, bottom = draw.textbbox((0, 0), text, font=face)
    x = rng.randint(0, max(0, width - (right - left))) - left
    y = rng.randint(0, max(0, height - (bottom - top))) - top
    draw.text((x, y), text, font=face, fill=COLORS[rng.choice(("black", "white", "blue", "red"))])
    glyphs = [Glyph(char, (round(x + draw.textlength(text[:i], font=face)), y + top,
                           round(x + draw.textlength(text[:i + 1], font=face)), y + bottom))
              for i, char in enumerate(text) if not char.isspace()]
    return image, glyphs


def describe(shapes: list[Shape]) -> str:
    return ", ".join(f"a {s.color} {s.kind}" for s in shapes)


def grounding(rng: random.Random, image: Image.Image, shapes: list[Shape]) -> Sample:
    target = rng.choice(shapes)
    if rng.random() < 0.5:
        matches = [s for s in shapes if s.kind == target.kind and s.color == target.color]
        what = f"{target.color} {target.kind}"
    else:
        matches = [s for s in shapes if s.kind == target.kind]
        what = target.kind
    boxes = [norm_box(s.box, *image.size) for s in sorted(matches, key=lambda s: (s.box[1], s.box[0]))]
    coords = ",".join(f"[{b[0]},{b[1]},{b[2]},{b[3]}]" for b in boxes)
    answer = f"{BOX_START}{coords if len(boxes) == 1 else '[' + coords + ']'}{BOX_END}"
    reasoning = f"I see {describe(shapes)}. " + (
        f"There is one {what}; I give its box in 0-1000 coordinates." if len(boxes) == 1 else
        f"There are {len(boxes)} matching '{what}'; I give their boxes, top to bottom, in 0-1000 coordinates.")
    return Sample("grounding", image, rng.choice(GROUNDING).format(what=what), answer, reasoning, shapes)


def counting(rng: random.Random, image: Image.Image, shapes: list[Shape]) -> Sample:
    if rng.random() < 0.4:
        n, question = len(shapes), rng.choice(COUNT_ALL)
        reasoning = f"I see {describe(shapes)}. That is {len(shapes)} shapes."
    else:
        kind, color = rng.choice(SHAPES), rng.choice(list(COLORS)) if rng.random() < 0.6 else None
        if rng.random() < 0.7:  # mostly ask about something that is there
            pick = rng.choice(shapes)
            kind, color = pick.kind, (pick.color if color is not None else None)
        n = sum(s.kind == kind and (color is None or s.color == color) for s in shapes)
        what = f"{color} {PLURAL[kind]}" if color else PLURAL[kind]
        question = rng.choice(COUNT_SOME).format(what=what)
        reasoning = f"I see {describe(shapes)}. Of these, {n} {'is' if n == 1 else 'are'} {what}."
    return Sample("counting", image, question, f"{BOX_START}{n}{BOX_END}", reasoning, shapes)


def colour_or_shape(rng: random.Random, task: str, image: Image.Image, shapes: list[Shape]) -> Sample | None:
    """None when no shape is the only one of its kind (colour) or colour (shape): the question would
    be ambiguous."""
    key = (lambda s: s.kind) if task == "colour" else (lambda s: s.color)
    unique = [s for s in shapes if sum(key(o) == key(s) for o in shapes) == 1]
    if not unique:
        return None
    target = rng.choice(unique)
    if task == "colour":
        question, answer = rng.choice(COLOUR_Q).format(shape=target.kind), f"The {target.kind} is {target.color}."
    else:
        question, answer = rng.choice(SHAPE_Q).format(color=target.color), f"It is a {target.kind}."
    reasoning = f"I see {describe(shapes)}. The {target.color} object is the {target.kind}."
    return Sample(task, image, question, answer, reasoning, shapes)


def reading(rng: random.Random) -> Sample:
    text = (rng.choice(WORDS)[:8] if rng.random() < 0.5 else str(rng.randint(0, 10 ** rng.randint(1, 8) - 1)))
    image, glyphs = text_card(rng, text)
    return Sample("reading", image, rng.choice(READ_Q), text, f"The image shows the text \"{text}\".", glyphs=glyphs)


def slot_width(width: int, bars: int) -> float:
    return (width - 20) / bars


def chart(rng: random.Random) -> Sample:
    labels = rng.sample(CHART_LABELS, rng.randint(2, 6))
    values = [rng.randint(1, 99) for _ in labels]
    width, height = image_size(rng)
    width = max(width, 80 * len(labels))
    image = Image.new("RGB", (width, height), (250, 250, 250))
    draw = ImageDraw.Draw(image)
    size = max(12, min(height // 10, int(slot_width(width, len(labels)) * 0.4)))
    top, bottom, left = int(size * 1.5), height - int(size * 1.5), 10
    slot = slot_width(width, len(labels))
    color = COLORS[rng.choice(("blue", "green", "red", "orange", "purple"))]
    for i, (label, value) in enumerate(zip(labels, values)):
        x1 = left + i * slot + slot * 0.2
        x2 = left + (i + 1) * slot - slot * 0.2
        y1 = bottom - (bottom - top) * value / 100
        draw.rectangle((x1, y1, x2, bottom), fill=color)
        draw.text(((x1 + x2) / 2, y1 - 2), str(value), font=font(size), fill=(0, 0, 0), anchor="mb")
        draw.text(((x1 + x2) / 2, bottom + 2), label, font=font(size), fill=(0, 0, 0), anchor="mt")
    table = "| label | value |\n| --- | --- |\n" + "\n".join(f"| {lab} | {val} |" for lab, val in zip(labels, values))
    return Sample("chart", image, rng.choice(CHART_Q), table,
                  f"The chart has {len(labels)} bars: " + ", ".join(f"{a} is {b}" for a, b in zip(labels, values)) + ".")


def problem(rng: random.Random) -> Sample:
    op = rng.choice("+-x")
    a, b = rng.randint(0, 99), rng.randint(0, 99 if op != "x" else 12)
    if op == "-" and b > a:
        a, b = b, a
    result = a + b if op == "+" else a - b if op == "-" else a * b
    image, glyphs = text_card(rng, f"{a} {op} {b} = ?")
    return Sample("problem", image, rng.choice(PROBLEM_Q), f"{BOX_START}{result}{BOX_END}",
                  f"The image asks {a} {op} {b}. {steps(a, op, b)}", glyphs=glyphs)


def steps(a: int, op: str, b: int) -> str:
    """Tens and units worked separately: the short written method a pupil would show."""
    tens, units = a // 10 * 10, a % 10
    if op == "+":
        return f"{a} + {b} = {a} + {b // 10 * 10} + {b % 10} = {a + b // 10 * 10} + {b % 10} = {a + b}."
    if op == "-":
        return f"{a} - {b} = {a} - {b // 10 * 10} - {b % 10} = {a - b // 10 * 10} - {b % 10} = {a - b}."
    return f"{a} x {b} = {tens} x {b} + {units} x {b} = {tens * b} + {units * b} = {a * b}."


SCENE_TASKS = ("grounding", "counting", "colour", "shape")


def scene_question(rng: random.Random, task: str, image: Image.Image, shapes: list[Shape]) -> Sample | None:
    if task == "grounding":
        return grounding(rng, image, shapes)
    if task == "counting":
        return counting(rng, image, shapes)
    return colour_or_shape(rng, task, image, shapes)


def make_sample(rng: random.Random, task: str | None = None) -> Sample:
    task = task or rng.choice(TASKS)
    if task not in SCENE_TASKS:
        return {"reading": reading, "chart": chart, "problem": problem}[task](rng)
    while True:  # a colour or shape question needs a scene where it has one answer
        sample = scene_question(rng, task, *scene(rng))
        if sample is not None:
            return sample


def follow_ups(rng: random.Random, first: Sample, count: int) -> list[Sample]:
    """Up to `count` more questions of any scene task about the scene of `first`."""
    asked = (scene_question(rng, rng.choice(SCENE_TASKS), first.image, first.shapes) for _ in range(count))
    return [sample for sample in asked if sample is not None]
