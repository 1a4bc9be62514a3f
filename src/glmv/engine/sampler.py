"""Choosing the next token of every sequence in a step, from one [batch, vocab] logits tensor.

Penalties, temperature, top-k and top-p are applied to the whole batch at once. Each sequence
draws its randomness from its own generator (Gumbel-max: argmax of probs / Exp(1) noise), so a
seeded request gives the same tokens whichever requests run beside it. Log-probabilities are
those of the model itself, before any of the sampling transforms.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .sequence import Sequence


@dataclass
class Sampled:
    token_ids: list[int]
    logprobs: list[float] | None  # per row, None when no row asked for them
    top_logprobs: list[list[tuple[int, float]]] | None


def apply_penalties(logits: torch.Tensor, seqs: list[Sequence]) -> None:
    for row, seq in enumerate(seqs):
        p = seq.params
        if not p.penalized:
            continue
        if p.repetition_penalty != 1:
            seen = torch.tensor(sorted(set(seq.token_ids)), device=logits.device)
            values = logits[row, seen]
            logits[row, seen] = torch.where(values > 0, values / p.repetition_penalty, values * p.repetition_penalty)
        if seq.output_ids and (p.presence_penalty or p.frequency_penalty):
            counts = torch.bincount(torch.tensor(seq.output_ids, device=logits.device), minlength=logits.shape[1])
            logits[row] -= p.frequency_penalty * counts + p.presence_penalty * (counts > 0)


def sample(logits: torch.Tensor, seqs: list[Sequence], forced: list[int | None]) -> Sampled:
    """logits [B, vocab] float32, one row per sequence; forced[i] overrides row i's choice."""
    want_logprobs = [s.params.logprobs is not None for s in seqs]
    raw_logprobs = logits.log_softmax(-1) if any(want_logprobs) else None
    if any(s.params.penalized for s in seqs):
        logits = logits.clone()
        apply_penalties(logits, seqs)
    device = logits.device
    greedy = torch.tensor([s.params.greedy for s in seqs], device=device)
    choice = logits.argmax(-1)
    if not bool(greedy.all()):
        temperature = torch.tensor([s.params.temperature or 1.0 for s in seqs], device=device)
        scaled = logits / temperature[:, None]
        top_k = [s.params.top_k for s in seqs]
        top_p = [s.params.top_p for s in seqs]
        if any(k > 0 for k in top_k) or any(p < 1 for p in top_p):
            scaled = _truncate(scaled, top_k, top_p)
        probs = scaled.softmax(-1)
        noise = torch.stack([torch.empty(logits.shape[1], device=device).exponential_(generator=s.generator)
                             for s in seqs])
        choice = torch.where(greedy, choice, probs.div_(noise).argmax(-1))
    tokens = choice.tolist()
    for row, token in enumerate(forced):
        if token is not None:
            tokens[row] = token
    if raw_logprobs is None:
        return Sampled(tokens, None, None)
    chosen = raw_logprobs.gather(1, torch.tensor(tokens, device=device)[:, None]).squeeze(1).tolist()
    most = max((s.params.logprobs or 0) for s in seqs)
    tops = [[] for _ in seqs]
    if most:
        values, ids = raw_logprobs.topk(most, dim=-1)
        values, ids = values.tolist(), ids.tolist()
        tops = [list(zip(ids[r], values[r]))[: seqs[r].params.logprobs or 0] for r in range(len(seqs))]
    return Sampled(tokens, chosen, tops)


def _truncate(logits: torch.Tensor, top_k: list[int], top_p: list[float]) -> torch.Tensor:
    """Mask all but each row's top-k tokens and its smallest prefix reaching top-p of the mass."""
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    rank = torch.arange(logits.shape[1], device=logits.device)
    k = torch.tensor([kk if kk > 0 else logits.shape[1] for kk in top_k], device=logits.device)
    drop = rank[None, :] >= k[:, None]
    probs = sorted_logits.masked_fill(drop, float("-inf")).softmax(-1)
    p = torch.tensor(top_p, device=logits.device)
    drop |= (probs.cumsum(-1) - probs) >= p[:, None]  # the first token always stays
    return logits.scatter(1, order, sorted_logits.masked_fill(drop, float("-inf")))
