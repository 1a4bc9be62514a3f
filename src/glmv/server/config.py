"""The server's settings: what `glmv serve` takes from its command line, with the defaults its help shows."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..engine.config import EngineConfig


@dataclass
class Prices:
    """US dollars per million tokens; cached prompt tokens cost cached_ratio of the input price."""
    input: float = 0.6
    output: float = 1.8
    cached_ratio: float = 0.2

    def cost(self, prompt_tokens: int, completion_tokens: int, cached_tokens: int) -> float:
        fresh = prompt_tokens - cached_tokens
        return (fresh * self.input + cached_tokens * self.input * self.cached_ratio
                + completion_tokens * self.output) / 1e6


@dataclass
class ServerConfig:
    model: Path
    db: str
    secret_file: Path
    engine: EngineConfig
    served_model_names: list[str] = field(default_factory=list)  # empty: glm-4.5v and the folder's name
    api_keys: list[str] = field(default_factory=list)
    prices: Prices = field(default_factory=Prices)
    max_concurrency_per_key: int | None = None
    rpm_per_key: int | None = None
    max_request_bytes: int = 64 * 1024 * 1024

    @property
    def model_names(self) -> list[str]:
        return self.served_model_names or list(dict.fromkeys(["glm-4.5v", Path(self.model).resolve().name]))
