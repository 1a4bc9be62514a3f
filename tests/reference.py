"""Run the transformers reference on the same inputs as glmv."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from glmv.bench.reference import hf_inputs


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


def reference_inputs(prompt, config) -> dict:
    return hf_inputs([prompt], config)
