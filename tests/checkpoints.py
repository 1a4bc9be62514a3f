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


def make_scripted_checkpoint(path: Path, scripts: dict[str, list[str]], scale: float = 10.0) -> Path:
    """A checkpoint whose answers are known in advance: after token a it always says succ(a).

    Every decoder layer adds nothing (o_proj and down_proj are zero), so the last hidden state is
    the last token's embedding; the lm_head row of each scripted token is its predecessors' embedding
    direction, so after the last prompt token the model walks the script. `scripts` maps a start
    token to the tokens that follow it; each piece must be one token. The weights are real and go
    through the whole model, vision tower included; only their values are chosen."""
    from safetensors.torch import load_file, save_file
    from tokenizers import Tokenizer

    make_checkpoint(path, "glm4v_moe")
    tok = Tokenizer.from_file(str(path / "tokenizer.json"))

    def token(piece: str) -> int:
        ids = tok.encode(piece, add_special_tokens=False).ids
        assert len(ids) == 1, f"{piece!r} is {len(ids)} tokens"
        return ids[0]

    successor: dict[int, int] = {}
    for start, pieces in scripts.items():
        chain = [token(p) for p in [start, *pieces]]
        for a, b in zip(chain, chain[1:]):
            assert successor.get(a, b) == b, f"{tok.id_to_token(a)!r} has two successors"
            successor[a] = b
    for shard in path.glob("*.safetensors"):
        weights = load_file(shard)
        for name, w in weights.items():
            if "visual" not in name and ("o_proj" in name or "down_proj" in name):
                w.zero_()
            elif name.endswith("language_model.norm.weight"):
                w.fill_(1.0)
        embed = next((w for n, w in weights.items() if n.endswith("embed_tokens.weight")), None)
        head = weights.get("lm_head.weight")
        if embed is not None and head is not None:
            unit = torch.nn.functional.normalize(embed.float(), dim=-1)
            rows = torch.nn.functional.normalize(head.float(), dim=-1) * 0.5
            targets: dict[int, torch.Tensor] = {}
            for a, b in successor.items():
                targets[b] = targets.get(b, torch.zeros_like(unit[0])) + unit[a]
            for b, direction in targets.items():
                rows[b] = torch.nn.functional.normalize(direction, dim=0)
            head.copy_(rows * scale)
        save_file(weights, shard, metadata={"format": "pt"})
    return path


def make_taught_checkpoint(path: Path, conversations: list[list[dict]], steps: int = 150, lr: float = 1e-2) -> Path:
    """A tiny checkpoint that glmv's own trainer has taught to answer `conversations` word for word
    (images included): real training, so a test can know a real model's answer in advance."""
    from glmv.inputs.prompt import PromptBuilder
    from glmv.training.data import Batches, encode
    from glmv.training.trainer import TrainConfig, train

    base = make_checkpoint(path / "base", "glm4v_moe")
    builder = PromptBuilder.from_pretrained(base)

    class Lessons:
        def example(self, index):
            return encode(builder, conversations[index % len(conversations)])

    batches = Batches(Lessons(), batch_size=len(conversations), pad_id=0, seed=0, max_length=4096, pool=1)
    cfg = TrainConfig(steps=steps, batch_size=len(conversations), lr=lr, warmup=10, min_lr_ratio=0.5,
                      save_every=steps + 1, balance_rate=0.0)
    return train(base, batches, cfg, path / "run", progress=False)
