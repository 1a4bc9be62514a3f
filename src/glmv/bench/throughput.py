"""`glmv bench`: glmv's engine against transformers `generate`, side by side, in one run.

Workload: N concurrent requests, each one image plus a text prompt, a fixed number of output
tokens (greedy, eos ignored). Three ways to serve it:
- glmv: all requests submitted at once to the engine (continuous batching);
- transformers one by one, as a plain user would loop over requests;
- transformers with all requests left-padded into one `generate` batch.
Plus batch-1 decode speed of both. Preprocessing (image decode, resize) is done once, before
timing, and shared by all runs. Per-token timestamps give time to first token (counted from when
all requests were submitted, so requests waiting in line count their wait) and inter-token latency.
"""
from __future__ import annotations

import json
import platform
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from ..engine.config import EngineConfig
from ..engine.llm_engine import LLMEngine
from ..inputs.prompt import Prompt
from ..sampling_params import SamplingParams
from .checkpoints import CORPUS, write_random_checkpoint

# Named model shapes. "small" runs anywhere; the others are the real GLM-4.1V-9B and GLM-4.5V
# shapes (random weights), meant for a GPU, optionally with fewer layers.
VISION_GLM = dict(depth=24, hidden_size=1536, num_heads=12, intermediate_size=13696, out_hidden_size=4096,
                  image_size=336, patch_size=14, spatial_merge_size=2, temporal_patch_size=2)
ROPE_GLM = dict(rope_type="default", rope_theta=10000.0, partial_rotary_factor=0.5, mrope_section=[8, 12, 12])
PRESETS = {
    "small": dict(arch="glm4v_moe", tokenizer_vocab=4096, text=dict(
        vocab_size=16384, hidden_size=512, intermediate_size=1536, num_hidden_layers=6, num_attention_heads=8,
        num_key_value_heads=2, head_dim=64, moe_intermediate_size=256, n_routed_experts=32, num_experts_per_tok=4,
        n_shared_experts=1, first_k_dense_replace=1, n_group=1, topk_group=1, norm_topk_prob=True,
        routed_scaling_factor=1.0, max_position_embeddings=8192, attention_bias=True,
        rope_parameters=dict(ROPE_GLM, mrope_section=[4, 6, 6])),
        vision=dict(depth=4, hidden_size=384, num_heads=6, intermediate_size=1024, out_hidden_size=512,
                    image_size=336, patch_size=14, spatial_merge_size=2, temporal_patch_size=2)),
    "glm-4.1v-9b": dict(arch="glm4v", tokenizer_vocab=4096, text=dict(
        vocab_size=151552, hidden_size=4096, intermediate_size=13696, num_hidden_layers=40, num_attention_heads=32,
        num_key_value_heads=2, attention_bias=True, max_position_embeddings=65536, rope_parameters=ROPE_GLM),
        vision=VISION_GLM),
    "glm-4.5v": dict(arch="glm4v_moe", tokenizer_vocab=4096, text=dict(
        vocab_size=151424, hidden_size=4096, intermediate_size=10944, num_hidden_layers=46, num_attention_heads=96,
        num_key_value_heads=8, head_dim=128, moe_intermediate_size=1408, n_routed_experts=128, num_experts_per_tok=8,
        n_shared_experts=1, first_k_dense_replace=1, n_group=1, topk_group=1, norm_topk_prob=True,
        routed_scaling_factor=1.0, attention_bias=True, max_position_embeddings=65536, rope_parameters=ROPE_GLM),
        vision=VISION_GLM),
}


@dataclass
class RunResult:
    name: str
    wall_s: float
    output_tokens: int
    ttft_s: list[float] = field(default_factory=list)  # per request, from submission
    itl_s: list[float] = field(default_factory=list)  # gaps between consecutive tokens of a request

    @property
    def tokens_per_s(self) -> float:
        return self.output_tokens / self.wall_s

    def summary(self) -> dict:
        pct = lambda xs, q: float(np.percentile(xs, q)) if xs else float("nan")
        return {"name": self.name, "wall_s": round(self.wall_s, 3), "output_tokens": self.output_tokens,
                "output_tokens_per_s": round(self.tokens_per_s, 2),
                "ttft_p50_ms": round(pct(self.ttft_s, 50) * 1e3, 1), "ttft_p99_ms": round(pct(self.ttft_s, 99) * 1e3, 1),
                "itl_p50_ms": round(pct(self.itl_s, 50) * 1e3, 2), "itl_p99_ms": round(pct(self.itl_s, 99) * 1e3, 2)}


def latencies(start: float, token_times: list[list[float]]) -> tuple[list[float], list[float]]:
    ttft = [times[0] - start for times in token_times]
    itl = [b - a for times in token_times for a, b in zip(times, times[1:])]
    return ttft, itl


