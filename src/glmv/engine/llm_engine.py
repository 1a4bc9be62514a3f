"""The engine: requests in, tokens out, one step at a time (schedule -> run the model -> sample).

Requests join and leave at every step; see scheduler.py for what a step holds.
"""
from __future__ import annotations

import json
import logging
import secrets
from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import ModelConfig
from ..inputs.prompt import Prompt, PromptBuilder
from ..model.loader import load_model
from ..outputs.reasoning import split_reasoning
from ..sampling_params import SamplingParams
from .block_manager import BlockManager
from .config import EngineConfig
from .detokenizer import Detokenizer
from .model_runner import ModelRunner
from .paged_attention import PagedKVCache
from .sampler import sample
from .scheduler import Scheduler
from .sequence import Sequence, Status, media_spans

log = logging.getLogger("glmv.engine")


@dataclass
class RequestUpdate:
    """What one step added to one request (streamed by the async front)."""
    request_id: str
    token_ids: list[int]
    text: str  # new text that is safe to show (stop strings held back until ruled out)
    finished: bool
    finish_reason: str | None  # "stop", "length", "abort" or "error"
    prompt_tokens: int
    cached_tokens: int
    output_tokens: int
    logprobs: list[float] | None = None
    top_logprobs: list[list[tuple[int, float]]] | None = None


@dataclass
class RequestOutput:
    request_id: str
    prompt_token_ids: list[int]
    token_ids: list[int]  # generated, including the stop token if one ended the answer
    logprobs: list[float] | None  # log-probability of each generated token under the model
    top_logprobs: list[list[tuple[int, float]]] | None  # the top-N alternatives at each step
    text: str  # decoded answer without the stop token or stop string; special tokens such as <think> kept
    reasoning_content: str | None
    content: str
    finish_reason: str
    cached_tokens: int  # prompt tokens whose prefill the prefix cache saved


def eos_token_ids(path: Path, config: ModelConfig) -> list[int]:
    """The checkpoint's stop tokens: generation_config.json first, then config.json."""
    gen = path / "generation_config.json"
    if gen.is_file():
        eos = json.loads(gen.read_text()).get("eos_token_id")
        if eos is not None:
            return [eos] if isinstance(eos, int) else list(eos)
    return list(config.eos_token_ids)


