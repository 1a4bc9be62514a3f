"""Training examples: conversations with images, tokenized through the checkpoint's own chat template,
with a target only where the assistant speaks.

Sources are indexable (`example(i)`), so batch k is the same on every run and after a resume:
- `JsonlSource`: a JSONL file of conversations, OpenAI-style (`{"messages": [...]}` with image_url
  parts) or the common `{"messages": [...], "images": [...]}` form whose texts mark images with
  `<image>`; paths are relative to the file. The order is reshuffled every epoch, from the seed.
- `SyntheticSource`: the synthetic world (synthetic.py), drawn afresh for every index.
Batches are cut from pools of examples sorted by length, so that little of a batch is padding.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import json
import random
from dataclasses import dataclass
from pathlib import Path

import torch

from ..inputs.prompt import MediaItem, PromptBuilder, load_media, normalize_messages
from ..model.modeling import rope_positions
from .synthetic import SCENE_TASKS, TASKS, conversation, follow_ups, make_sample

IGNORE = -100


@dataclass
class Example:
    token_ids: list[int]
    targets: list[int]  # targets[t] is the token the model must predict after token t, or IGNORE
    media: list[MediaItem]
    positions: torch.Tensor  # [3, len(token_ids)] M-RoPE positions

    def __len__(self) -> int:
        return len(self.token_ids)


class ExampleError(ValueError):
    pass


def encode(builder: PromptBuilder, messages: list[dict]) -> Example:
    """Token ids and next-token targets of a whole conversation. Each assistant turn is learned as
    the model would produce it after the generation prompt, plus the token that follows it (the next
    role token, or <|user|> at the end), which is how a GLM model ends its turn. Assistant turns keep
    their reasoning (clear_thinking off), and whether a turn thinks is up to the data (/nothink)."""
    template_messages, refs = normalize_messages(messages)
    if not any(m["role"] == "assistant" for m in template_messages):
        raise ExampleError("the conversation has no assistant message to learn from")
    media = load_media(refs, builder.limits, builder.processor)
    placeholders = (builder.image_token, builder.video_token)

    @functools.cache  # the whole conversation is also the last assistant turn's end
    def ids_of(upto: int, generation_prompt: bool) -> list[int]:
        text = builder._render(template_messages[:upto], True, None, generation_prompt, clear_thinking=False)
        used = sum(text.count(p) for p in placeholders)
        return builder.tokenizer.encode(builder.expand(text, media[:used]))

    ids = list(ids_of(len(template_messages), False))
    targets = [IGNORE] * len(ids)
    end_of_turn = builder.tokenizer.token_id("<|user|>")
    for i, msg in enumerate(template_messages):
        if msg["role"] != "assistant":
            continue
        turn = ids_of(i + 1, False)
        start, end = len(ids_of(i, True)), len(turn)
        if end == len(ids):
            ids.append(end_of_turn)
            targets.append(IGNORE)
        if turn != ids[:end] or start > end:
            raise ExampleError("the chat template does not render this conversation turn by turn")
        for t in range(start - 1, end):  # predict each assistant token and the one after the turn
            targets[t] = ids[t + 1]
    positions, _ = rope_positions(ids, [m.grid for m in media], builder.config)
    return Example(ids, targets, media, positions)


def read_jsonl(path: str | Path) -> list[list[dict]]:
    """Conversations from a JSONL file, with media references made absolute; errors name the line."""
    path = Path(path)
    conversations = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            conversations.append(_conversation(record, path.parent))
        except (json.JSONDecodeError, ValueError, TypeError, KeyError) as exc:
            raise ExampleError(f"{path}:{number}: {exc}") from exc
    if not conversations:
        raise ExampleError(f"{path} holds no conversations")
    return conversations


def _conversation(record: dict, root: Path) -> list[dict]:
    messages = record["messages"]
    if not isinstance(messages, list) or not messages:
        raise ValueError("'messages' must be a non-empty list")
    media = {"image": list(record.get("images") or []), "video": list(record.get("videos") or [])}
    out = []
    for msg in messages:
        content = msg.get("content")
        if isinstance(content, str) and ("<image>" in content or "<video>" in content):
            content = _split_markers(content, media)
        if isinstance(content, list):
            content = [_resolve(part, root) for part in content]
        out.append({**msg, "content": content})
    if media["image"] or media["video"]:
        raise ValueError("more files in 'images'/'videos' than <image>/<video> markers in the messages")
    return out


def _split_markers(text: str, media: dict[str, list]) -> list[dict]:
    """'<image>What is this?' with images [a.png] -> [image part, text part]."""
    parts, rest = [], text
    while True:
        found = [(rest.find(f"<{kind}>"), kind) for kind in ("image", "video") if f"<{kind}>" in rest]
        if not found:
            break
        at, kind = min(found)
        if rest[:at]:
            parts.append({"type": "text", "text": rest[:at]})
        if not media[kind]:
            raise ValueError(f"more <{kind}> markers than entries in '{kind}s'")
        parts.append({"type": f"{kind}_url", f"{kind}_url": {"url": media[kind].pop(0)}})
        rest = rest[at + len(kind) + 2:]
    if rest:
        parts.append({"type": "text", "text": rest})
    return parts


def _resolve(part: dict, root: Path) -> dict:
    """Relative file references become absolute paths beside the JSONL file."""
    kind = part.get("type")
    if kind not in ("image_url", "video_url", "image", "video"):
        return part
    ref = part.get(kind)
    url = ref.get("url") if isinstance(ref, dict) else ref
    if isinstance(url, str) and "://" not in url and not url.startswith("data:") and not Path(url).is_absolute():
        url = str(root / url)
    return {"type": kind, kind: {**(ref if isinstance(ref, dict) else {}), "url": url}}


class JsonlSource:
    def __init__(self, builder: PromptBuilder, path: str | Path, seed: int):
        self.builder, self.seed = copy.copy(builder), seed
        self.builder.limits = dataclasses.replace(builder.limits, allow_local_files=True)  # training data is local
        self.conversations = read_jsonl(path)
        self._order: tuple[int, list[int]] = (-1, [])

    def __len__(self) -> int:
        return len(self.conversations)

    def example(self, index: int) -> Example:
        epoch, i = divmod(index, len(self.conversations))
        if self._order[0] != epoch:
            order = list(range(len(self.conversations)))
            random.Random(f"{self.seed}:{epoch}").shuffle(order)
            self._order = (epoch, order)
        return encode(self.builder, self.conversations[self._order[1][i]])


class SyntheticSource:
    """Samples of the synthetic world; `weights` sets how often each task comes up, half of the
    conversations think, half answer directly, and a scene is asked up to `questions` questions in
    turn (one image prefill then teaches several answers)."""

    def __init__(self, builder: PromptBuilder, seed: int, weights: dict[str, float] | None = None,
                 questions: int = 1):
        self.builder, self.seed, self.questions = builder, seed, questions
        self.weights = weights or {task: 1.0 for task in TASKS}

    def example(self, index: int) -> Example:
        rng = random.Random(f"{self.seed}:{index}")
        task = rng.choices(list(self.weights), weights=list(self.weights.values()))[0]
        samples = [make_sample(rng, task)]
        if task in SCENE_TASKS:
            samples += follow_ups(rng, samples[0], rng.randint(0, self.questions - 1))
        return encode(self.builder, conversation(samples, thinking=rng.random() < 0.5))


@dataclass
class Batch:
    input_ids: torch.Tensor  # [B * L], right-padded rows flattened
    targets: torch.Tensor  # [B * L]
    positions: torch.Tensor  # [3, B * L]
    pixel_values: torch.Tensor | None
    grids: list[tuple[int, int, int]]
    rows: int  # B
    length: int  # L

    @property
    def num_targets(self) -> int:
        return int((self.targets != IGNORE).sum())


def collate(examples: list[Example], pad_id: int) -> Batch:
    length = max(len(e) for e in examples)
    ids = torch.full((len(examples), length), pad_id, dtype=torch.long)
    targets = torch.full((len(examples), length), IGNORE, dtype=torch.long)
    positions = torch.zeros((3, len(examples), length), dtype=torch.long)
    for row, e in enumerate(examples):
        ids[row, :len(e)] = torch.tensor(e.token_ids)
        targets[row, :len(e)] = torch.tensor(e.targets)
        positions[:, row, :len(e)] = e.positions
    media = [m for e in examples for m in e.media]
    pixels = torch.cat([m.pixel_values for m in media]) if media else None
    return Batch(ids.flatten(), targets.flatten(), positions.flatten(1), pixels, [m.grid for m in media],
                 len(examples), length)


class Batches:
    """Batch k of a run: pools of `pool` batches are drawn, sorted by length and cut into `pool`
    batches (smaller ones when examples over max_length were left out), which come in a seeded
    random order. Batch k is thus pool k // pool, whatever happened before it."""

    def __init__(self, source, batch_size: int, pad_id: int, seed: int, max_length: int, pool: int = 8):
        self.source, self.batch_size, self.pad_id = source, batch_size, pad_id
        self.seed, self.max_length, self.pool = seed, max_length, pool
        self.skipped = 0

    def pool_batches(self, index: int) -> list[Batch | None]:
        size = self.batch_size * self.pool
        examples = []
        for i in range(index * size, (index + 1) * size):
            e = self.source.example(i)
            if len(e) > self.max_length:  # cannot cut an image in half: leave the example out
                self.skipped += 1
                continue
            examples.append(e)
        examples.sort(key=len)
        n = len(examples)
        batches = [collate(examples[k * n // self.pool:(k + 1) * n // self.pool], self.pad_id)
                   if (k + 1) * n // self.pool > k * n // self.pool else None for k in range(self.pool)]
        random.Random(f"{self.seed}:pool:{index}").shuffle(batches)
        return batches
