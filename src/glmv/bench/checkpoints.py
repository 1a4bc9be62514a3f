"""Random-weight GLM-V checkpoints in the official Hugging Face layout, for benchmarks and tests.

They are made with transformers (the reference implementation), so they are exactly what
`save_pretrained` writes for a real GLM-4.5V / GLM-4.1V: config.json, safetensors with the official
key names, plus a GLM tokenizer, processor configs and glmv's chat template. transformers is needed
only here (`pip install glmv[bench]`); the engine never imports it.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..model.saver import save_processing_files
from ..training.tokenizer import build_tokenizer

CORPUS = [
    "What is in this picture? Describe the image in detail.",
    "The red circle is at the top left. There are three shapes: a square, a star and a triangle.",
    "Got it, let me look at the image carefully and count the objects one by one.",
    "Describe this video. What happens first and what happens next?",
    "The answer is 42. Tell me the position of the blue star in [x1,y1,x2,y2] format.",
    "Hello, how are you today? I am fine, thank you very much.",
] * 4
def write_random_checkpoint(path: Path, arch: str, text: dict, vision: dict, seed: int = 0,
                            dtype: torch.dtype = torch.float32, max_shard_size: str | None = None,
                            tokenizer_vocab: int = 320, max_image_tokens: int = 64, max_frame_tokens: int = 96,
                            std: float = 0.08) -> Path:
    """Write a checkpoint of `arch` ("glm4v_moe" or "glm4v") with `text` / `vision` config fields.
    Weights are N(0, std) (larger than the default init, so that logits are far apart), norms are
    perturbed and the router correction bias is random, so every path of the model matters."""
    from transformers import Glm4vConfig, Glm4vForConditionalGeneration, Glm4vMoeConfig, Glm4vMoeForConditionalGeneration

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer(CORPUS, vocab_size=tokenizer_vocab)
    t = tok.token_to_id
    eos = [t("<|endoftext|>"), t("<|user|>"), t("<|observation|>")]
    text = {"vocab_size": tok.get_vocab_size(), "pad_token_id": eos[0], "eos_token_id": eos, **text}
    special = dict(image_token_id=t("<|image|>"), video_token_id=t("<|video|>"),
                   image_start_token_id=t("<|begin_of_image|>"), image_end_token_id=t("<|end_of_image|>"),
                   video_start_token_id=t("<|begin_of_video|>"), video_end_token_id=t("<|end_of_video|>"))
    moe = arch == "glm4v_moe"
    config = (Glm4vMoeConfig if moe else Glm4vConfig)(text_config=text, vision_config=vision, **special)
    torch.manual_seed(seed)
    model = (Glm4vMoeForConditionalGeneration if moe else Glm4vForConditionalGeneration)(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(torch.randn_like(p) * 0.3)
            elif p.dim() >= 2:
                p.normal_(0, std)
        for name, b in model.named_buffers():
            if "e_score_correction_bias" in name:
                b.copy_(torch.randn_like(b) * 0.1)
    model.to(dtype).save_pretrained(path, **({"max_shard_size": max_shard_size} if max_shard_size else {}))
    save_processing_files(path, tok, max_image_tokens, max_frame_tokens)
    return path
