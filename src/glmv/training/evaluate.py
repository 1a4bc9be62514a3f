"""Scores on held-out scenes of the synthetic world, asked through the inference engine.

Scenes come from their own seed (training draws from "{seed}:{index}" strings, evaluation from
"eval:{seed}:{task}:{index}"), questions keep their varied wording, decoding is greedy. Metrics:
grounding, the mean IoU of the boxes (paired by overlap; a missing or extra box scores 0); chart,
the share of table cells right; every other task, the share of exact answers.

Beside the scores, how much the answers rest on the image: the loss of the expected answer
(teacher-forced, nats per answer) with its own image and with another held-out image of the same
task. A model that ignores the image gives both the same loss, however well it writes the answers.
"""
from __future__ import annotations

import dataclasses
import math
import random
import time
from pathlib import Path

from ..outputs.boxes import boxed, matched_iou, parse_boxes
from ..sampling_params import SamplingParams
from .synthetic import COLORS, SHAPES, TASKS, Sample, make_sample

TARGETS = {"grounding": 0.75, "counting": 0.95, "colour": 0.98, "shape": 0.98, "reading": 0.90, "chart": 0.90,
           "problem": 0.90}
METRICS = {"grounding": "mean IoU", "chart": "cells right"}


def held_out(task: str, samples: int, seed: int) -> list[Sample]:
    return [make_sample(random.Random(f"eval:{seed}:{task}:{i}"), task) for i in range(samples)]


def table_cells(text: str) -> list[list[str]]:
    """The body rows of a Markdown table (header and separator dropped), cells stripped."""
    rows = [line.strip().strip("|").split("|") for line in text.strip().splitlines() if line.strip().startswith("|")]
    rows = [[cell.strip() for cell in row] for row in rows]
    return [row for row in rows[1:] if not all(set(cell) <= set("-: ") for cell in row)]


def words_of(text: str, vocabulary) -> set[str]:
    found = {w.strip(".,!?").lower() for w in text.split()}
    return found & set(vocabulary)


def score(sample: Sample, answer: str) -> float:
    """How right `answer` (the content after thinking) is for `sample`, from 0 to 1."""
    if sample.task == "grounding":
        return matched_iou(parse_boxes(answer), parse_boxes(sample.answer))
    if sample.task in ("counting", "problem"):
        return float(boxed(answer) == boxed(sample.answer))
    if sample.task == "colour":
        return float(words_of(answer, COLORS) == words_of(sample.answer, COLORS))
    if sample.task == "shape":
        return float(words_of(answer, SHAPES) == words_of(sample.answer, SHAPES))
    if sample.task == "chart":
        expected, got = table_cells(sample.answer), table_cells(answer)
        right = sum(a == b for row, other in zip(expected, got) for a, b in zip(row, other))
        return right / (2 * max(len(expected), len(got)))
    return float(answer.strip() == sample.answer.strip())


def evaluate(model: str | Path, samples: int = 100, seed: int = 1234, tasks: list[str] | None = None,
             thinking: tuple[bool, ...] = (False, True), device: str = "cpu", dtype: str = "bfloat16",
             max_tokens: int = 384) -> dict:
    """Score `model` on `samples` held-out scenes per task in each thinking mode; returns a report
    (see markdown()) that also keeps the first wrong answers of each task for reading."""
    from ..llm import LLM

    began = time.perf_counter()
    llm = LLM(model, dtype=dtype, device=device, progress=False)
    params = SamplingParams(temperature=0.0, max_tokens=max_tokens)
    report = {"model": str(model), "samples_per_task": samples, "seed": seed, "dtype": dtype, "modes": {}}
    scenes_of = {task: held_out(task, samples, seed) for task in tasks or TASKS}
    for mode in thinking:
        results = {}
        for task, scenes in scenes_of.items():
            conversations = [[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": s.image}},
                                                           {"type": "text", "text": s.question}]}] for s in scenes]
            outputs = llm.chat(conversations, params, thinking=mode)
            scores = [score(s, out.content) for s, out in zip(scenes, outputs)]
            mean = sum(scores) / len(scores)
            misses = [{"question": s.question, "expected": s.answer, "answer": out.content}
                      for s, out, value in zip(scenes, outputs, scores) if value < 1][:3]
            results[task] = {"score": round(mean, 4), "metric": METRICS.get(task, "exact"),
                             "stderr": round(math.sqrt(max(mean * (1 - mean), 0) / len(scores)), 4),
                             "target": TARGETS[task], "met": mean >= TARGETS[task], "examples": misses}
        report["modes"]["thinking" if mode else "direct"] = results
    report["image_reliance"] = image_reliance(model, scenes_of, device)
    report["seconds"] = round(time.perf_counter() - began, 1)
    return report


