"""The paged KV cache and attention over it, for a step that mixes decodes and prefill chunks.

Keys and values of every layer live in one tensor of blocks ([layers, blocks, block_size,
kv_heads, head_dim]); token i of a sequence sits in block block_table[i // block_size] at offset
i % block_size. Attention gathers whole blocks (contiguous runs), not single slots.
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
    blocks: torch.Tensor  # [N] the sequence's blocks holding its prefix and the chunk
    num_keys: int  # keys the chunk sees: its prefix, then itself
    mask: torch.Tensor | None  # [length, num_keys] when the chunk follows a cached prefix; None: plain causal


@dataclass
class AttentionPlan:
    slots: torch.Tensor  # [T] where each token's key and value are written
    single_rows: torch.Tensor | None = None  # [B] rows of the one-token queries
    single_blocks: torch.Tensor | None = None  # [B, N] the blocks each of them reads, padded
    single_mask: torch.Tensor | None = None  # [B, 1, 1, N * block_size] False past each one's length
    chunks: list[PrefillChunk] = field(default_factory=list)


def make_plan(tokens: list[tuple[list[int], int, int]], block_size: int, device) -> AttentionPlan:
    """tokens: (block_table, first position, count) per sequence, in the order of the step's rows."""
    slots, singles, chunks, row = [], [], [], 0
    for table, start, count in tokens:
        end = start + count
        blocks = torch.tensor(table[:-(-end // block_size)], device=device)
        index = torch.arange(start, end, device=device)
        slots.append(blocks[index // block_size] * block_size + index % block_size)
        if count == 1:
            singles.append((row, blocks, end))
        else:
            mask = None
            if start:  # query i (at position start + i) sees keys 0 .. start + i
                mask = torch.arange(end, device=device)[None, :] <= index[:, None]
            chunks.append(PrefillChunk(row, count, blocks, end, mask))
        row += count
    plan = AttentionPlan(torch.cat(slots), chunks=chunks)
    if singles:
        plan.single_rows = torch.tensor([r for r, _, _ in singles], device=device)
        plan.single_blocks = pad_sequence([b for _, b, _ in singles], batch_first=True)
        lengths = torch.tensor([n for _, _, n in singles], device=device)
        width = plan.single_blocks.shape[1] * block_size
        plan.single_mask = (torch.arange(width, device=device)[None, :] < lengths[:, None])[:, None, None, :]
    return plan


class PagedKVCache:
    def __init__(self, cfg: TextConfig, num_blocks: int, block_size: int, dtype: torch.dtype, device):
        shape = (cfg.num_hidden_layers, num_blocks, block_size, cfg.num_key_value_heads, cfg.head_dim)
        # Left uninitialised (on CPU, memory becomes resident only as blocks are used); each block is
        # zeroed when handed out, since masked-out slots still enter P @ V and must not hold NaN.
        self.k = torch.empty(shape, dtype=dtype, device=device)
        self.v = torch.empty(shape, dtype=dtype, device=device)
        self.plan: AttentionPlan | None = None

    def clear(self, blocks: list[int]) -> None:
        index = torch.tensor(blocks, device=self.k.device)
        self.k.index_fill_(1, index, 0)
        self.v.index_fill_(1, index, 0)

    @staticmethod
    def bytes_per_block(cfg: TextConfig, block_size: int, dtype: torch.dtype) -> int:
        itemsize = torch.empty(0, dtype=dtype).element_size()
        return 2 * cfg.num_hidden_layers * block_size * cfg.num_key_value_heads * cfg.head_dim * itemsize

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        plan = self.plan
        keys, values = self.k[layer], self.v[layer]  # [blocks, block_size, kv_heads, D]
        keys.view(-1, *k.shape[1:]).index_copy_(0, plan.slots, k)
        values.view(-1, *v.shape[1:]).index_copy_(0, plan.slots, v)
        out = torch.empty_like(q)
        if plan.single_rows is not None:
            b, kv_heads = plan.single_blocks.shape[0], k.shape[1]
            # The query heads that share a kv head act as that head's queries: no GQA expansion of K/V.
            qs = q[plan.single_rows].view(b, kv_heads, -1, q.shape[-1])  # [B, kv_heads, group, D]
            ks = keys[plan.single_blocks].view(b, -1, *k.shape[1:]).transpose(1, 2)  # [B, kv_heads, N*bs, D]
            vs = values[plan.single_blocks].view(b, -1, *v.shape[1:]).transpose(1, 2)
            o = F.scaled_dot_product_attention(qs, ks, vs, attn_mask=plan.single_mask)
            out[plan.single_rows] = o.reshape(b, -1, q.shape[-1])
        for c in plan.chunks:
            qs = q[c.start:c.start + c.length].transpose(0, 1)  # [heads, n, D]
            ks = keys[c.blocks].view(-1, *k.shape[1:])[:c.num_keys].transpose(0, 1)
            vs = values[c.blocks].view(-1, *v.shape[1:])[:c.num_keys].transpose(0, 1)
            o = F.scaled_dot_product_attention(qs, ks, vs, attn_mask=c.mask, is_causal=c.mask is None,
                                               enable_gqa=True)
            out[c.start:c.start + c.length] = o.transpose(0, 1)
        return out
