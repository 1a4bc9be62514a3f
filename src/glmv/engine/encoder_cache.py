"""Vision-tower outputs kept by media content hash, so a repeated image skips the vision tower."""
from __future__ import annotations

from collections import OrderedDict

import torch


class EncoderCache:
    def __init__(self, capacity_tokens: int):
        self.capacity = capacity_tokens
        self.entries: OrderedDict[str, torch.Tensor] = OrderedDict()  # least recently used first
        self.tokens = 0
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> torch.Tensor | None:
        features = self.entries.get(key)
        if features is None:
            self.misses += 1
            return None
        self.hits += 1
        self.entries.move_to_end(key)
        return features

    def put(self, key: str, features: torch.Tensor) -> None:
        if key in self.entries or features.shape[0] > self.capacity:
            return
        while self.tokens + features.shape[0] > self.capacity:
            _, old = self.entries.popitem(last=False)
            self.tokens -= old.shape[0]
        self.entries[key] = features
        self.tokens += features.shape[0]
