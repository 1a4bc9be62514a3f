"""Hugging Face transformers, the reference, fed exactly the inputs glmv sees (benchmarks and tests)."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ..config import ModelConfig
from ..inputs.prompt import Prompt
from ..model.modeling import token_types


def hf_model(path: str | Path, dtype: torch.dtype = torch.float32, device: str = "cpu"):
    from transformers import Glm4vForConditionalGeneration, Glm4vMoeForConditionalGeneration

    arch = json.loads((Path(path) / "config.json").read_text())["model_type"]
    cls = Glm4vMoeForConditionalGeneration if arch == "glm4v_moe" else Glm4vForConditionalGeneration
    return cls.from_pretrained(path, dtype=dtype).to(device).eval()


def hf_inputs(prompts: list[Prompt], config: ModelConfig, pad_token_id: int = 0, device: str = "cpu") -> dict:
    """generate() kwargs for a batch of glmv prompts, left-padded; images and videos kept apart by their spans."""
    width = max(len(p.token_ids) for p in prompts)
    ids = torch.full((len(prompts), width), pad_token_id)
    mask = torch.zeros(len(prompts), width, dtype=torch.long)
    types = torch.zeros(len(prompts), width, dtype=torch.long)
    for row, p in enumerate(prompts):
        n = len(p.token_ids)
        ids[row, width - n:] = torch.tensor(p.token_ids)
        mask[row, width - n:] = 1
        types[row, width - n:] = torch.tensor(token_types(p.token_ids, config))
    kwargs = {"input_ids": ids, "mm_token_type_ids": types}
    if len(prompts) > 1:
        kwargs["attention_mask"] = mask
    for kind, pixels, grids in (("image", "pixel_values", "image_grid_thw"),
                                ("video", "pixel_values_videos", "video_grid_thw")):
        items = [m for p in prompts for m in p.media if m.kind == kind]
        if items:
            kwargs[pixels] = torch.cat([m.pixel_values for m in items])
            kwargs[grids] = torch.tensor([m.grid for m in items])
    return {k: v.to(device) for k, v in kwargs.items()}
