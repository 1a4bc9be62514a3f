"""The recipe of the model glmv ships: a small GLM-4.5V (same MoE layout, M-RoPE, vision tower,
special tokens and chat template) trained from scratch on the synthetic world.

`glmv train --recipe small --out DIR` runs it end to end: tokenizer, fresh weights, training,
evaluation. Everything is drawn from the seed, so the same command gives the same model.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..config import ModelConfig
from ..model.modeling import GlmvForConditionalGeneration
from ..model.saver import save_model, save_processing_files
from .synthetic import COLORS, PLURAL, SHAPES, TASKS, WORDS, make_sample
from .tokenizer import build_tokenizer

TEXT = dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2, head_dim=64,
            intermediate_size=768, attention_bias=True, rms_norm_eps=1e-5, max_position_embeddings=8192,
            n_routed_experts=8, num_experts_per_tok=2, moe_intermediate_size=256, n_shared_experts=1,
            first_k_dense_replace=1, n_group=1, topk_group=1, norm_topk_prob=True, routed_scaling_factor=1.0,
            rope_parameters=dict(rope_type="default", rope_theta=10000.0, partial_rotary_factor=0.5,
                                 mrope_section=[4, 6, 6]))
VISION = dict(depth=4, hidden_size=192, num_heads=3, intermediate_size=512, out_hidden_size=256, image_size=224,
              patch_size=14, temporal_patch_size=2, spatial_merge_size=2, in_channels=3, rms_norm_eps=1e-5)
VOCAB_SIZE = 1024  # ordinary BPE tokens; the GLM special tokens follow
MAX_IMAGE_TOKENS = 96  # about 274 x 274 pixels after the processor's resize
MAX_FRAME_TOKENS = 64


@dataclass
class Recipe:
    vision_steps: int = 1300  # dense pretraining of the tower first (vision_pretrain.py)
    vision_lr: float = 2e-3
    steps: int = 1800
    batch_size: int = 16
    questions_per_scene: int = 3  # 1 to 3 questions in turn about each scene
    lr: float = 1.5e-3
    # The pretrained tower stays frozen during the conversations: with no backward pass through it a
    # step takes about a third less time (median 0.83 s against 1.27 s), so the decoder gets more steps. (Trained along at the decoder's rate, a tower's
    # features collapse into one constant vector within a few hundred steps.)
    vision_lr_ratio: float = 0.0
    warmup: int = 150
    seed: int = 0
    # How often each task is drawn: the ones that need exact reading or placing get more practice.
    weights: dict[str, float] = field(default_factory=lambda: {
        "grounding": 4.0, "counting": 3.0, "colour": 1.0, "shape": 1.0, "reading": 1.0, "chart": 2.0, "problem": 1.0})


def tokenizer_corpus(seed: int, samples: int = 3000) -> list[str]:
    """Texts of the synthetic world (questions, reasoning, answers) plus its vocabulary spelled out."""
    rng = random.Random(f"{seed}:tokenizer")
    texts = [" ".join(list(COLORS) + list(SHAPES) + list(PLURAL.values()) + list(WORDS))]
    for i in range(samples):
        s = make_sample(rng, TASKS[i % len(TASKS)])
        texts += [s.question, s.reasoning, s.answer]
    return texts


def model_config(tokenizer) -> dict:
    t = tokenizer.token_to_id
    eos = [t("<|endoftext|>"), t("<|user|>"), t("<|observation|>")]
    return {"model_type": "glm4v_moe", "eos_token_id": eos, "tie_word_embeddings": False,
            "text_config": {**TEXT, "vocab_size": tokenizer.get_vocab_size(), "eos_token_id": eos, "pad_token_id": eos[0]},
            "vision_config": VISION,
            "image_token_id": t("<|image|>"), "video_token_id": t("<|video|>"),
            "image_start_token_id": t("<|begin_of_image|>"), "image_end_token_id": t("<|end_of_image|>"),
            "video_start_token_id": t("<|begin_of_video|>"), "video_end_token_id": t("<|end_of_video|>")}


def init_weights(model: GlmvForConditionalGeneration, seed: int, std: float = 0.02) -> None:
    """GPT-2 style: N(0, std) matrices and embeddings, output projections of the residual branches
    scaled down by sqrt(2 * layers), zero biases, unit norms, zero router correction bias; the
    tower's position table starts as 2D sinusoids."""
    generator = torch.Generator().manual_seed(seed)
    layers = model.config.text.num_hidden_layers
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                scale = std / (2 * layers) ** 0.5 if name.endswith(("o_proj.weight", "down_proj.weight", "down_proj",
                                                                    "attn.proj.weight")) else std
                p.copy_(torch.randn(p.shape, generator=generator) * scale)
            elif "norm" in name and name.endswith("weight"):
                p.fill_(1.0)
            else:
                p.zero_()
        for name, b in model.named_buffers():
            b.zero_()
        position = model.model.visual.embeddings.position_embedding.weight
        position.copy_(sinusoid_grid(int(position.shape[0] ** 0.5), position.shape[1]))


def sinusoid_grid(side: int, width: int) -> torch.Tensor:
    """[side*side, width] 2D sine/cosine table of each cell's row (first half) and column (second half).
    The post-conv RMSNorm gives patch features unit scale; a N(0, 0.02) table would be 50x weaker, and
    the fresh tower then does not know where a patch is (its features could not place a box at all)."""
    quarter = width // 4
    cycles = 2.0 ** torch.linspace(-1, 3, quarter)  # half a cycle to 8 cycles over the image
    centres = (torch.arange(side) + 0.5) / side
    angle = 2 * torch.pi * centres[:, None] * cycles[None, :]
    wave = torch.cat((angle.sin(), angle.cos()), dim=-1)  # [side, width / 2]
    rows = wave[:, None, :].expand(side, side, -1)
    cols = wave[None, :, :].expand(side, side, -1)
    return torch.cat((rows, cols), dim=-1).reshape(side * side, -1)


def create_small_model(path: str | Path, seed: int) -> Path:
    """A fresh checkpoint folder of the small architecture, in the official layout."""
    tokenizer = build_tokenizer(tokenizer_corpus(seed), VOCAB_SIZE)
    config = ModelConfig.from_dict(model_config(tokenizer))
    model = GlmvForConditionalGeneration(config)
    init_weights(model, seed)
    save_model(model, path, torch.float32)
    save_processing_files(path, tokenizer, MAX_IMAGE_TOKENS, MAX_FRAME_TOKENS)
    return Path(path)


def export(model_path: Path, dest: Path) -> Path:
    """The trained model in bfloat16, the form glmv ships (half the size of the fp32 master weights)."""
    from ..model.loader import load_model
    from .trainer import save_model_folder

    save_model_folder(load_model(model_path, dtype="bfloat16", progress=False), dest, model_path)
    return dest
