"""One engine step on the model: vision features, embeddings, positions, the forward, the logits.

Every sequence in the step brings a run of its tokens (a prefill chunk, or the one new token of a
decode); they are flattened into one [T, hidden] batch. Images and videos that the step's chunks
touch are encoded together in one vision-tower call, unless the encoder cache has them.
"""
from __future__ import annotations

import torch

from ..model.modeling import GlmvForConditionalGeneration
from .encoder_cache import EncoderCache
from .paged_attention import PagedKVCache, make_plan
from .sequence import MediaSpan, Sequence


class ModelRunner:
    def __init__(self, model: GlmvForConditionalGeneration, num_blocks: int, block_size: int,
                 encoder_cache_tokens: int):
        self.model = model
        self.device = model.device
        self.block_size = block_size
        self.cache = PagedKVCache(model.config.text, num_blocks, block_size, model.dtype, self.device)
        self.encoder_cache = EncoderCache(encoder_cache_tokens)

    def media_features(self, spans: list[MediaSpan]) -> dict[str, torch.Tensor]:
        """Vision features of each span (by hash): from the cache, or encoded now in one batch."""
        found, missing = {}, {}
        for span in spans:
            if span.hash in found or span.hash in missing:
                continue
            features = self.encoder_cache.get(span.hash)
            if features is None:
                missing[span.hash] = span.item
            else:
                found[span.hash] = features
        if missing:
            items = list(missing.values())
            encoded = self.model.encode_media(torch.cat([m.pixel_values for m in items]), [m.grid for m in items])
            for key, features in zip(missing, encoded.split([m.num_tokens for m in items])):
                found[key] = features
                self.encoder_cache.put(key, features)
        return found

    @torch.inference_mode()
    def run(self, batch: list[tuple[Sequence, int]], fresh_blocks: list[int]) -> torch.Tensor:
        """Compute `n` more tokens of each sequence; the logits [B, vocab] of the sequences whose
        last token was computed (those that get a new token), in batch order."""
        model, device = self.model, self.device
        if fresh_blocks:
            self.cache.clear(fresh_blocks)
        ids, positions, plan_rows, last_rows, media = [], [], [], [], []
        row = 0
        for seq, n in batch:
            start = seq.num_computed
            ids.extend(seq.token_ids[start:start + n])
            positions.append(seq.positions(start, start + n))
            plan_rows.append((seq.block_table, start, n))
            media += [(span, start, n, row) for span in seq.media_in(start, start + n)]
            row += n
            if start + n == len(seq):
                last_rows.append(row - 1)
        features, rows = self._media_rows(media)
        embeds = model.embed(torch.tensor(ids, device=device), features, rows)
        self.cache.plan = make_plan(plan_rows, self.block_size, device)
        hidden = model(embeds, torch.cat(positions, dim=1).to(device), self.cache)
        self.cache.plan = None
        return model.compute_logits(hidden[torch.tensor(last_rows, device=device)])

    def _media_rows(self, media: list[tuple[MediaSpan, int, int, int]]):
        """The vision features that this step's chunks hold, and their rows in the step's tokens.
        media: (span, first position of the chunk, chunk length, first row of the chunk)."""
        if not media:
            return None, None
        by_hash = self.media_features([span for span, *_ in media])
        features, rows = [], []
        for span, start, n, row in media:
            inside = (span.token_index >= start) & (span.token_index < start + n)
            features.append(by_hash[span.hash][inside.to(self.device)])
            rows.append(span.token_index[inside] - start + row)
        return torch.cat(features), torch.cat(rows).to(self.device)