def checkpoint_for(preset: str, cache_dir: Path, layers: int | None, dtype: torch.dtype) -> Path:
    spec = PRESETS[preset]
    text = dict(spec["text"])
    if layers:
        text["num_hidden_layers"] = layers
    path = cache_dir / f"{preset}-{text['num_hidden_layers']}l-{str(dtype).split('.')[-1]}"
    if not (path / "config.json").is_file():
        print(f"writing a random {preset} checkpoint to {path} ...")
        write_random_checkpoint(path, spec["arch"], text, spec["vision"], dtype=dtype,
                                tokenizer_vocab=spec["tokenizer_vocab"], max_image_tokens=1024, std=0.02)
    return path


def workload(engine: LLMEngine, requests: int, image_size: int, prompt_tokens: int, workdir: Path) -> list[Prompt]:
    """One distinct random image and a distinct prompt of about `prompt_tokens` text tokens per request."""
    words = " ".join(CORPUS).split()
    prompts = []
    for i in range(requests):
        rng = np.random.default_rng(i)
        path = workdir / f"image{i}.png"
        Image.fromarray(rng.integers(0, 256, (image_size, image_size, 3), dtype=np.uint8)).save(path)
        text = f"Request {i}: " + " ".join(words[(i + k) % len(words)] for k in range(prompt_tokens))
        ids = engine.tokenizer.encode(text)[:prompt_tokens]
        content = [{"type": "image_url", "image_url": {"url": str(path)}},
                   {"type": "text", "text": engine.tokenizer.decode(ids)}]
        prompts.append(engine.prompts.build([{"role": "user", "content": content}], thinking=False))
    return prompts


def run_glmv(engine: LLMEngine, prompts: list[Prompt], output_len: int, name: str) -> RunResult:
    params = SamplingParams(temperature=0, max_tokens=output_len, ignore_eos=True)
    times: dict[str, list[float]] = {}
    start = time.perf_counter()
    for p in prompts:
        times[engine.add_request(p, params).request_id] = []
    with tqdm(total=len(prompts) * output_len, desc=name, unit="tok", leave=False) as bar:
        while engine.has_unfinished():
            updates = engine.step()
            now = time.perf_counter()
            for u in updates:
                times[u.request_id].extend([now] * len(u.token_ids))
            bar.update(sum(len(u.token_ids) for u in updates))
    wall = time.perf_counter() - start
    ttft, itl = latencies(start, list(times.values()))
    return RunResult(name, wall, sum(map(len, times.values())), ttft, itl)


class _StepClock:
    """A logits processor that only notes when each generation step's logits are ready."""

    def __init__(self):
        self.times: list[float] = []

    def __call__(self, input_ids, scores):
        self.times.append(time.perf_counter())
        return scores


def run_transformers(model, engine: LLMEngine, batches: list[list[Prompt]], output_len: int, name: str) -> RunResult:
    from transformers import LogitsProcessorList

    from .reference import hf_inputs

    pad = engine.eos_token_ids[0]
    token_times, produced = [], 0
    start = time.perf_counter()
    for batch in tqdm(batches, desc=name, leave=False):
        inputs = hf_inputs(batch, engine.model_config, pad, model.device)
        clock = _StepClock()
        with torch.inference_mode():
            out = model.generate(**inputs, max_new_tokens=output_len, min_new_tokens=output_len, do_sample=False,
                                 logits_processor=LogitsProcessorList([clock]), pad_token_id=pad)
        produced += (out.shape[1] - inputs["input_ids"].shape[1]) * len(batch)
        token_times.extend([clock.times] * len(batch))
    wall = time.perf_counter() - start
    ttft, itl = latencies(start, token_times)
    return RunResult(name, wall, produced, ttft, itl)


def decode_rate(result: RunResult) -> float:
    """Tokens per second of one request after its first token."""
    return 1 / statistics.mean(result.itl_s)


def weight_bytes_per_token(model) -> int:
    """Bytes of weights one decode token reads: every text-model tensor, but only the chosen experts."""
    text_cfg, total = model.config.text, 0
    for name, p in model.named_parameters():
        if ".visual." in name:
            continue
        size = p.numel() * p.element_size()
        if ".experts." in name:
            size = size * text_cfg.num_experts_per_tok // text_cfg.n_routed_experts
        total += size
    return total


