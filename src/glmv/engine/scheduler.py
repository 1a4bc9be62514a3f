"""Which sequences run in the next step, and how many of their tokens.

Each step has a token budget. Running sequences come first, decodes before prefill chunks, so
a long prompt never stalls the answers being streamed; then waiting sequences are admitted while
budget, sequence slots and KV blocks last, their prompt cut into chunks when it does not fit.
When the KV cache runs out, the most recently admitted sequence is preempted: its blocks are
freed and it waits to be recomputed (its full blocks usually come back from the prefix cache).
"""
from __future__ import annotations

from collections import deque

from .block_manager import BlockManager
from .sequence import Sequence, Status


class Scheduler:
    def __init__(self, block_manager: BlockManager, max_num_seqs: int, max_num_batched_tokens: int):
        self.blocks = block_manager
        self.max_num_seqs = max_num_seqs
        self.max_num_batched_tokens = max_num_batched_tokens
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []  # in admission order
        self.num_preemptions = 0

    def add(self, seq: Sequence) -> None:
        self.waiting.append(seq)

    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    def schedule(self) -> list[tuple[Sequence, int]]:
        budget = self.max_num_batched_tokens
        scheduled: dict[Sequence, int] = {}
        for seq in sorted(self.running, key=lambda s: s.num_uncomputed > 1):
            if seq.status is not Status.RUNNING or budget == 0:
                continue
            n = min(seq.num_uncomputed, budget)
            while not self.blocks.ensure(seq, seq.num_computed + n):
                victim = self.running[-1]
                budget += scheduled.pop(victim, 0)
                self.preempt(victim)
                if victim is seq:
                    break
            else:
                scheduled[seq] = n
                budget -= n
        while self.waiting and budget and len(self.running) < self.max_num_seqs:
            seq = self.waiting[0]
            if not seq.block_table:
                self.blocks.match_prefix(seq)
                if not seq.output_ids:  # first admission: what the prefix cache saved
                    seq.num_cached = seq.num_computed
            n = min(seq.num_uncomputed, budget)
            if not self.blocks.ensure(seq, seq.num_computed + n):
                self.blocks.release(seq)  # hold no cached blocks while waiting
                break
            self.waiting.popleft()
            seq.status = Status.RUNNING
            self.running.append(seq)
            scheduled[seq] = n
            budget -= n
        return list(scheduled.items())

    def preempt(self, seq: Sequence) -> None:
        self.running.remove(seq)
        self.blocks.release(seq)
        seq.status = Status.WAITING
        self.waiting.appendleft(seq)
        self.num_preemptions += 1

    def finish(self, seq: Sequence, reason: str) -> None:
        """End a sequence (done, cancelled or failed) and free its blocks at once."""
        if seq.status is Status.RUNNING:
            self.running.remove(seq)
        elif seq.status is Status.WAITING and seq in self.waiting:
            self.waiting.remove(seq)
        self.blocks.release(seq)
        seq.status = Status.FINISHED
        seq.finish_reason = reason
