"""Engine knobs, in one dataclass."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..units import parse_bytes
from ..inputs.media import MediaLimits


@dataclass
class EngineConfig:
    dtype: str = "bfloat16"
    device: str = "cpu"
    block_size: int = 16  # tokens per KV block
    kv_cache_memory: int | str | None = None  # bytes for the KV cache; None: a fraction of free memory
    kv_cache_fraction: float | None = None  # of free memory when kv_cache_memory is unset (cpu 0.3, cuda 0.85)
    max_model_len: int | None = None  # default: the checkpoint's max_position_embeddings
    max_num_seqs: int = 64  # sequences decoding together
    max_num_batched_tokens: int = 2048  # tokens per step (prefill chunks + decodes)
    enable_prefix_caching: bool = True
    encoder_cache_tokens: int = 32768  # vision features kept for reuse, in merged tokens
    max_queued_requests: int = 1024  # the async front refuses more waiting requests than this
    limits: MediaLimits | None = None
    progress: bool = True

    def __post_init__(self):
        if self.block_size < 1 or self.max_num_seqs < 1 or self.max_num_batched_tokens < 1:
            raise ValueError("block_size, max_num_seqs and max_num_batched_tokens must be >= 1")
        if self.kv_cache_fraction is not None and not 0 < self.kv_cache_fraction <= 0.95:
            raise ValueError("kv_cache_fraction must be in (0, 0.95]")
        if self.kv_cache_memory is not None:
            self.kv_cache_memory = parse_bytes(self.kv_cache_memory)

    def kv_cache_bytes(self, device: torch.device) -> int:
        if self.kv_cache_memory is not None:
            return int(self.kv_cache_memory)
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
        else:
            with open("/proc/meminfo") as f:
                free = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable"))
        fraction = self.kv_cache_fraction or (0.85 if device.type == "cuda" else 0.3)
        return int(free * fraction)
