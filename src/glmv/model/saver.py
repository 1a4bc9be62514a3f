"""Write a glmv model as an official Hugging Face GLM-V checkpoint: the inverse of loader.py.

Fused parameters are split back into the official tensors (qkv_proj -> q/k/v_proj, gate_up_proj ->
gate/up_proj, stacked experts -> experts.{e}.{gate,up,down}_proj), and the patch embedding and the
downsample go back to their convolution shapes, so that transformers and glmv load the result alike.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from ..config import ModelConfig
from .loader import FP32_BUFFERS
from .modeling import GlmvForConditionalGeneration


def official_tensors(model: GlmvForConditionalGeneration) -> dict[str, torch.Tensor]:
    """The model's weights under the official key names and shapes (views where possible)."""
    cfg, vision = model.config.text, model.config.vision
    q, kv = cfg.num_attention_heads * cfg.head_dim, cfg.num_key_value_heads * cfg.head_dim
    out: dict[str, torch.Tensor] = {}
    state = model.state_dict()
    for name, tensor in state.items():
        if name == "lm_head.weight" and model.config.tie_word_embeddings:
            continue
        prefix, _, leaf = name.rpartition(".")
        if name.endswith(".mlp.experts.gate_up_proj"):
            gate, up = tensor.chunk(2, dim=1)
            for e in range(tensor.shape[0]):
                out[f"{name[:-len('gate_up_proj')]}{e}.gate_proj.weight"] = gate[e]
                out[f"{name[:-len('gate_up_proj')]}{e}.up_proj.weight"] = up[e]
        elif name.endswith(".mlp.experts.down_proj"):
            for e in range(tensor.shape[0]):
                out[f"{name[:-len('down_proj')]}{e}.down_proj.weight"] = tensor[e]
        elif prefix.endswith(".self_attn.qkv_proj"):
            base = prefix[:-len("qkv_proj")]
            for part, piece in zip("qkv", tensor.split((q, kv, kv), dim=0)):
                out[f"{base}{part}_proj.{leaf}"] = piece
        elif prefix.endswith(".gate_up_proj"):
            base = prefix[:-len("gate_up_proj")]
            gate, up = tensor.chunk(2, dim=0)
            out[f"{base}gate_proj.{leaf}"], out[f"{base}up_proj.{leaf}"] = gate, up
        elif name == "model.visual.patch_embed.proj.weight":  # Linear -> Conv3d [out, C, T, p, p]
            p = vision.patch_size
            out[name] = tensor.reshape(tensor.shape[0], vision.in_channels, vision.temporal_patch_size, p, p)
        elif name == "model.visual.downsample.weight":  # Linear over (row, col, channel) -> Conv2d [out, C, m, m]
            m = vision.spatial_merge_size
            out[name] = tensor.reshape(tensor.shape[0], m, m, -1).permute(0, 3, 1, 2)
        else:
            out[name] = tensor
    return out


def config_dict(config: ModelConfig, dtype: torch.dtype) -> dict:
    """config.json in the layout transformers writes for Glm4vMoe / Glm4v."""
    text, vision, moe = config.text, config.vision, config.model_type == "glm4v_moe"
    text_raw = {
        "model_type": f"{config.model_type}_text", "vocab_size": text.vocab_size, "hidden_size": text.hidden_size,
        "num_hidden_layers": text.num_hidden_layers, "num_attention_heads": text.num_attention_heads,
        "num_key_value_heads": text.num_key_value_heads, "head_dim": text.head_dim,
        "intermediate_size": text.intermediate_size, "attention_bias": text.attention_bias,
        "rms_norm_eps": text.rms_norm_eps, "max_position_embeddings": text.max_position_embeddings,
        "hidden_act": "silu", "tie_word_embeddings": config.tie_word_embeddings,
        "eos_token_id": config.eos_token_ids, "pad_token_id": config.pad_token_id,
        "rope_parameters": {"rope_type": "default", "rope_theta": text.rope_theta,
                            "partial_rotary_factor": text.partial_rotary_factor, "mrope_section": text.mrope_section},
    }
    if moe:
        text_raw.update(n_routed_experts=text.n_routed_experts, num_experts_per_tok=text.num_experts_per_tok,
                        moe_intermediate_size=text.moe_intermediate_size, n_shared_experts=text.n_shared_experts,
                        first_k_dense_replace=text.first_k_dense_replace, n_group=text.n_group,
                        topk_group=text.topk_group, norm_topk_prob=text.norm_topk_prob,
                        routed_scaling_factor=text.routed_scaling_factor)
    vision_raw = {
        "model_type": f"{config.model_type}_vision", "depth": vision.depth, "hidden_size": vision.hidden_size,
        "num_heads": vision.num_heads, "intermediate_size": vision.intermediate_size,
        "out_hidden_size": vision.out_hidden_size, "image_size": vision.image_size, "patch_size": vision.patch_size,
        "temporal_patch_size": vision.temporal_patch_size, "spatial_merge_size": vision.spatial_merge_size,
        "in_channels": vision.in_channels, "rms_norm_eps": vision.rms_norm_eps, "attention_bias": vision.attention_bias,
        "hidden_act": "silu", "rope_parameters": {"rope_type": "axial", "rope_theta": vision.rope_theta},
    }
    arch = "Glm4vMoeForConditionalGeneration" if moe else "Glm4vForConditionalGeneration"
    return {"architectures": [arch], "model_type": config.model_type, "dtype": str(dtype).removeprefix("torch."),
            "text_config": text_raw, "vision_config": vision_raw, "tie_word_embeddings": config.tie_word_embeddings,
            "image_token_id": config.image_token_id, "video_token_id": config.video_token_id,
            "image_start_token_id": config.image_start_token_id, "image_end_token_id": config.image_end_token_id,
            "video_start_token_id": config.video_start_token_id, "video_end_token_id": config.video_end_token_id}


