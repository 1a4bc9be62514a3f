"""From OpenAI/Z.AI-style messages to model inputs: token ids, media tensors and M-RoPE positions.

1. Media parts are pulled out of the messages in order and loaded (images, videos).
2. The checkpoint's chat template renders the conversation; each image item leaves one
   `<|image|>` and each video item one `<|video|>` in the text.
3. Each `<|image|>` is repeated once per merged patch; each `<|video|>` becomes one
   `<|begin_of_image|><|image|>*n<|end_of_image|>{second}` group per frame pair.
4. The text is tokenized, and the 3D positions are computed from the media grids.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from ..config import ModelConfig
from ..model.modeling import rope_positions
from .chat_template import find_chat_template, render_chat_template
from .documents import read_documents
from .media import MediaError, MediaLimits, load_image, load_video
from .processor import ProcessorConfig, process_image, process_video
from .tokenizer import Tokenizer

ROLES = ("system", "user", "assistant", "tool", "observation")


@dataclass
class MediaItem:
    kind: str  # "image" or "video"
    pixel_values: torch.Tensor  # [patches, C*T*p*p] float32
    grid: tuple[int, int, int]  # (t, h, w) in patches; t = frame pairs for a video
    timestamps: list[float] = field(default_factory=list)  # video: seconds of each sampled frame

    @property
    def num_tokens(self) -> int:
        t, h, w = self.grid
        return t * h * w // 4


@dataclass
class Prompt:
    token_ids: list[int]
    media: list[MediaItem]
    positions: torch.Tensor  # [3, len(token_ids)]
    rope_delta: int  # decode position = index + rope_delta on all three axes
    text: str


def normalize_messages(messages: list[dict]) -> tuple[list[dict], list[tuple[str, dict, str]]]:
    """Messages as the template wants them (media parts become {"type": "image"} / {"type": "video"}),
    and the media references in order: (kind, options with "url", where in the messages)."""
    if not isinstance(messages, list) or not messages:
        raise ValueError("messages must be a non-empty list")
    out, refs = [], []
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or msg.get("role") not in ROLES:
            raise ValueError(f"messages[{i}] needs a role among {', '.join(ROLES)}")
        msg = {k: v for k, v in msg.items() if v is not None}
        content = msg.get("content", "")
        if isinstance(content, list):
            msg["content"] = [_part(part, f"messages[{i}].content[{j}]", refs) for j, part in enumerate(content)]
        elif not isinstance(content, str):
            raise ValueError(f"messages[{i}].content must be a string or a list of parts")
        out.append(msg)
    return out, refs


def _part(part, where: str, refs: list) -> dict:
    if not isinstance(part, dict):
        raise ValueError(f"{where} must be an object")
    kind = part.get("type")
    if kind == "text":
        if not isinstance(part.get("text"), str):
            raise ValueError(f"{where}.text must be a string")
        return {"type": "text", "text": part["text"]}
    if kind in ("image_url", "image", "video_url", "video"):
        media = "image" if kind.startswith("image") else "video"
        ref = part.get(kind)
        opts = dict(ref) if isinstance(ref, dict) else {"url": ref}
        if not isinstance(opts.get("url"), (str, Image.Image)):
            raise ValueError(f"{where}.{kind} needs a url")
        refs.append((media, opts, where))
        return {"type": media}
    raise ValueError(f"{where} has unsupported type {kind!r}")


def content_parts(messages: list[dict]):
    """(message index, part index, part) for every object part of every list content."""
    for i, msg in enumerate(messages):
        content = msg.get("content") if isinstance(msg, dict) else None
        for j, part in enumerate(content if isinstance(content, list) else []):
            if isinstance(part, dict):
                yield i, j, part


def count_media(messages: list[dict]) -> dict[str, int]:
    """How many parts of each media type ("image_url", "video_url", "file_url") the messages hold."""
    counts = {"image_url": 0, "video_url": 0, "file_url": 0}
    for _, _, part in content_parts(messages):
        kind = {"image": "image_url", "video": "video_url", "file": "file_url"}.get(part.get("type"), part.get("type"))
        if kind in counts:
            counts[kind] += 1
    return counts


def check_media_counts(messages: list[dict], limits: MediaLimits) -> None:
    counts = count_media(messages)
    for kind, limit in (("image_url", limits.max_images), ("video_url", limits.max_videos),
                        ("file_url", limits.max_files)):
        if counts[kind] > limit:
            raise MediaError(f"{counts[kind]} {kind} parts in one request; at most {limit} are allowed")
    if counts["file_url"] and (counts["image_url"] or counts["video_url"]):
        raise MediaError("file_url parts cannot be combined with image_url or video_url parts in one request")


def expand_documents(messages: list[dict], limits: MediaLimits, proc: ProcessorConfig) -> list[dict]:
    """The messages with each file_url part replaced by the parts that stand for the document."""
    urls, where = [], []
    for i, j, part in content_parts(messages):
        if part.get("type") in ("file_url", "file"):
            ref = part.get(part["type"])
            url = ref.get("url") if isinstance(ref, dict) else ref
            if not isinstance(url, str):
                raise ValueError(f"messages[{i}].content[{j}].{part['type']} needs a url")
            urls.append(url)
            where.append((i, j))
    if not urls:
        return messages
    try:
        documents = read_documents(urls, limits, proc)
    except MediaError as exc:
        raise MediaError(f"file_url: {exc}") from exc
    replaced = {pos: parts for pos, parts in zip(where, documents)}
    out = []
    for i, msg in enumerate(messages):
        if any(pos[0] == i for pos in replaced):
            content = []
            for j, part in enumerate(msg["content"]):
                content.extend(replaced.get((i, j), [part]))
            msg = {**msg, "content": content}
        out.append(msg)
    return out


def load_media(refs: list[tuple[str, dict, str]], limits: MediaLimits, proc: ProcessorConfig) -> list[MediaItem]:
    items = []
    for kind, opts, where in refs:
        try:
            if kind == "image":
                pixels, grid = process_image(load_image(opts["url"], limits), proc)
                items.append(MediaItem("image", torch.from_numpy(pixels), grid))
            else:
                video = load_video(opts["url"], proc, limits, fps=opts.get("fps"), max_frames=opts.get("max_frames"))
                pixels, grid = process_video(video.frames, proc)
                items.append(MediaItem("video", torch.from_numpy(pixels), grid, video.timestamps))
        except MediaError as exc:
            raise MediaError(f"{where}: {exc}") from exc
    return items


class PromptBuilder:
    def __init__(self, tokenizer: Tokenizer, template: str, model_config: ModelConfig, processor: ProcessorConfig,
                 limits: MediaLimits | None = None):
        self.tokenizer, self.template, self.config, self.processor = tokenizer, template, model_config, processor
        self.limits = limits or MediaLimits()
        tok = tokenizer.id_to_token
        self.image_token, self.video_token = tok(model_config.image_token_id), tok(model_config.video_token_id)
        self.image_start, self.image_end = tok(model_config.image_start_token_id), tok(model_config.image_end_token_id)

    @classmethod
    def from_pretrained(cls, path: str | Path, limits: MediaLimits | None = None,
                        model_config: ModelConfig | None = None) -> "PromptBuilder":
        """The prompt builder of a checkpoint folder: its tokenizer, chat template and processor."""
        return cls(Tokenizer(path), find_chat_template(path), model_config or ModelConfig.from_pretrained(path),
                   ProcessorConfig.from_pretrained(path), limits)

    def render(self, messages: list[dict], thinking: bool = True, tools: list[dict] | None = None,
               add_generation_prompt: bool = True, clear_thinking: bool = True) -> str:
        """The conversation as text, one placeholder per image or video. clear_thinking=False keeps the
        reasoning of assistant turns before the last user turn (templates that support it)."""
        template_messages, _ = normalize_messages(messages)
        return self._render(template_messages, thinking, tools, add_generation_prompt, clear_thinking)

    def _render(self, template_messages: list[dict], thinking: bool, tools: list[dict] | None,
                add_generation_prompt: bool, clear_thinking: bool) -> str:
        return render_chat_template(self.template, template_messages, add_generation_prompt=add_generation_prompt,
                                    tools=tools, enable_thinking=thinking, clear_thinking=clear_thinking,
                                    **self.tokenizer.special_tokens())

    def build(self, messages: list[dict], thinking: bool = True, tools: list[dict] | None = None,
              add_generation_prompt: bool = True, clear_thinking: bool = True) -> Prompt:
        check_media_counts(messages, self.limits)
        template_messages, refs = normalize_messages(expand_documents(messages, self.limits, self.processor))
        media = load_media(refs, self.limits, self.processor)
        text = self.expand(self._render(template_messages, thinking, tools, add_generation_prompt, clear_thinking),
                           media)
        ids = self.tokenizer.encode(text)
        positions, delta = rope_positions(ids, [m.grid for m in media], self.config)
        return Prompt(ids, media, positions, delta, text)

    def expand(self, text: str, media: list[MediaItem]) -> str:
        """Replace each media placeholder, in order, by the tokens of its item."""
        pieces, rest = [], text
        for item in media:
            marker = self.image_token if item.kind == "image" else self.video_token
            before, found, rest = rest.partition(marker)
            if not found:
                raise ValueError(f"the chat template did not place the {item.kind} in the prompt")
            pieces.append(before)
            if item.kind == "image":
                pieces.append(self.image_token * item.num_tokens)
            else:
                per_frame = item.grid[1] * item.grid[2] // 4
                seconds = item.timestamps[::2]
                for k in range(item.grid[0]):
                    pieces.append(f"{self.image_start}{self.image_token * per_frame}{self.image_end}{int(seconds[k])}")
        if self.image_token in rest or self.video_token in rest:
            raise ValueError("the prompt has more media placeholders than media items")
        return "".join(pieces) + rest
