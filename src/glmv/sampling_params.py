"""What to generate: the knobs of one request."""
from __future__ import annotations

from dataclasses import dataclass, field

MAX_TOKENS_LIMIT = 16384
MAX_LOGPROBS = 20
MAX_STOP_STRINGS = 16
MAX_STOP_STRING_CHARS = 256


def stop_strings(stop: str | list[str]) -> list[str]:
    """`stop` as a list, checked against the bounds (a string is one stop string)."""
    stops = [stop] if isinstance(stop, str) else list(stop)
    if len(stops) > MAX_STOP_STRINGS or not all(isinstance(s, str) and 0 < len(s) <= MAX_STOP_STRING_CHARS
                                                 for s in stops):
        raise ValueError(f"stop takes at most {MAX_STOP_STRINGS} non-empty strings of at most "
                         f"{MAX_STOP_STRING_CHARS} characters")
    return stops


@dataclass
class SamplingParams:
    temperature: float = 1.0  # 0 means greedy
    top_p: float = 1.0
    top_k: int = -1  # -1: all tokens
    repetition_penalty: float = 1.0  # > 1 discourages every token already in the prompt or the answer
    presence_penalty: float = 0.0  # subtracted once from each token already in the answer
    frequency_penalty: float = 0.0  # subtracted once per occurrence in the answer
    max_tokens: int = 1024
    max_thinking_tokens: int | None = None  # after this many thinking tokens, </think> is forced
    seed: int | None = None  # same seed, same prompt: same output, whatever else runs beside it
    stop: list[str] = field(default_factory=list)  # the answer ends before the first of these strings
    stop_token_ids: list[int] = field(default_factory=list)  # besides the checkpoint's own eos tokens
    ignore_eos: bool = False
    logprobs: int | None = None  # None: none; N: the chosen token's log-probability and the top-N alternatives

    def __post_init__(self):
        if self.temperature < 0:
            raise ValueError("temperature must be >= 0")
        if not 0 < self.top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")
        if self.top_k == 0 or self.top_k < -1:
            raise ValueError("top_k must be -1 (off) or >= 1")
        if self.repetition_penalty <= 0:
            raise ValueError("repetition_penalty must be > 0")
        if not -2 <= self.presence_penalty <= 2 or not -2 <= self.frequency_penalty <= 2:
            raise ValueError("presence_penalty and frequency_penalty must be in [-2, 2]")
        if not 1 <= self.max_tokens <= MAX_TOKENS_LIMIT:
            raise ValueError(f"max_tokens must be in [1, {MAX_TOKENS_LIMIT}]")
        if self.max_thinking_tokens is not None and self.max_thinking_tokens < 0:
            raise ValueError("max_thinking_tokens must be >= 0")
        if self.logprobs is not None and not 0 <= self.logprobs <= MAX_LOGPROBS:
            raise ValueError(f"logprobs must be in [0, {MAX_LOGPROBS}]")
        self.stop = stop_strings(self.stop)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0 or self.top_k == 1

    @property
    def penalized(self) -> bool:
        return self.repetition_penalty != 1 or self.presence_penalty != 0 or self.frequency_penalty != 0
