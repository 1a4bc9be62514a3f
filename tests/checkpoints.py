"""Tiny random GLM-V checkpoints in the official layout, made with transformers (the reference)."""
from __future__ import annotations

from pathlib import Path

import torch

from glmv.bench.checkpoints import write_random_checkpoint

# Odd sizes that exercise every path of the architecture; small pixel budgets keep the tests fast.
VISION = dict(depth=2, hidden_size=48, num_heads=3, intermediate_size=72, out_hidden_size=64, image_size=56,
              patch_size=14, spatial_merge_size=2, temporal_patch_size=2)


def text_config(arch: str, overrides: dict | None = None) -> dict:
    text = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
                num_key_value_heads=2, max_position_embeddings=4096,
                rope_parameters=dict(rope_type="default", rope_theta=10000.0, partial_rotary_factor=0.5,
                                     mrope_section=[1, 1, 2]))  # head_dim 16: 8 rotary dims
    if arch == "glm4v_moe":
        text["rope_parameters"]["mrope_section"] = [2, 3, 3]  # head_dim 32: 16 rotary dims
        text.update(head_dim=32, moe_intermediate_size=40, n_routed_experts=8, num_experts_per_tok=3,
                    n_shared_experts=1, first_k_dense_replace=1, routed_scaling_factor=1.7, n_group=2, topk_group=1,
                    norm_topk_prob=True)
    return {**text, **(overrides or {})}


def make_checkpoint(path: Path, arch: str = "glm4v_moe", seed: int = 0, max_shard_size: str | None = None,
                    dtype: torch.dtype = torch.float32, text_overrides: dict | None = None) -> Path:
    return write_random_checkpoint(path, arch, text_config(arch, text_overrides), VISION, seed=seed, dtype=dtype,
                                   max_shard_size=max_shard_size)
