"""The offline API: `LLM(model=...).chat(messages, SamplingParams(...))`, run through the engine."""
from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from .engine.config import EngineConfig
from .engine.llm_engine import LLMEngine, RequestOutput
from .inputs.media import MediaLimits
from .inputs.prompt import Prompt
from .sampling_params import SamplingParams


class LLM:
    def __init__(self, model: str | Path, dtype: str = "bfloat16", device: str = "cpu",
                 limits: MediaLimits | None = None, progress: bool = True, **engine_options):
        """engine_options: any EngineConfig field (kv_cache_memory, max_num_seqs, block_size, ...)."""
        self.engine = LLMEngine(model, EngineConfig(dtype=dtype, device=device, limits=limits, progress=progress,
                                                    **engine_options))
        self.model, self.config = self.engine.model, self.engine.model_config
        self.tokenizer, self.prompts = self.engine.tokenizer, self.engine.prompts
        self.eos_token_ids = self.engine.eos_token_ids

    def chat(self, messages: list, params: SamplingParams | None = None, thinking: bool = True,
             tools: list[dict] | None = None) -> RequestOutput | list[RequestOutput]:
        """One conversation gives one output; a list of conversations runs concurrently and gives a list."""
        batch = isinstance(messages, list) and bool(messages) and isinstance(messages[0], list)
        conversations = messages if batch else [messages]
        outputs = self.generate([self.prompts.build(c, thinking, tools) for c in conversations], params)
        return outputs if batch else outputs[0]

    def generate(self, prompts: Prompt | list[Prompt], params: SamplingParams | None = None
                 ) -> RequestOutput | list[RequestOutput]:
        params = params or SamplingParams()
        single = isinstance(prompts, Prompt)
        prompts = [prompts] if single else prompts
        for prompt in prompts:  # all or nothing: check every request before starting any
            self.engine.check(prompt, params)
        seqs = [self.engine.add_request(p, params) for p in prompts]
        bar = tqdm(total=len(seqs), desc="requests", disable=len(seqs) < 2 or not self.engine.config.progress)
        while self.engine.has_unfinished():
            bar.update(sum(u.finished for u in self.engine.step()))
        bar.close()
        outputs = [self.engine.output(seq) for seq in seqs]
        return outputs[0] if single else outputs
