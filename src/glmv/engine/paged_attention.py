"""The paged KV cache and attention over it, for a step that mixes decodes and prefill chunks.

Keys and values of every layer live in one tensor of slots ([layers, blocks * block_size,
kv_heads, head_dim]); a token's slot is block_table[i // block_size] * block_size + i % block_size.
Each step, the runner hands in an `AttentionPlan`: where this step's tokens go and what each
query may see. Single-token queries (decodes) are attended together in one padded batch;
each multi-token prefill chunk is attended on its own, causally after its cached prefix.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import pad_sequence

from ..config import TextConfig


@dataclass
class PrefillChunk:
    start: int  # first row of the chunk in this step's tokens
    length: int
    kv_slots: torch.Tensor  # [K] slots of all keys the chunk sees (its prefix, then itself)
    mask: torch.Tensor | None  # [length, K] when the chunk follows a cached prefix; None: plain causal


@dataclass
class AttentionPlan:
    slots: torch.Tensor  # [T] where each token's key and value are written
    single_rows: torch.Tensor | None = None  # [B] rows of the one-token queries
    single_kv_slots: torch.Tensor | None = None  # [B, K] slots each of them reads, padded
    single_mask: torch.Tensor | None = None  # [B, 1, 1, K] False on the padding
    chunks: list[PrefillChunk] = field(default_factory=list)


def slots_of(block_table: list[int], start: int, end: int, block_size: int, device) -> torch.Tensor:
    index = torch.arange(start, end, device=device)
    table = torch.tensor(block_table, device=device)
    return table[index // block_size] * block_size + index % block_size


def make_plan(tokens: list[tuple[list[int], int, int]], block_size: int, device) -> AttentionPlan:
    """tokens: (block_table, first position, count) per sequence, in the order of the step's rows."""
    slots, singles, chunks, row = [], [], [], 0
    for table, start, count in tokens:
        end = start + count
        seen = slots_of(table, 0, end, block_size, device)
        slots.append(seen[start:])
        if count == 1:
            singles.append((row, seen))
        else:
            mask = None
            if start:  # query i (at position start + i) sees keys 0 .. start + i
                mask = torch.arange(end, device=device)[None, :] <= torch.arange(start, end, device=device)[:, None]
            chunks.append(PrefillChunk(row, count, seen, mask))
        row += count
    plan = AttentionPlan(torch.cat(slots), chunks=chunks)
    if singles:
        lengths = torch.tensor([len(seen) for _, seen in singles], device=device)
        plan.single_rows = torch.tensor([r for r, _ in singles], device=device)
        plan.single_kv_slots = pad_sequence([seen for _, seen in singles], batch_first=True)
        width = plan.single_kv_slots.shape[1]
        plan.single_mask = (torch.arange(width, device=device)[None, :] < lengths[:, None])[:, None, None, :]
    return plan


class PagedKVCache:
    def __init__(self, cfg: TextConfig, num_blocks: int, block_size: int, dtype: torch.dtype, device):
        shape = (cfg.num_hidden_layers, num_blocks * block_size, cfg.num_key_value_heads, cfg.head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.plan: AttentionPlan | None = None

    @staticmethod
    def bytes_per_block(cfg: TextConfig, block_size: int, dtype: torch.dtype) -> int:
        itemsize = torch.empty(0, dtype=dtype).element_size()
        return 2 * cfg.num_hidden_layers * block_size * cfg.num_key_value_heads * cfg.head_dim * itemsize

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        plan = self.plan
        keys, values = self.k[layer], self.v[layer]
        keys.index_copy_(0, plan.slots, k)
        values.index_copy_(0, plan.slots, v)
        out = torch.empty_like(q)
        if plan.single_rows is not None:
            qs = q[plan.single_rows].unsqueeze(2)  # [B, heads, 1, D]
            ks = keys[plan.single_kv_slots].transpose(1, 2)  # [B, kv_heads, K, D]
            vs = values[plan.single_kv_slots].transpose(1, 2)
            o = F.scaled_dot_product_attention(qs, ks, vs, attn_mask=plan.single_mask, enable_gqa=True)
            out[plan.single_rows] = o.squeeze(2)
        for c in plan.chunks:
            qs = q[c.start:c.start + c.length].transpose(0, 1)  # [heads, n, D]
            ks, vs = keys[c.kv_slots].transpose(0, 1), values[c.kv_slots].transpose(0, 1)
            o = F.scaled_dot_product_attention(qs, ks, vs, attn_mask=c.mask, is_causal=c.mask is None,
                                               enable_gqa=True)
            out[c.start:c.start + c.length] = o.transpose(0, 1)
        return out
