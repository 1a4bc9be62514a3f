"""Tiny random GLM-V checkpoints in the official layout, made with transformers (the reference)."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from glmv.training.tokenizer import build_tokenizer, tokenizer_config

TEMPLATE = Path(__file__).parents[1] / "src" / "glmv" / "assets" / "glm_chat_template.jinja"
CORPUS = [
    "What is in this picture? Describe the image in detail.",
    "The red circle is at the top left. There are three shapes: a square, a star and a triangle.",
    "Got it, let me look at the image carefully and count the objects one by one.",
    "Describe this video. What happens first and what happens next?",
    "The answer is 42. Tell me the position of the blue star in [x1,y1,x2,y2] format.",
    "Hello, how are you today? I am fine, thank you very much.",
] * 4
# Small pixel budgets keep the tests fast: at most 64 merged tokens per image.
PREPROCESSOR = {"size": {"shortest_edge": 12544, "longest_edge": 28 * 28 * 2 * 64}, "patch_size": 14,
                "temporal_patch_size": 2, "merge_size": 2, "image_mean": [0.48145466, 0.4578275, 0.40821073],
                "image_std": [0.26862954, 0.26130258, 0.27577711], "do_rescale": True, "rescale_factor": 1 / 255,
                "do_normalize": True, "resample": 3, "image_processor_type": "Glm4vImageProcessor"}
VIDEO_PREPROCESSOR = {"size": {"shortest_edge": 12544, "longest_edge": 28 * 28 * 2 * 96}, "fps": 2.0,
                      "max_duration": 300, "patch_size": 14, "temporal_patch_size": 2, "merge_size": 2}


def special_ids(tok) -> dict[str, int]:
    t = tok.token_to_id
    return dict(image_token_id=t("<|image|>"), video_token_id=t("<|video|>"),
                image_start_token_id=t("<|begin_of_image|>"), image_end_token_id=t("<|end_of_image|>"),
                video_start_token_id=t("<|begin_of_video|>"), video_end_token_id=t("<|end_of_video|>"))


def reference_config(arch: str, tok, text_overrides: dict | None = None):
    """A transformers config with odd sizes that exercise every path of the architecture."""
    from transformers import Glm4vConfig, Glm4vMoeConfig

    vocab = tok.get_vocab_size() + 3
    eos = [tok.token_to_id(t) for t in ("<|endoftext|>", "<|user|>", "<|observation|>")]
    vision = dict(depth=2, hidden_size=48, num_heads=3, intermediate_size=72, out_hidden_size=64, image_size=56,
                  patch_size=14, spatial_merge_size=2, temporal_patch_size=2)
    text = dict(vocab_size=vocab, hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
                num_key_value_heads=2, pad_token_id=eos[0], eos_token_id=eos, max_position_embeddings=4096,
                rope_parameters=dict(rope_type="default", rope_theta=10000.0, partial_rotary_factor=0.5,
                                     mrope_section=[1, 1, 2]))  # head_dim 16: 8 rotary dims
    if arch == "glm4v_moe":
        text["rope_parameters"]["mrope_section"] = [2, 3, 3]  # head_dim 32: 16 rotary dims
        text.update(head_dim=32, moe_intermediate_size=40, n_routed_experts=8, num_experts_per_tok=3,
                    n_shared_experts=1, first_k_dense_replace=1, routed_scaling_factor=1.7, n_group=2, topk_group=1,
                    norm_topk_prob=True)
        text.update(text_overrides or {})
        return Glm4vMoeConfig(text_config=text, vision_config=vision, **special_ids(tok))
    text.update(text_overrides or {})
    return Glm4vConfig(text_config=text, vision_config=vision, **special_ids(tok))


def make_checkpoint(path: Path, arch: str = "glm4v_moe", seed: int = 0, max_shard_size: str | None = None,
                    dtype: torch.dtype = torch.float32, text_overrides: dict | None = None) -> Path:
    from transformers import Glm4vForConditionalGeneration, Glm4vMoeForConditionalGeneration

    path.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer(CORPUS, vocab_size=320)
    torch.manual_seed(seed)
    config = reference_config(arch, tok, text_overrides)
    cls = Glm4vMoeForConditionalGeneration if arch == "glm4v_moe" else Glm4vForConditionalGeneration
    model = cls(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:  # non-trivial norm weights and biases
                p.add_(torch.randn_like(p) * 0.3)
            elif p.dim() >= 2:  # larger weights than the default init, so that logits are far apart
                p.normal_(0, 0.08)
        for name, b in model.named_buffers():
            if "e_score_correction_bias" in name:
                b.copy_(torch.randn_like(b) * 0.1)
    model.to(dtype).save_pretrained(path, **({"max_shard_size": max_shard_size} if max_shard_size else {}))
    tok.save(str(path / "tokenizer.json"))
    template = TEMPLATE.read_text()
    (path / "chat_template.jinja").write_text(template)
    (path / "tokenizer_config.json").write_text(json.dumps(tokenizer_config()))
    (path / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR))
    (path / "video_preprocessor_config.json").write_text(json.dumps(VIDEO_PREPROCESSOR))
    return path
