"""`glmv ground IMAGE "the red car"`: ask for boxes, scale them from 0-1000 to the image's pixels,
draw them, print them."""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass

from PIL import Image

from ..inputs.media import load_image
from ..outputs.boxes import draw_boxes, parse_boxes, to_pixels
from .client import ModelError, connect, image_part

QUESTION = "Tell me the position of {what} in the picture. Answer in [x1,y1,x2,y2] format."


@dataclass
class Grounding:
    image: Image.Image
    boxes: list[list[int]]  # pixels of the original image
    thousandths: list[list[float]]  # as the model wrote them
    reasoning: str
    answer: str


def question_for(query: str) -> str:
    query = query.strip().rstrip("?.")
    return QUESTION.format(what=query if query.lower().startswith(("the ", "a ", "an ", "every ", "all ")) else
                           f"the {query}")


def ground(model, image_path: str, query: str, thinking: bool = True, max_tokens: int = 1024) -> Grounding:
    image = load_image(image_path)
    messages = [{"role": "user", "content": [image_part(image_path), {"type": "text", "text": question_for(query)}]}]
    reply = model.ask(messages, thinking=thinking, max_tokens=max_tokens)
    thousandths = parse_boxes(reply.content)
    return Grounding(image, [to_pixels(b, image.width, image.height) for b in thousandths], thousandths, reply.reasoning,
                     reply.content)


def main(args) -> int:
    try:
        model = connect(args.model, args.url, args.api_key, args.dtype, args.device)
        result = ground(model, args.image, args.query, thinking=not args.no_thinking, max_tokens=args.max_tokens)
    except (ModelError, ValueError, OSError) as exc:
        print(f"glmv ground: {exc}", file=sys.stderr)
        return 1
    labels = [args.query if len(result.boxes) == 1 else f"{args.query} {i + 1}" for i in range(len(result.boxes))]
    if args.output:
        draw_boxes(result.image, result.boxes, labels).save(args.output)
    if args.json:
        print(json.dumps({"query": args.query, "boxes": [{"label": label, "box": box, "thousandths": t}
                                                         for label, box, t in zip(labels, result.boxes, result.thousandths)],
                          "answer": result.answer}))
    else:
        if not result.boxes:
            print(f"no box in the answer: {result.answer}")
        for label, box in zip(labels, result.boxes):
            print(f"{label}: x1={box[0]} y1={box[1]} x2={box[2]} y2={box[3]}")
        if args.output:
            print(f"drawn: {args.output}")
    return 0 if result.boxes else 3
