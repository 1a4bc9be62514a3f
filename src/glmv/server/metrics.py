"""Prometheus metrics for GET /metrics: requests, tokens, latencies, queue depth and KV-cache use."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ..engine.llm_engine import LLMEngine

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class Metrics:
    def __init__(self, engine: LLMEngine):
        self.registry = r = CollectorRegistry()
        self.requests = Counter("glmv_requests", "Chat requests by endpoint and HTTP status", ["endpoint", "status"],
                                registry=r)
        self.prompt_tokens = Counter("glmv_prompt_tokens", "Prompt tokens of finished requests", registry=r)
        self.cached_tokens = Counter("glmv_cached_prompt_tokens", "Prompt tokens served from the prefix cache",
                                     registry=r)
        self.completion_tokens = Counter("glmv_completion_tokens", "Generated tokens", registry=r)
        self.latency = Histogram("glmv_request_latency_seconds", "Time from request to last token",
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.ttft = Histogram("glmv_time_to_first_token_seconds", "Time from request to first token",
                              buckets=LATENCY_BUCKETS, registry=r)
        scheduler, blocks = engine.scheduler, engine.block_manager
        Gauge("glmv_requests_running", "Sequences in the running batch", registry=r).set_function(
            lambda: len(scheduler.running))
        Gauge("glmv_requests_waiting", "Sequences queued for admission (queue depth)", registry=r).set_function(
            lambda: len(scheduler.waiting))
        Gauge("glmv_kv_cache_blocks", "KV-cache blocks in total", registry=r).set_function(lambda: blocks.num_blocks)
        Gauge("glmv_kv_cache_blocks_used", "KV-cache blocks held by sequences", registry=r).set_function(
            lambda: blocks.num_used)
        Gauge("glmv_kv_cache_usage", "Fraction of KV-cache blocks in use", registry=r).set_function(
            lambda: blocks.num_used / blocks.num_blocks)
        Gauge("glmv_preemptions", "Sequences preempted so far", registry=r).set_function(
            lambda: scheduler.num_preemptions)

    def finished(self, endpoint: str, status: int, prompt: int = 0, completion: int = 0, cached: int = 0) -> None:
        self.requests.labels(endpoint, str(status)).inc()
        self.prompt_tokens.inc(prompt)
        self.completion_tokens.inc(completion)
        self.cached_tokens.inc(cached)
