"""Model configuration, parsed from a checkpoint's own config.json.

Both layouts of transformers are accepted: v4 keeps `rope_theta`, `partial_rotary_factor` and
`rope_scaling` at the top of `text_config`; v5 folds them into `rope_parameters`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

SUPPORTED_MODEL_TYPES = ("glm4v_moe", "glm4v")


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded: the message names the file or tensor at fault."""


@dataclass
class VisionConfig:
    depth: int = 24
    hidden_size: int = 1536
    num_heads: int = 12
    intermediate_size: int = 10944  # width of the patch merger MLP
    out_hidden_size: int = 4096  # width of the block MLPs and of the merger output
    image_size: int = 336
    patch_size: int = 14
    temporal_patch_size: int = 2
    spatial_merge_size: int = 2
    in_channels: int = 3
    rms_norm_eps: float = 1e-5
    attention_bias: bool = False
    rope_theta: float = 10000.0

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads


@dataclass
class TextConfig:
    vocab_size: int = 151552
    hidden_size: int = 4096
    num_hidden_layers: int = 46
    num_attention_heads: int = 96
    num_key_value_heads: int = 8
    head_dim: int = 128
    intermediate_size: int = 10944
    attention_bias: bool = True
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    partial_rotary_factor: float = 0.5
    mrope_section: list[int] = field(default_factory=lambda: [8, 12, 12])
    max_position_embeddings: int = 65536
    # Mixture of experts (GLM-4.5V); n_routed_experts == 0 means a dense model (GLM-4.1V).
    n_routed_experts: int = 0
    num_experts_per_tok: int = 8
    moe_intermediate_size: int = 1408
    n_shared_experts: int = 1
    first_k_dense_replace: int = 1
    n_group: int = 1
    topk_group: int = 1
    norm_topk_prob: bool = True
    routed_scaling_factor: float = 1.0
    # GLM-4.1V puts extra norms after attention and after the MLP ("sandwich" norms)
    # and pairs rotary dims interleaved (GPT-J); GLM-4.5V pairs them in halves (NeoX).
    sandwich_norms: bool = False
    interleaved_rope: bool = False

    @property
    def rotary_dim(self) -> int:
        return int(self.head_dim * self.partial_rotary_factor)

    def is_moe_layer(self, layer: int) -> bool:
        return self.n_routed_experts > 0 and layer >= self.first_k_dense_replace


@dataclass
class ModelConfig:
    model_type: str
    text: TextConfig
    vision: VisionConfig
    image_token_id: int
    video_token_id: int
    image_start_token_id: int
    image_end_token_id: int
    video_start_token_id: int
    video_end_token_id: int
    eos_token_ids: list[int]
    pad_token_id: int | None
    tie_word_embeddings: bool = False

    @classmethod
    def from_dict(cls, raw: dict) -> "ModelConfig":
        model_type = raw.get("model_type")
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise CheckpointError(
                f"unsupported model_type {model_type!r}: glmv runs {', '.join(SUPPORTED_MODEL_TYPES)}"
            )
        text_raw = dict(raw.get("text_config") or {})
        vision_raw = dict(raw.get("vision_config") or {})
        text = _text_config(text_raw, moe=model_type == "glm4v_moe")
        vision = _pick(VisionConfig, vision_raw)
        vision_rope = vision_raw.get("rope_parameters") or {}
        vision.rope_theta = float(vision_rope.get("rope_theta", vision_raw.get("rope_theta", 10000.0)))
        eos = raw.get("eos_token_id", text_raw.get("eos_token_id"))
        eos = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
        tie = bool(raw.get("tie_word_embeddings") or text_raw.get("tie_word_embeddings") or False)
        ids = {}
        for name in ("image_token_id", "video_token_id", "image_start_token_id", "image_end_token_id",
                     "video_start_token_id", "video_end_token_id"):
            if raw.get(name) is None:
                raise CheckpointError(f"config.json lacks {name}")
            ids[name] = int(raw[name])
        return cls(model_type=model_type, text=text, vision=vision, eos_token_ids=eos,
                   pad_token_id=text_raw.get("pad_token_id", raw.get("pad_token_id")),
                   tie_word_embeddings=tie, **ids)

    @classmethod
    def from_pretrained(cls, path: str | Path) -> "ModelConfig":
        config_file = Path(path) / "config.json"
        if not config_file.is_file():
            raise CheckpointError(f"{config_file} not found: is {path} a GLM-V checkpoint folder?")
        try:
            raw = json.loads(config_file.read_text())
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{config_file} is not valid JSON: {exc}") from exc
        return cls.from_dict(raw)


def _pick(cls, raw: dict):
    """Build a dataclass from the keys of `raw` it knows, ignoring the rest."""
    known = {f for f in cls.__dataclass_fields__}
    return cls(**{k: v for k, v in raw.items() if k in known and v is not None})


def _text_config(raw: dict, moe: bool) -> TextConfig:
    rope = dict(raw.get("rope_parameters") or raw.get("rope_scaling") or {})
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type not in ("default", "mrope"):
        raise CheckpointError(f"unsupported text rope_type {rope_type!r}")
    cfg = _pick(TextConfig, raw)
    if "head_dim" not in raw or raw["head_dim"] is None:
        cfg.head_dim = cfg.hidden_size // cfg.num_attention_heads
    cfg.rope_theta = float(rope.get("rope_theta", raw.get("rope_theta", 10000.0)))
    cfg.partial_rotary_factor = float(rope.get("partial_rotary_factor", raw.get("partial_rotary_factor", 0.5)))
    cfg.mrope_section = list(rope.get("mrope_section", [8, 12, 12]))
    if sum(cfg.mrope_section) * 2 != cfg.rotary_dim:
        raise CheckpointError(f"mrope_section {cfg.mrope_section} does not cover rotary dim {cfg.rotary_dim}")
    if moe:
        cfg.n_routed_experts = int(raw.get("n_routed_experts", 128))
        cfg.attention_bias = bool(raw.get("attention_bias", True))
    else:
        cfg.n_routed_experts = 0
        cfg.attention_bias = True  # GLM-4.1V hard-codes q/k/v bias
        cfg.sandwich_norms = True
        cfg.interleaved_rope = True
    return cfg