def teacher_forced_loss(model: str | Path, device: str = "cpu"):
    """`model`'s prompt builder, and a function that gives the summed loss in nats over the target
    tokens of a list of encoded examples, and their count (float32, no gradients)."""
    import torch

    from ..inputs.prompt import PromptBuilder
    from ..model.loader import load_model
    from .data import collate
    from .trainer import batch_loss

    builder = PromptBuilder.from_pretrained(model)
    net = load_model(model, dtype="float32", device=device, progress=False)
    pad = builder.tokenizer.token_id("<|endoftext|>")

    def summed(examples) -> tuple[float, int]:
        batch = collate(examples, pad)
        if not batch.num_targets:
            return 0.0, 0
        with torch.no_grad():
            return batch_loss(net, batch, torch.device(device)).item() * batch.num_targets, batch.num_targets

    return builder, summed


def image_reliance(model: str | Path, scenes_of: dict[str, list[Sample]], device: str = "cpu") -> dict:
    """Per task, the mean loss in nats of each held-out expected answer (direct mode) given its own
    image and given the next scene's image, in float32."""
    from .data import encode
    from .synthetic import conversation

    builder, summed = teacher_forced_loss(model, device)

    def nats(sample: Sample) -> float:
        return summed([encode(builder, conversation([sample], thinking=False))])[0]

    out = {}
    for task, scenes in scenes_of.items():
        own = [nats(s) for s in scenes]
        other = [nats(dataclasses.replace(s, image=scenes[(i + 1) % len(scenes)].image)) for i, s in enumerate(scenes)]
        out[task] = {"own_image": round(sum(own) / len(own), 3), "other_image": round(sum(other) / len(other), 3)}
    return out


def markdown(report: dict) -> str:
    modes = list(report["modes"])
    lines = ["| task | metric | target | " + " | ".join(modes) + " |",
             "| --- | --- | --- | " + " | ".join("---" for _ in modes) + " |"]
    tasks = list(next(iter(report["modes"].values())))
    for task in tasks:
        first = report["modes"][modes[0]][task]
        cells = [f"{report['modes'][m][task]['score']:.3f}" + ("" if report["modes"][m][task]["met"] else " (below)")
                 for m in modes]
        lines.append(f"| {task} | {first['metric']} | {first['target']:.2f} | " + " | ".join(cells) + " |")
    lines.append(f"\n{report['samples_per_task']} held-out scenes per task (seed {report['seed']}), "
                 f"{report['dtype']}, greedy decoding; {report['seconds']:.0f} s.")
    lines += ["\nLoss of the expected answer (nats per answer, direct mode), with its own image and with another:\n",
              "| task | own image | another image |", "| --- | --- | --- |"]
    lines += [f"| {task} | {r['own_image']:.2f} | {r['other_image']:.2f} |" for task, r in report["image_reliance"].items()]
    return "\n".join(lines)


def validation_loss(model: str | Path, data: str | Path, cfg) -> float:
    """Mean loss per target token over a JSONL of held-out conversations (each once)."""
    from .data import JsonlSource

    builder, summed = teacher_forced_loss(model, cfg.device)
    source = JsonlSource(builder, data, cfg.seed)
    examples = [e for e in map(source.example, range(len(source))) if len(e) <= cfg.max_length]
    total, count = 0.0, 0
    for k in range(0, len(examples), cfg.batch_size):
        nats, targets = summed(examples[k:k + cfg.batch_size])
        total, count = total + nats, count + targets
    return total / max(count, 1)