class LLMEngine:
    def __init__(self, model: str | Path, config: EngineConfig | None = None):
        self.path = Path(model)
        self.config = cfg = config or EngineConfig()
        self.model = load_model(self.path, dtype=cfg.dtype, device=cfg.device, progress=cfg.progress)
        self.model_config = self.model.config
        self.prompts = PromptBuilder.from_pretrained(self.path, cfg.limits, self.model_config)
        self.tokenizer = self.prompts.tokenizer
        self.eos_token_ids = eos_token_ids(self.path, self.model_config)
        self.think_start, self.think_end = self.tokenizer.find_id("<think>"), self.tokenizer.find_id("</think>")
        text_cfg = self.model_config.text
        self.max_model_len = min(cfg.max_model_len or text_cfg.max_position_embeddings,
                                 text_cfg.max_position_embeddings)
        per_block = PagedKVCache.bytes_per_block(text_cfg, cfg.block_size, self.model.dtype)
        blocks_per_seq = -(-self.max_model_len // cfg.block_size)
        num_blocks = min(cfg.kv_cache_bytes(self.model.device) // per_block, cfg.max_num_seqs * blocks_per_seq)
        if num_blocks < 1:
            raise ValueError(f"the KV cache budget holds no block of {per_block} bytes: raise kv_cache_memory")
        self.block_manager = BlockManager(num_blocks, cfg.block_size, cfg.enable_prefix_caching)
        self.scheduler = Scheduler(self.block_manager, cfg.max_num_seqs, cfg.max_num_batched_tokens)
        self.runner = ModelRunner(self.model, num_blocks, cfg.block_size, cfg.encoder_cache_tokens)
        self.requests: dict[str, Sequence] = {}
        log.info("KV cache: %d blocks of %d tokens (%.1f MiB), max_model_len %d", num_blocks, cfg.block_size,
                 num_blocks * per_block / 2**20, self.max_model_len)

    # -- requests ------------------------------------------------------------------------------

    def check(self, prompt: Prompt, params: SamplingParams) -> None:
        """Raise ValueError if the request can never run here (too long for the context or the cache)."""
        total = len(prompt.token_ids) + params.max_tokens
        if total > self.max_model_len:
            raise ValueError(f"prompt ({len(prompt.token_ids)} tokens) + max_tokens ({params.max_tokens}) exceeds "
                             f"the context of {self.max_model_len} tokens")
        needed = self.block_manager.blocks_for(total)
        if needed > self.block_manager.num_blocks:
            raise ValueError(f"the request needs {needed} KV blocks but the cache holds "
                             f"{self.block_manager.num_blocks}: raise kv_cache_memory or lower max_tokens")
        if params.max_thinking_tokens is not None and self.think_end is None:
            raise ValueError("max_thinking_tokens needs a tokenizer with <think> and </think> tokens")

    def add_request(self, prompt: Prompt, params: SamplingParams, request_id: str | None = None) -> Sequence:
        self.check(prompt, params)
        request_id = request_id or secrets.token_hex(8)
        if request_id in self.requests:
            raise ValueError(f"request id {request_id!r} is already running")
        stops = set(params.stop_token_ids) | (set() if params.ignore_eos else set(self.eos_token_ids))
        seed = params.seed if params.seed is not None else secrets.randbits(63)
        seq = Sequence(request_id, prompt, params, stops, Detokenizer(self.tokenizer, params.stop),
                       media=media_spans(prompt, self.model_config.image_token_id),
                       generator=torch.Generator(self.model.device).manual_seed(seed))
        seq.in_thinking = self.opens_thinking(prompt.token_ids)
        self.requests[request_id] = seq
        self.scheduler.add(seq)
        return seq

    def abort(self, request_id: str) -> None:
        """Drop a request now; its KV blocks are free when this returns."""
        seq = self.requests.pop(request_id, None)
        if seq is not None and seq.status is not Status.FINISHED:
            self.scheduler.finish(seq, "abort")

    def has_unfinished(self) -> bool:
        return self.scheduler.has_work()

    # -- one step ------------------------------------------------------------------------------

    def step(self) -> list[RequestUpdate]:
        batch = self.scheduler.schedule()
        if not batch:
            return []
        try:
            fresh, self.block_manager.fresh = self.block_manager.fresh, []
            logits = self.runner.run(batch, fresh)
        except Exception:  # a failed step fails its requests, not the engine
            log.exception("engine step failed; failing its %d requests", len(batch))
            return [self._finish(seq, "error") for seq, _ in batch]
        for seq, n in batch:
            seq.num_computed += n
            self.block_manager.cache_full_blocks(seq, seq.num_computed - n)
        ready = [seq for seq, _ in batch if seq.num_computed == len(seq)]
        forced = [self.think_end if self._thinking_over(seq) else None for seq in ready]
        sampled = sample(logits, ready, forced)
        updates = []
        for i, seq in enumerate(ready):
            logprob = None if sampled.logprobs is None else sampled.logprobs[i]
            top = None if sampled.top_logprobs is None else sampled.top_logprobs[i]
            updates.append(self._append(seq, sampled.token_ids[i], logprob, top))
        return updates

    def _append(self, seq: Sequence, token: int, logprob: float | None, top) -> RequestUpdate:
        seq.output_ids.append(token)
        if seq.params.logprobs is not None:
            seq.logprobs.append(logprob)
            seq.top_logprobs.append(top)
        if token == self.think_start:
            seq.in_thinking = True
        elif token == self.think_end:
            seq.in_thinking = False
        elif seq.in_thinking:
            seq.thinking_tokens += 1
        reason = None
        if token in seq.stop_token_ids or seq.detokenizer.add(token):
            reason = "stop"
        elif len(seq.output_ids) >= seq.params.max_tokens:
            reason = "length"
        if reason:
            self.scheduler.finish(seq, reason)
            del self.requests[seq.request_id]
        return self._update(seq, [token], logprob, top)

    def _finish(self, seq: Sequence, reason: str) -> RequestUpdate:
        self.scheduler.finish(seq, reason)
        self.requests.pop(seq.request_id, None)
        return self._update(seq, [], None, None)

    def _update(self, seq: Sequence, tokens: list[int], logprob, top) -> RequestUpdate:
        finished = seq.status is Status.FINISHED
        return RequestUpdate(seq.request_id, tokens, seq.detokenizer.delta(finished), finished, seq.finish_reason,
                             seq.num_prompt_tokens, seq.num_cached, len(seq.output_ids),
                             None if logprob is None else [logprob], None if top is None else [top])

    def opens_thinking(self, ids: list[int]) -> bool:
        """Whether the prompt leaves the model inside <think> (its last think tag is an opening one)."""
        for token in reversed(ids):
            if token in (self.think_start, self.think_end):
                return token == self.think_start
        return False

    def _thinking_over(self, seq: Sequence) -> bool:
        budget = seq.params.max_thinking_tokens
        return budget is not None and seq.in_thinking and seq.thinking_tokens >= budget

    def output(self, seq: Sequence) -> RequestOutput:
        text = seq.detokenizer.text
        reasoning, content = split_reasoning(text)
        wants = seq.params.logprobs is not None
        return RequestOutput(seq.request_id, seq.prompt.token_ids, list(seq.output_ids),
                             list(seq.logprobs) if wants else None, list(seq.top_logprobs) if wants else None,
                             text, reasoning, content, seq.finish_reason or "", seq.num_cached)
