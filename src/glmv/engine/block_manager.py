"""Paged KV-cache bookkeeping: fixed-size blocks, reference counts, and prefix caching.

A full block is keyed by a hash chained from the block before it, over its token ids and the
content hashes of the media whose placeholders it holds: two prompts share a block only if
everything up to and including it is the same, images included. Freed blocks keep their key
and stay findable until they are reused (least recently freed first).
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass

from .sequence import Sequence


@dataclass
class Block:
    id: int
    ref_count: int = 0
    key: bytes | None = None  # prefix hash, once the block is full and computed
    token_ids: tuple[int, ...] = ()  # guards against hash collisions


def block_key(parent: bytes | None, token_ids: list[int], media_hashes: list[str]) -> bytes:
    h = hashlib.sha256(parent or b"")
    h.update(",".join(map(str, token_ids)).encode())
    for media in media_hashes:
        h.update(media.encode())
    return h.digest()


class BlockManager:
    def __init__(self, num_blocks: int, block_size: int, prefix_caching: bool = True):
        self.block_size = block_size
        self.prefix_caching = prefix_caching
        self.blocks = [Block(i) for i in range(num_blocks)]
        self.free: OrderedDict[int, None] = OrderedDict.fromkeys(range(num_blocks))  # oldest first
        self.by_key: dict[bytes, int] = {}
        self.fresh: list[int] = []  # blocks handed out for new content since the runner last cleared them

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    @property
    def num_free(self) -> int:
        return len(self.free)

    @property
    def num_used(self) -> int:
        return self.num_blocks - self.num_free

    def blocks_for(self, num_tokens: int) -> int:
        return -(-num_tokens // self.block_size)

    def _keys(self, seq: Sequence, num_blocks: int) -> list[bytes]:
        """Prefix keys of (at least) the first `num_blocks` full blocks of `seq`, memoised on the sequence."""
        keys, bs = seq.block_keys, self.block_size
        if len(keys) < num_blocks:
            ids = seq.token_ids
            for i in range(len(keys), num_blocks):
                start, end = i * bs, (i + 1) * bs
                keys.append(block_key(keys[-1] if keys else None, ids[start:end],
                                      [m.hash for m in seq.media_in(start, end)]))
        return keys

    def match_prefix(self, seq: Sequence) -> None:
        """Point a new sequence at the cached blocks of its longest cached prefix. The last token is
        always left to compute, since its logits are needed."""
        assert not seq.block_table
        if not self.prefix_caching:
            return
        ids, bs = seq.token_ids, self.block_size
        num_blocks = (len(seq) - 1) // bs
        keys = self._keys(seq, num_blocks)
        for i in range(num_blocks):
            block_id = self.by_key.get(keys[i])
            if block_id is None or self.blocks[block_id].token_ids != tuple(ids[i * bs:(i + 1) * bs]):
                break
            seq.block_table.append(self._take(block_id, keep_key=True))
        seq.num_computed = len(seq.block_table) * bs

    def ensure(self, seq: Sequence, num_tokens: int) -> bool:
        """Give `seq` blocks for `num_tokens` tokens in all; False (and nothing taken) if too few are free."""
        needed = self.blocks_for(num_tokens) - len(seq.block_table)
        if needed > self.num_free:
            return False
        for _ in range(needed):
            seq.block_table.append(self._take(next(iter(self.free)), keep_key=False))
            self.fresh.append(seq.block_table[-1])
        return True

    def release(self, seq: Sequence) -> None:
        """Return the sequence's blocks; those that hold a cached prefix stay findable."""
        for block_id in reversed(seq.block_table):  # the tail is evicted before the head it depends on
            block = self.blocks[block_id]
            block.ref_count -= 1
            if block.ref_count == 0:
                self.free[block_id] = None
        seq.block_table = []
        seq.num_computed = 0

    def cache_full_blocks(self, seq: Sequence, computed_before: int) -> None:
        """Key the blocks that the last step filled (it computed tokens computed_before..num_computed),
        so that later requests can reuse them."""
        bs = self.block_size
        first, end = computed_before // bs, seq.num_computed // bs
        if not self.prefix_caching or first == end:
            return
        keys, ids = self._keys(seq, end), seq.token_ids
        for i in range(first, end):
            block = self.blocks[seq.block_table[i]]
            if block.key is None and keys[i] not in self.by_key:
                block.key, block.token_ids = keys[i], tuple(ids[i * bs:(i + 1) * bs])
                self.by_key[keys[i]] = block.id

    def _take(self, block_id: int, keep_key: bool) -> int:
        block = self.blocks[block_id]
        if block.ref_count == 0:
            del self.free[block_id]
            if not keep_key and block.key is not None:  # evicted: it will hold new content
                del self.by_key[block.key]
                block.key, block.token_ids = None, ()
        block.ref_count += 1
        return block_id
