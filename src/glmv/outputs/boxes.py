"""Grounding boxes in GLM-V answers.

GLM-V writes boxes as [x1,y1,x2,y2] in thousandths of the image's width and height, usually between
<|begin_of_box|> and <|end_of_box|>, one box or a list of them ([[...],[...]]), sometimes inside
JSON ({"bbox_2d": [...]}). Every bracketed group of four numbers is a box, wherever it stands.
"""
from __future__ import annotations

import re

BOX_START, BOX_END = "<|begin_of_box|>", "<|end_of_box|>"
_NUMBER = r"\s*(-?\d+(?:\.\d+)?)\s*"
_BOX = re.compile(r"\[" + ",".join([_NUMBER] * 4) + r"\]")


def parse_boxes(text: str) -> list[list[float]]:
    """Every [x1,y1,x2,y2] in `text`, in order, as written (0-1000 coordinates)."""
    return [[float(v) for v in m.groups()] for m in _BOX.finditer(text)]


def boxed(text: str) -> str:
    """What stands between the box tokens (all of `text` when there are none), stripped."""
    start = text.find(BOX_START)
    if start < 0:
        return text.strip()
    end = text.find(BOX_END, start)
    return text[start + len(BOX_START):end if end >= 0 else None].strip()


def to_pixels(box: list[float], width: int, height: int) -> list[int]:
    """A 0-1000 box in pixels of a width x height image, clamped to the image."""
    x1, y1, x2, y2 = box
    scale = ((x1, width), (y1, height), (x2, width), (y2, height))
    return [min(size, max(0, round(v * size / 1000))) for v, size in scale]


def iou(a: list[float], b: list[float]) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(0.0, w) * max(0.0, h)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def matched_iou(predicted: list[list[float]], expected: list[list[float]]) -> float:
    """Mean IoU after pairing boxes greedily by overlap; a missing or extra box counts as 0."""
    if not predicted and not expected:
        return 1.0
    pairs = sorted(((iou(p, e), i, j) for i, p in enumerate(predicted) for j, e in enumerate(expected)), reverse=True)
    used_p, used_e, total = set(), set(), 0.0
    for value, i, j in pairs:
        if i not in used_p and j not in used_e:
            used_p.add(i)
            used_e.add(j)
            total += value
    return total / max(len(predicted), len(expected))


_POINT = re.compile(r"\[" + ",".join([_NUMBER] * 2) + r"\]")


def parse_points(text: str) -> list[list[float]]:
    """Every [x,y] in `text` that is not part of a box (0-1000 coordinates)."""
    spans = [m.span() for m in _BOX.finditer(text)]
    return [[float(v) for v in m.groups()] for m in _POINT.finditer(text)
            if not any(a <= m.start() < b for a, b in spans)]


def draw_boxes(image, boxes: list[list[int]], labels: list[str], width: int | None = None):
    """A copy of `image` with each pixel box outlined and labelled, in colours that differ per box."""
    from PIL import ImageDraw, ImageFont

    palette = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240)]
    out = image.convert("RGB")
    draw = ImageDraw.Draw(out)
    width = width or max(2, round(min(out.size) / 200))
    font = ImageFont.load_default(size=max(12, min(out.size) // 30))
    for i, (box, label) in enumerate(zip(boxes, labels)):
        color = palette[i % len(palette)]
        draw.rectangle(box, outline=color, width=width)
        left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
        y = box[1] - (bottom - top) - 2 * width if box[1] - (bottom - top) - 2 * width >= 0 else box[3]
        draw.rectangle((box[0], y, box[0] + right - left + 2 * width, y + bottom - top + 2 * width), fill=color)
        draw.text((box[0] + width - left, y + width - top), label, fill=(255, 255, 255), font=font)
    return out
