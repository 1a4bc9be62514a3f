"""A contiguous KV cache for one sequence: the simple reference path behind `LLM.chat`.

It implements the model's `attend` protocol; the engine's paged cache implements the same one.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..config import TextConfig


class ContiguousKVCache:
    def __init__(self, cfg: TextConfig, max_len: int, dtype: torch.dtype, device: torch.device | str):
        shape = (cfg.num_hidden_layers, cfg.num_key_value_heads, max_len, cfg.head_dim)
        self.k = torch.empty(shape, dtype=dtype, device=device)
        self.v = torch.empty(shape, dtype=dtype, device=device)
        self.max_len = max_len
        self.length = 0  # tokens stored by earlier forwards
        self._pending = 0

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        start, n = self.length, q.shape[0]
        end = start + n
        if end > self.max_len:
            raise ValueError(f"KV cache holds {self.max_len} tokens, {end} requested")
        self.k[layer, :, start:end] = k.transpose(0, 1)
        self.v[layer, :, start:end] = v.transpose(0, 1)
        self._pending = n
        keys, values = self.k[layer, :, :end], self.v[layer, :, :end]
        queries = q.transpose(0, 1)
        if start == 0:
            out = F.scaled_dot_product_attention(queries, keys, values, is_causal=True, enable_gqa=True)
        else:
            # Query i sits at position start + i and sees keys 0..start + i.
            mask = torch.arange(end, device=q.device)[None, :] <= torch.arange(start, end, device=q.device)[:, None]
            out = F.scaled_dot_product_attention(queries, keys, values, attn_mask=mask, enable_gqa=True)
        return out.transpose(0, 1)

    def advance(self) -> None:
        """Commit the tokens of the forward that just ran."""
        self.length += self._pending
        self._pending = 0
