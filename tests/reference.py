"""Run the transformers reference on the same inputs as glmv."""
from __future__ import annotations

import torch
import torch.nn.functional as F


class FullCausalAttention:
    """The model's `attend` protocol for one whole-prompt forward without a cache: plain causal attention."""

    def attend(self, layer, q, k, v):
        out = F.scaled_dot_product_attention(q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1),
                                             is_causal=True, enable_gqa=True)
        return out.transpose(0, 1)


def prompt_logits(model, ids, positions, features=None):
    """glmv's logits at every position of a prompt."""
    hidden = model(model.embed(torch.tensor(ids), features), positions, FullCausalAttention())
    return model.compute_logits(hidden)


def reference_model(path, arch):
    from transformers import Glm4vForConditionalGeneration, Glm4vMoeForConditionalGeneration

    cls = Glm4vMoeForConditionalGeneration if arch == "glm4v_moe" else Glm4vForConditionalGeneration
    return cls.from_pretrained(path, dtype=torch.float32).eval()


def reference_inputs(prompt, config) -> dict:
    """transformers' forward/generate kwargs for a glmv Prompt (images and videos kept apart by their spans)."""
    from glmv.model.modeling import token_types

    ids = torch.tensor([prompt.token_ids])
    kwargs = {"input_ids": ids, "mm_token_type_ids": torch.tensor([token_types(prompt.token_ids, config)])}
    images = [m for m in prompt.media if m.kind == "image"]
    videos = [m for m in prompt.media if m.kind == "video"]
    if images:
        kwargs["pixel_values"] = torch.cat([m.pixel_values for m in images])
        kwargs["image_grid_thw"] = torch.tensor([m.grid for m in images])
    if videos:
        kwargs["pixel_values_videos"] = torch.cat([m.pixel_values for m in videos])
        kwargs["video_grid_thw"] = torch.tensor([m.grid for m in videos])
    return kwargs


def arch_of(path) -> str:
    import json

    return json.loads((path / "config.json").read_text())["model_type"]