def benchmark(preset: str = "small", requests: int = 32, image_size: int = 448, prompt_tokens: int = 64,
              output_len: int = 128, dtype: str = "float32", device: str = "cpu", layers: int | None = None,
              out_dir: Path = Path("bench-results"), cache_dir: Path = Path.home() / ".cache" / "glmv" / "bench",
              skip_sequential: bool = False, peak_gbps: float | None = None) -> dict:
    from .reference import hf_model

    torch_dtype = getattr(torch, dtype)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = checkpoint_for(preset, cache_dir, layers, torch_dtype)
    engine = LLMEngine(path, EngineConfig(dtype=dtype, device=device, max_num_seqs=max(requests, 1),
                                          max_model_len=4096, enable_prefix_caching=False))
    prompts = workload(engine, requests, image_size, prompt_tokens, out_dir)
    ref = hf_model(path, torch_dtype, device)
    # Warm both up on one short request (lazy init, allocator), untimed.
    run_glmv(engine, prompts[:1], 4, "warm-up glmv")
    run_transformers(ref, engine, [prompts[:1]], 4, "warm-up transformers")

    results = {"glmv": run_glmv(engine, prompts, output_len, f"glmv engine ({requests} concurrent)"),
               "glmv_single": run_glmv(engine, prompts[:1], output_len, "glmv batch 1"),
               "hf_single": run_transformers(ref, engine, [prompts[:1]], output_len, "transformers batch 1")}
    if not skip_sequential:
        results["hf_sequential"] = run_transformers(ref, engine, [[p] for p in prompts], output_len,
                                                    "transformers one by one")
    results["hf_batched"] = run_transformers(ref, engine, [prompts], output_len, "transformers padded batch")

    glmv_tps = results["glmv"].tokens_per_s
    bytes_per_token = weight_bytes_per_token(engine.model)
    single = decode_rate(results["glmv_single"])
    report = {
        "preset": preset, "layers": engine.model_config.text.num_hidden_layers, "dtype": dtype, "device": device,
        "device_name": torch.cuda.get_device_name() if device.startswith("cuda") else platform.processor() or "cpu",
        "torch_threads": torch.get_num_threads(),
        "parameters": sum(p.numel() for p in engine.model.parameters()),
        "workload": {"requests": requests, "image": f"{image_size}x{image_size}", "prompt_text_tokens": prompt_tokens,
                     "prompt_tokens": len(prompts[0].token_ids), "output_tokens": output_len, "greedy": True},
        "runs": {k: v.summary() for k, v in results.items()},
        "ratios": {
            "glmv_vs_hf_sequential_tok_s": round(glmv_tps / results["hf_sequential"].tokens_per_s, 2)
            if "hf_sequential" in results else None,
            "glmv_vs_hf_batched_tok_s": round(glmv_tps / results["hf_batched"].tokens_per_s, 2),
            "batch1_decode_glmv_vs_hf": round(single / decode_rate(results["hf_single"]), 2),
        },
        "batch1_decode": {"glmv_tok_s": round(single, 2), "hf_tok_s": round(decode_rate(results["hf_single"]), 2),
                          "weight_bytes_per_token": bytes_per_token,
                          "achieved_gb_s": round(bytes_per_token * single / 1e9, 2)},
    }
    if peak_gbps:
        report["batch1_decode"]["fraction_of_roofline"] = round(bytes_per_token * single / 1e9 / peak_gbps, 3)
    (out_dir / "bench.json").write_text(json.dumps(report, indent=2))
    (out_dir / "bench.md").write_text(markdown(report))
    return report


def markdown(report: dict) -> str:
    w = report["workload"]
    lines = [f"# glmv bench: {report['preset']} ({report['parameters'] / 1e6:.1f}M parameters, {report['layers']} layers, "
             f"{report['dtype']}, {report['device']}: {report['device_name']}, {report['torch_threads']} threads)", "",
             f"Workload: {w['requests']} requests, each one {w['image']} image + {w['prompt_text_tokens']} text tokens "
             f"({w['prompt_tokens']} prompt tokens), {w['output_tokens']} output tokens, greedy.", "",
             "| run | output tok/s | wall s | TTFT p50 / p99 ms | ITL p50 / p99 ms |", "|---|---|---|---|---|"]
    for run in report["runs"].values():
        lines.append(f"| {run['name']} | {run['output_tokens_per_s']} | {run['wall_s']} | {run['ttft_p50_ms']} / "
                     f"{run['ttft_p99_ms']} | {run['itl_p50_ms']} / {run['itl_p99_ms']} |")
    r, d = report["ratios"], report["batch1_decode"]
    lines.append("")
    if r["glmv_vs_hf_sequential_tok_s"] is not None:  # None with --skip-sequential
        lines.append(f"- glmv / transformers one by one: **{r['glmv_vs_hf_sequential_tok_s']}x** output tok/s")
    lines += [f"- glmv / transformers padded batch: **{r['glmv_vs_hf_batched_tok_s']}x** output tok/s",
              f"- batch-1 decode: glmv {d['glmv_tok_s']} tok/s, transformers {d['hf_tok_s']} tok/s "
              f"(**{r['batch1_decode_glmv_vs_hf']}x**); {d['weight_bytes_per_token'] / 1e6:.1f} MB of weights per token "
              f"-> {d['achieved_gb_s']} GB/s" + (f", {d['fraction_of_roofline']:.0%} of the roofline"
                                                 if "fraction_of_roofline" in d else ""), ""]
    return "\n".join(lines)
