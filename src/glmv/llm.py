"""The offline API: `LLM(model=...).chat(messages, SamplingParams(...))`."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from .config import ModelConfig
from .inputs.chat_template import find_chat_template
from .inputs.media import MediaLimits
from .inputs.processor import ProcessorConfig
from .inputs.prompt import Prompt, PromptBuilder
from .inputs.tokenizer import Tokenizer
from .model.kv_cache import ContiguousKVCache
from .model.loader import load_model
from .outputs.reasoning import split_reasoning
from .sampling import sample
from .sampling_params import SamplingParams


@dataclass
class RequestOutput:
    prompt_token_ids: list[int]
    token_ids: list[int]  # generated, including the stop token if one ended the answer
    logprobs: list[float] | None  # log-probability of each generated token under the model
    text: str  # decoded answer, stop token excluded, special tokens such as <think> kept
    reasoning_content: str | None
    content: str
    finish_reason: str  # "stop" or "length"


def eos_token_ids(path: Path, config: ModelConfig) -> list[int]:
    """The checkpoint's stop tokens: generation_config.json first, then config.json."""
    gen = path / "generation_config.json"
    if gen.is_file():
        eos = json.loads(gen.read_text()).get("eos_token_id")
        if eos is not None:
            return [eos] if isinstance(eos, int) else list(eos)
    return list(config.eos_token_ids)


class LLM:
    def __init__(self, model: str | Path, dtype: str = "bfloat16", device: str = "cpu",
                 limits: MediaLimits | None = None, progress: bool = True):
        path = Path(model)
        self.path = path
        self.model = load_model(path, dtype=dtype, device=device, progress=progress)
        self.config = self.model.config
        self.tokenizer = Tokenizer(path)
        self.prompts = PromptBuilder(self.tokenizer, find_chat_template(path), self.config,
                                     ProcessorConfig.from_pretrained(path), limits)
        self.eos_token_ids = eos_token_ids(path, self.config)

    def chat(self, messages: list, params: SamplingParams | None = None, thinking: bool = True,
             tools: list[dict] | None = None) -> RequestOutput | list[RequestOutput]:
        """One conversation gives one output; a list of conversations gives a list of outputs."""
        params = params or SamplingParams()
        batch = isinstance(messages, list) and bool(messages) and isinstance(messages[0], list)
        conversations = messages if batch else [messages]
        outputs = [self.generate(self.prompts.build(c, thinking, tools), params) for c in conversations]
        return outputs if batch else outputs[0]

    @torch.inference_mode()
    def generate(self, prompt: Prompt, params: SamplingParams) -> RequestOutput:
        model, ids = self.model, prompt.token_ids
        limit = self.config.text.max_position_embeddings
        if len(ids) + params.max_tokens > limit:
            raise ValueError(f"prompt ({len(ids)} tokens) + max_tokens ({params.max_tokens}) exceeds the "
                             f"context of {limit} tokens")
        cache = ContiguousKVCache(self.config.text, len(ids) + params.max_tokens, model.dtype, model.device)
        features = None
        if prompt.media:
            features = model.encode_media(torch.cat([m.pixel_values for m in prompt.media]),
                                          [m.grid for m in prompt.media])
        embeds = model.embed(torch.tensor(ids, device=model.device), features)
        hidden = model(embeds, prompt.positions.to(model.device), cache)
        cache.advance()
        logits = model.compute_logits(hidden[-1])
        generator = None
        if params.seed is not None:
            generator = torch.Generator(model.device).manual_seed(params.seed)
        stops = set(params.stop_token_ids) | (set() if params.ignore_eos else set(self.eos_token_ids))
        tokens, logprobs, finish = [], [], "length"
        for step in range(params.max_tokens):
            token = sample(logits, params, generator)
            tokens.append(token)
            if params.logprobs is not None:
                logprobs.append(float(logits.log_softmax(-1)[token]))
            if token in stops:
                finish = "stop"
                break
            if step + 1 == params.max_tokens:
                break
            index = len(ids) + step
            positions = torch.full((3, 1), index + prompt.rope_delta, device=model.device)
            embeds = model.embed(torch.tensor([token], device=model.device))
            logits = model.compute_logits(model(embeds, positions, cache)[-1])
            cache.advance()
        answer = tokens[:-1] if finish == "stop" else tokens
        text = self.tokenizer.decode(answer)
        reasoning, content = split_reasoning(text)
        return RequestOutput(ids, tokens, logprobs if params.logprobs is not None else None, text, reasoning,
                             content, finish)