def save_model(model: GlmvForConditionalGeneration, path: str | Path, dtype: torch.dtype | None = None) -> Path:
    """config.json + model.safetensors in the official layout, weights cast to `dtype` (the router's
    correction bias stays fp32, as in the official checkpoints). Written to a temporary name first,
    so an interrupted save never leaves a truncated checkpoint."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    dtype = dtype or model.dtype
    tensors = {name: (t if name.endswith(FP32_BUFFERS) else t.to(dtype)).detach().cpu().contiguous()
               for name, t in official_tensors(model).items()}
    tmp = path / "model.safetensors.tmp"
    save_file(tensors, tmp, metadata={"format": "pt"})
    tmp.replace(path / "model.safetensors")
    (path / "config.json").write_text(json.dumps(config_dict(model.config, dtype), indent=2) + "\n")
    return path


def processor_configs(max_image_tokens: int, max_frame_tokens: int) -> tuple[dict, dict]:
    """preprocessor_config.json and video_preprocessor_config.json for a pixel budget in merged tokens
    (the Glm4v processors count the two duplicated frames of an image in their pixel bound)."""
    from ..inputs.processor import CLIP_MEAN, CLIP_STD

    image = {"size": {"shortest_edge": 12544, "longest_edge": 28 * 28 * 2 * max_image_tokens}, "patch_size": 14,
             "temporal_patch_size": 2, "merge_size": 2, "image_mean": list(CLIP_MEAN), "image_std": list(CLIP_STD),
             "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True, "resample": 3,
             "image_processor_type": "Glm4vImageProcessor"}
    video = {"size": {"shortest_edge": 12544, "longest_edge": 28 * 28 * 2 * max_frame_tokens}, "fps": 2.0,
             "max_duration": 300, "patch_size": 14, "temporal_patch_size": 2, "merge_size": 2}
    return image, video


def save_processing_files(path: str | Path, tokenizer, max_image_tokens: int, max_frame_tokens: int) -> None:
    """Everything beside the weights: tokenizer (a `tokenizers.Tokenizer` built by
    training/tokenizer.py), glmv's chat template, processor configs, generation config."""
    from importlib.resources import files

    from ..training.tokenizer import tokenizer_config

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(path / "tokenizer.json"))
    (path / "tokenizer_config.json").write_text(json.dumps(tokenizer_config(), indent=2) + "\n")
    (path / "chat_template.jinja").write_text(files("glmv").joinpath("assets/glm_chat_template.jinja").read_text())
    image, video = processor_configs(max_image_tokens, max_frame_tokens)
    (path / "preprocessor_config.json").write_text(json.dumps(image, indent=2) + "\n")
    (path / "video_preprocessor_config.json").write_text(json.dumps(video, indent=2) + "\n")
    eos = [tokenizer.token_to_id(t) for t in ("<|endoftext|>", "<|user|>", "<|observation|>")]
    (path / "generation_config.json").write_text(json.dumps({"eos_token_id": eos, "pad_token_id": eos[0]}, indent=2)
                                                  + "\n")
