"""The GLM-V model family (GLM-4.5V MoE and GLM-4.1V dense), top to bottom.

    pixels -> VisionTower (ViT, 2D RoPE, interpolated learned positions, 2x2 downsample, merger)
           -> features scattered into the <|image|> placeholders of the prompt
    tokens -> TextModel (GQA attention with partial M-RoPE, dense MLP or MoE) -> lm_head

Module names follow the official checkpoint keys (`model.visual.*`, `model.language_model.*`,
`lm_head.*`). Where a computation is cheaper fused, the weights are fused at load time
(q/k/v -> qkv_proj, gate/up -> gate_up_proj, per-expert tensors -> one stacked tensor per layer;
see loader.py). Tokens are flattened: the text model takes `[T, hidden]` plus 3 x T M-RoPE
positions, and attention goes through a cache object (`attend`) so that the same model runs
under the engine's paged cache (engine/paged_attention.py) or any other implementation of `attend`.
"""
from __future__ import annotations

import itertools
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig, TextConfig, VisionConfig


class AttentionCache(Protocol):
    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Store k/v ([T, kv_heads, D]) for `layer`, attend q ([T, heads, D]) causally, return [T, heads, D]."""


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


class GatedMLP(nn.Module):
    """down(silu(gate(x)) * up(x)), with gate and up fused into one matmul."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.gate_up_proj = nn.Linear(dim, 2 * hidden, bias=False)
        self.down_proj = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        return self.down_proj(F.silu(gate) * up)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """NeoX pairing: dim i rotates with dim i + d/2."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def rotate_interleaved(x: torch.Tensor) -> torch.Tensor:
    """GPT-J pairing: dim 2j rotates with dim 2j + 1."""
    return torch.stack((-x[..., 1::2], x[..., 0::2]), dim=-1).flatten(-2)


# ----------------------------------------------------------------------------------------------
# Vision tower
# ----------------------------------------------------------------------------------------------


class VisionAttention(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.num_heads = cfg.num_heads
        self.qkv = nn.Linear(cfg.hidden_size, 3 * cfg.hidden_size, bias=cfg.attention_bias)
        self.proj = nn.Linear(cfg.hidden_size, cfg.hidden_size, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, segments: list[int]) -> torch.Tensor:
        n = x.shape[0]
        q, k, v = self.qkv(x).view(n, 3, self.num_heads, -1).unbind(1)
        # RoPE over the whole head, in fp32.
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        q = (q.float() * cos + rotate_half(q.float()) * sin).to(v.dtype)
        k = (k.float() * cos + rotate_half(k.float()) * sin).to(v.dtype)
        out = torch.empty_like(q)
        # Block-diagonal attention: each image / frame pair attends within itself. Segments of equal
        # length are stacked into one batched call.
        starts = list(itertools.accumulate(segments, initial=0))
        by_length: dict[int, list[int]] = {}
        for i, length in enumerate(segments):
            by_length.setdefault(length, []).append(starts[i])
        for length, seg_starts in by_length.items():
            idx = (torch.tensor(seg_starts, device=x.device)[:, None] + torch.arange(length, device=x.device)).flatten()
            qs, ks, vs = (t[idx].view(len(seg_starts), length, self.num_heads, -1).transpose(1, 2) for t in (q, k, v))
            o = F.scaled_dot_product_attention(qs, ks, vs)
            out[idx] = o.transpose(1, 2).reshape(-1, self.num_heads, o.shape[-1])
        return self.proj(out.view(n, -1))


class VisionBlock(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.norm1 = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.norm2 = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.attn = VisionAttention(cfg)
        self.mlp = GatedMLP(cfg.hidden_size, cfg.out_hidden_size)

    def forward(self, x, cos, sin, segments):
        x = x + self.attn(self.norm1(x), cos, sin, segments)
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    """The Conv3d patch embedding: kernel == stride == patch, so it is a Linear over each flat patch."""

    def __init__(self, cfg: VisionConfig):
        super().__init__()
        patch_dim = cfg.in_channels * cfg.temporal_patch_size * cfg.patch_size**2
        self.proj = nn.Linear(patch_dim, cfg.hidden_size, bias=True)

    def forward(self, pixel_values):
        return self.proj(pixel_values.to(self.proj.weight.dtype))


class VisionEmbeddings(nn.Module):
    """Learned square grid of positions, bicubic-resampled to each image's own grid."""

    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.position_embedding = nn.Embedding((cfg.image_size // cfg.patch_size) ** 2, cfg.hidden_size)

    def forward(self, x, h_pos, w_pos, grid_h, grid_w):
        weight = self.position_embedding.weight
        side = int(weight.shape[0] ** 0.5)
        table = weight.view(side, side, -1).permute(2, 0, 1).unsqueeze(0).float()
        # Pixel-centre coordinates in [-1, 1] of each patch within its own image.
        gx = (w_pos.float() + 0.5) / grid_w.float() * 2 - 1
        gy = (h_pos.float() + 0.5) / grid_h.float() * 2 - 1
        grid = torch.stack((gx, gy), dim=-1)[None, :, None, :]
        pos = F.grid_sample(table, grid, mode="bicubic", align_corners=False, padding_mode="border")
        return x + pos.squeeze(0).squeeze(-1).t().to(weight.dtype)


class PatchMerger(GatedMLP):
    """proj -> LayerNorm -> exact GELU -> gated MLP of width `context_dim`."""

    def __init__(self, dim: int, context_dim: int):
        super().__init__(dim, context_dim)
        self.proj = nn.Linear(dim, dim, bias=False)
        self.post_projection_norm = nn.LayerNorm(dim)

    def forward(self, x):
        return super().forward(F.gelu(self.post_projection_norm(self.proj(x))))


class VisionTower(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.cfg = cfg
        self.patch_embed = PatchEmbed(cfg)
        self.post_conv_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.embeddings = VisionEmbeddings(cfg)
        self.blocks = nn.ModuleList(VisionBlock(cfg) for _ in range(cfg.depth))
        self.post_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        merge = cfg.spatial_merge_size
        # Conv2d(kernel=stride=merge) over each merge window == Linear over its merge**2 patches.
        self.downsample = nn.Linear(merge * merge * cfg.hidden_size, cfg.out_hidden_size, bias=True)
        self.merger = PatchMerger(cfg.out_hidden_size, cfg.intermediate_size)

    def patch_coordinates(self, grids: list[tuple[int, int, int]], device):
        """Row/column of each patch, in the processor's merge-window-major order."""
        m = self.cfg.spatial_merge_size
        hs, ws, gh, gw = [], [], [], []
        for t, h, w in grids:
            rows = torch.arange(h, device=device)[:, None].expand(h, w)
            cols = torch.arange(w, device=device)[None, :].expand(h, w)
            for coord, out in ((rows, hs), (cols, ws)):
                out.append(coord.reshape(h // m, m, w // m, m).permute(0, 2, 1, 3).flatten().repeat(t))
            gh.append(torch.full((t * h * w,), h, device=device))
            gw.append(torch.full((t * h * w,), w, device=device))
        return torch.cat(hs), torch.cat(ws), torch.cat(gh), torch.cat(gw)

    def rotary(self, h_pos, w_pos):
        head_dim = self.cfg.head_dim
        inv_freq = 1.0 / (self.cfg.rope_theta ** (
            torch.arange(0, head_dim // 2, 2, dtype=torch.float, device=h_pos.device) / (head_dim // 2)))
        freqs = torch.cat((h_pos[:, None] * inv_freq, w_pos[:, None] * inv_freq), dim=-1)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos(), emb.sin()

    def forward(self, pixel_values: torch.Tensor, grids: list[tuple[int, int, int]]) -> torch.Tensor:
        """pixel_values [patches, C*T*p*p]; grids: (t, h, w) per segment, each t==1 for one frame pair.
        Returns one embedding per merged 2x2 patch, in input order."""
        h_pos, w_pos, grid_h, grid_w = self.patch_coordinates(grids, pixel_values.device)
        x = self.post_conv_layernorm(self.patch_embed(pixel_values))
        x = self.embeddings(x, h_pos, w_pos, grid_h, grid_w)
        cos, sin = self.rotary(h_pos.float(), w_pos.float())
        segments = [h * w for t, h, w in grids for _ in range(t)]
        for block in self.blocks:
            x = block(x, cos, sin, segments)
        x = self.post_layernorm(x)
        m = self.cfg.spatial_merge_size
        x = self.downsample(x.view(-1, m * m * x.shape[-1]))
        return self.merger(x)


# ----------------------------------------------------------------------------------------------
# Text decoder
# ----------------------------------------------------------------------------------------------


class MRoPE(nn.Module):
    """Partial rotary embedding whose frequency bands read the temporal, height or width position."""

    def __init__(self, cfg: TextConfig):
        super().__init__()
        self.cfg = cfg
        dim = cfg.rotary_dim
        # Plain attributes, not buffers: the loader builds the model on the meta device.
        self.inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.float, device="cpu") / dim))
        # Frequency j reads axis 0 (t), 1 (h) or 2 (w) according to mrope_section.
        self.axis_of_freq = torch.tensor([i % 3 for i, n in enumerate(cfg.mrope_section) for _ in range(n)], device="cpu")

    def forward(self, positions: torch.Tensor, dtype: torch.dtype):
        """positions [3, T] -> cos, sin [T, rotary_dim] in `dtype`."""
        device = positions.device
        freqs = positions[self.axis_of_freq.to(device)].t().float() * self.inv_freq.to(device)
        if self.cfg.interleaved_rope:
            emb = freqs.repeat_interleave(2, dim=-1)
        else:
            emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(dtype), emb.sin().to(dtype)

    def apply(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        rot, keep = x[..., : cos.shape[-1]], x[..., cos.shape[-1]:]
        rotate = rotate_interleaved if self.cfg.interleaved_rope else rotate_half
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        return torch.cat((rot * cos + rotate(rot) * sin, keep), dim=-1)


class TextAttention(nn.Module):
    def __init__(self, cfg: TextConfig, layer: int):
        super().__init__()
        self.layer = layer
        self.num_heads, self.num_kv_heads, self.head_dim = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        self.q_size, self.kv_size = self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        self.qkv_proj = nn.Linear(cfg.hidden_size, self.q_size + 2 * self.kv_size, bias=cfg.attention_bias)
        self.o_proj = nn.Linear(self.q_size, cfg.hidden_size, bias=False)

    def forward(self, x, cos, sin, rope: MRoPE, cache: AttentionCache):
        n = x.shape[0]
        q, k, v = self.qkv_proj(x).split((self.q_size, self.kv_size, self.kv_size), dim=-1)
        q = rope.apply(q.view(n, self.num_heads, self.head_dim), cos, sin)
        k = rope.apply(k.view(n, self.num_kv_heads, self.head_dim), cos, sin)
        out = cache.attend(self.layer, q, k, v.view(n, self.num_kv_heads, self.head_dim))
        return self.o_proj(out.reshape(n, self.q_size))


class Router(nn.Module):
    """Sigmoid router (fp32). The correction bias steers which experts are chosen, not their weights."""

    def __init__(self, cfg: TextConfig):
        super().__init__()
        self.cfg = cfg
        self.weight = nn.Parameter(torch.empty(cfg.n_routed_experts, cfg.hidden_size))
        self.register_buffer("e_score_correction_bias", torch.zeros(cfg.n_routed_experts, dtype=torch.float32))

    def forward(self, x: torch.Tensor):
        cfg = self.cfg
        scores = F.linear(x.float(), self.weight.float()).sigmoid()
        choice = scores + self.e_score_correction_bias
        if cfg.n_group > 1:  # keep only the experts of the topk_group best groups
            grouped = choice.view(-1, cfg.n_group, cfg.n_routed_experts // cfg.n_group)
            group_scores = grouped.topk(2, dim=-1).values.sum(-1)
            keep = torch.zeros_like(group_scores).scatter_(1, group_scores.topk(cfg.topk_group, dim=-1).indices, 1)
            choice = grouped.masked_fill(keep[..., None] == 0, float("-inf")).view_as(choice)
        experts = choice.topk(cfg.num_experts_per_tok, dim=-1, sorted=False).indices
        weights = scores.gather(1, experts)
        if cfg.norm_topk_prob:
            weights = weights / (weights.sum(-1, keepdim=True) + 1e-20)
        return weights * cfg.routed_scaling_factor, experts


class Experts(nn.Module):
    """All routed experts of a layer, stacked: gate_up_proj [E, 2I, H], down_proj [E, H, I]."""

    def __init__(self, cfg: TextConfig):
        super().__init__()
        e, h, i = cfg.n_routed_experts, cfg.hidden_size, cfg.moe_intermediate_size
        self.gate_up_proj = nn.Parameter(torch.empty(e, 2 * i, h))
        self.down_proj = nn.Parameter(torch.empty(e, h, i))

    def forward(self, x: torch.Tensor, weights: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
        # Grouped compute: sort the (token, expert) pairs by expert and run every active expert once on
        # all of its rows with one grouped matmul (no loop over experts or tokens, no host sync).
        top_k = experts.shape[1]
        flat = experts.flatten()
        order = flat.argsort(stable=True)
        token = order // top_k
        ends = torch.bincount(flat, minlength=self.gate_up_proj.shape[0]).cumsum(0).to(torch.int32)
        xs = x[token]
        gate, up = F.grouped_mm(xs, self.gate_up_proj.transpose(1, 2), offs=ends).chunk(2, dim=-1)
        out = F.grouped_mm(F.silu(gate) * up, self.down_proj.transpose(1, 2), offs=ends)
        out = (out * weights.flatten()[order, None]).to(x.dtype)
        return torch.zeros_like(x).index_add_(0, token, out)


class MoE(nn.Module):
    def __init__(self, cfg: TextConfig):
        super().__init__()
        self.gate = Router(cfg)
        self.experts = Experts(cfg)
        self.shared_experts = GatedMLP(cfg.hidden_size, cfg.moe_intermediate_size * cfg.n_shared_experts)

    def forward(self, x):
        weights, experts = self.gate(x)
        return self.experts(x, weights, experts) + self.shared_experts(x)


class DecoderLayer(nn.Module):
    def __init__(self, cfg: TextConfig, layer: int):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = TextAttention(cfg, layer)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = MoE(cfg) if cfg.is_moe_layer(layer) else GatedMLP(cfg.hidden_size, cfg.intermediate_size)
        self.sandwich = cfg.sandwich_norms
        if self.sandwich:
            self.post_self_attn_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
            self.post_mlp_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(self, x, cos, sin, rope, cache):
        h = self.self_attn(self.input_layernorm(x), cos, sin, rope, cache)
        if self.sandwich:
            h = self.post_self_attn_layernorm(h)
        x = x + h
        h = self.mlp(self.post_attention_layernorm(x))
        if self.sandwich:
            h = self.post_mlp_layernorm(h)
        return x + h


class TextModel(nn.Module):
    def __init__(self, cfg: TextConfig):
        super().__init__()
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(cfg, i) for i in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.rotary_emb = MRoPE(cfg)

    def forward(self, inputs_embeds: torch.Tensor, positions: torch.Tensor, cache: AttentionCache) -> torch.Tensor:
        """inputs_embeds [T, hidden], positions [3, T] -> final hidden states [T, hidden]."""
        cos, sin = self.rotary_emb(positions, inputs_embeds.dtype)
        x = inputs_embeds
        for layer in self.layers:
            x = layer(x, cos, sin, self.rotary_emb, cache)
        return self.norm(x)


# ----------------------------------------------------------------------------------------------
# The whole model
# ----------------------------------------------------------------------------------------------


class GlmvModel(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.visual = VisionTower(cfg.vision)
        self.language_model = TextModel(cfg.text)


class GlmvForConditionalGeneration(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.model = GlmvModel(cfg)
        self.lm_head = nn.Linear(cfg.text.hidden_size, cfg.text.vocab_size, bias=False)

    @property
    def dtype(self) -> torch.dtype:
        return self.lm_head.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.lm_head.weight.device

    def encode_media(self, pixel_values: torch.Tensor, grids: list[tuple[int, int, int]]) -> torch.Tensor:
        """Vision features for images ((1, h, w)) and videos ((frame_pairs, h, w)), concatenated in order.
        A video is encoded frame pair by frame pair, each its own attention segment."""
        frames = [(1, h, w) for t, h, w in grids for _ in range(t)]
        return self.model.visual(pixel_values.to(self.device), frames)

    def embed(self, input_ids: torch.Tensor, media_features: torch.Tensor | None = None,
              rows: torch.Tensor | None = None) -> torch.Tensor:
        """Token embeddings with the media features written into rows `rows`; by default into all the
        <|image|> placeholders, in order. (Video frames use the image placeholder too; their spans only
        change their positions.) A prefill chunk passes the rows of the placeholders it holds."""
        embeds = self.model.language_model.embed_tokens(input_ids)
        if media_features is not None and media_features.numel():
            if rows is None:
                rows = (input_ids == self.config.image_token_id).nonzero().squeeze(1)
            if rows.shape[0] != media_features.shape[0]:
                raise ValueError(f"{rows.shape[0]} image placeholders but {media_features.shape[0]} media features")
            embeds[rows] = media_features.to(embeds.dtype)
        return embeds

    def forward(self, inputs_embeds: torch.Tensor, positions: torch.Tensor, cache: AttentionCache) -> torch.Tensor:
        return self.model.language_model(inputs_embeds, positions, cache)

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.lm_head(hidden).float()


# ----------------------------------------------------------------------------------------------
# 3D M-RoPE positions
# ----------------------------------------------------------------------------------------------

TEXT, IMAGE, VIDEO = 0, 1, 2


def token_types(input_ids: list[int], cfg: ModelConfig) -> list[int]:
    """0 text, 1 image, 2 video: an <|image|> inside <|begin_of_video|>...<|end_of_video|> is a video frame."""
    types, in_video = [], False
    for tok in input_ids:
        if tok == cfg.video_start_token_id:
            in_video = True
        elif tok == cfg.video_end_token_id:
            in_video = False
        types.append((VIDEO if in_video else IMAGE) if tok == cfg.image_token_id else TEXT)
    return types


def rope_positions(input_ids: list[int], grids: list[tuple[int, int, int]], cfg: ModelConfig) -> tuple[torch.Tensor, int]:
    """M-RoPE position ids [3, L] and the rope delta that carries on into decoding.

    Text runs count up on all three axes. Each run of media tokens (one image, or one frame pair of a
    video, since timestamps separate the pairs) takes a (t, h, w) grid starting at the current
    position, and the next position jumps by max(h, w) of the merged grid. `grids` lists the media in
    order of appearance, videos with their frame-pair count."""
    m = cfg.vision.spatial_merge_size
    runs = iter([(h // m, w // m) for t, h, w in grids for _ in range(t)])
    chunks, cur = [], 0
    for kind, group in itertools.groupby(token_types(input_ids, cfg)):
        n = len(list(group))
        if kind == TEXT:
            chunks.append(torch.arange(cur, cur + n).expand(3, n))
            cur += n
            continue
        h, w = next(runs)
        if h * w != n:
            raise ValueError(f"media run of {n} tokens does not match its merged grid {h}x{w}")
        hh, ww = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        chunks.append(torch.stack((torch.full((n,), cur), hh.flatten() + cur, ww.flatten() + cur)))
        cur += max(h, w)
    positions = torch.cat(chunks, dim=1) if chunks else torch.zeros(3, 0, dtype=torch.long)
    delta = int(positions.max()) + 1 - len(input_ids) if len(input_ids) else 0
    return positions, delta
