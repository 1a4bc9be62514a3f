"""What to generate: the knobs of one request."""
from __future__ import annotations

from dataclasses import dataclass, field

MAX_TOKENS_LIMIT = 16384


@dataclass
class SamplingParams:
    temperature: float = 1.0  # 0 means greedy
    top_p: float = 1.0
    top_k: int = -1  # -1: all tokens
    max_tokens: int = 1024
    seed: int | None = None
    stop_token_ids: list[int] = field(default_factory=list)  # besides the checkpoint's own eos tokens
    ignore_eos: bool = False
    logprobs: int | None = None  # None: no logprobs; N: the chosen token's log-probability (top-N in the engine)

    def __post_init__(self):
        if self.temperature < 0:
            raise ValueError("temperature must be >= 0")
        if not 0 < self.top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")
        if self.top_k == 0 or self.top_k < -1:
            raise ValueError("top_k must be -1 (off) or >= 1")
        if not 1 <= self.max_tokens <= MAX_TOKENS_LIMIT:
            raise ValueError(f"max_tokens must be in [1, {MAX_TOKENS_LIMIT}]")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0 or self.top_k == 1
