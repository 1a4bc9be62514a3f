"""Run the transformers reference on the same inputs as glmv."""
from __future__ import annotations

import torch


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
