"""One request as the engine sees it: its tokens, its KV blocks, and how far it has been computed."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import Enum

import torch

from ..inputs.prompt import MediaItem, Prompt
from ..sampling_params import SamplingParams
from .detokenizer import Detokenizer


class Status(Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


def media_hash(item: MediaItem) -> str:
    """Content hash of one image or video: its pixels and grid (what the vision tower sees)."""
    h = hashlib.sha256(repr((item.kind, item.grid)).encode())
    h.update(item.pixel_values.contiguous().numpy().tobytes())
    return h.hexdigest()


@dataclass
class MediaSpan:
    """Where one media item's placeholder tokens sit in the prompt."""
    hash: str
    token_index: torch.Tensor  # prompt indices of its placeholders, in feature order
    item: MediaItem
    start: int  # first placeholder index
    end: int  # one past the last placeholder index


def media_spans(prompt: Prompt, image_token_id: int) -> list[MediaSpan]:
    """The k-th media item owns the next num_tokens placeholders, in prompt order."""
    index = torch.tensor([i for i, t in enumerate(prompt.token_ids) if t == image_token_id], dtype=torch.long)
    spans, used = [], 0
    for item in prompt.media:
        own = index[used:used + item.num_tokens]
        spans.append(MediaSpan(media_hash(item), own, item, int(own[0]), int(own[-1]) + 1))
        used += item.num_tokens
    if used != len(index):
        raise ValueError(f"{len(index)} image placeholders but {used} media tokens")
    return spans


@dataclass(eq=False)  # compared and hashed by identity
class Sequence:
    request_id: str
    prompt: Prompt
    params: SamplingParams
    stop_token_ids: set[int]
    detokenizer: Detokenizer
    media: list[MediaSpan] = field(default_factory=list)
    output_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    top_logprobs: list[list[tuple[int, float]]] = field(default_factory=list)
    block_table: list[int] = field(default_factory=list)
    block_keys: list[bytes] = field(default_factory=list)  # prefix-cache keys of its full blocks, in order
    num_computed: int = 0  # tokens whose keys and values are in the cache
    num_cached: int = 0  # prompt tokens served by the prefix cache (at first admission)
    status: Status = Status.WAITING
    finish_reason: str | None = None
    generator: torch.Generator | None = None
    thinking_tokens: int = 0  # tokens generated inside <think> so far
    in_thinking: bool = False

    @property
    def token_ids(self) -> list[int]:
        return self.prompt.token_ids + self.output_ids

    def __len__(self) -> int:
        return len(self.prompt.token_ids) + len(self.output_ids)

    @property
    def num_prompt_tokens(self) -> int:
        return len(self.prompt.token_ids)

    @property
    def num_uncomputed(self) -> int:
        return len(self) - self.num_computed

    def positions(self, start: int, end: int) -> torch.Tensor:
        """M-RoPE positions [3, end - start] of tokens start..end-1: the prompt's own, then index + delta."""
        n_prompt = self.num_prompt_tokens
        parts = []
        if start < n_prompt:
            parts.append(self.prompt.positions[:, start:min(end, n_prompt)])
        if end > n_prompt:
            parts.append(torch.arange(max(start, n_prompt), end).add_(self.prompt.rope_delta).expand(3, -1))
        return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]

    def media_in(self, start: int, end: int) -> list[MediaSpan]:
        return [m for m in self.media if m.start < end and start < m.end]
