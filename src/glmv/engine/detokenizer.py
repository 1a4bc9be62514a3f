"""Incremental detokenization for streaming, with stop strings.

Text is decoded from the tokens since the last complete character, so a character split across
tokens is emitted only once it is whole. Special tokens (<think>, box tokens) stay in the text.
While stop strings are set, the last (longest stop - 1) characters are held back, since they could
be the start of a stop string that the next token completes.
"""
from __future__ import annotations

from ..inputs.tokenizer import Tokenizer


class Detokenizer:
    def __init__(self, tokenizer: Tokenizer, stop: list[str]):
        self.tokenizer = tokenizer
        self.stop = stop
        self.hold = max(map(len, stop), default=1) - 1
        self.ids: list[int] = []
        self.text = ""
        self.prefix_offset = 0  # ids[prefix_offset:read_offset] decode to the tail of `text`
        self.read_offset = 0
        self.emitted = 0  # characters of `text` already handed out
        self.stopped = False

    def add(self, token_id: int) -> bool:
        """Append one generated token; True if the text now reaches a stop string (the text is cut before it)."""
        self.ids.append(token_id)
        return self._decode(final=False)

    def _decode(self, final: bool) -> bool:
        decode = self.tokenizer.decode
        before = decode(self.ids[self.prefix_offset:self.read_offset])
        after = decode(self.ids[self.prefix_offset:])
        if after.endswith("\ufffd") and not final:  # an unfinished multi-byte character: wait for more
            return False
        self.prefix_offset, self.read_offset = self.read_offset, len(self.ids)
        search_from = max(0, len(self.text) - self.hold)
        self.text += after[len(before):]
        hits = [i for i in (self.text.find(s, search_from) for s in self.stop) if i >= 0]
        if hits:
            self.text = self.text[:min(hits)]
            self.stopped = True
        return self.stopped

    def delta(self, finished: bool) -> str:
        """The text not handed out yet that is safe to hand out (all of it once finished)."""
        if finished and not self.stopped and self.read_offset < len(self.ids):
            self._decode(final=True)  # the answer ended inside a character: keep what decode gives
        end = len(self.text) if finished else max(self.emitted, len(self.text) - self.hold)
        out = self.text[self.emitted:end]
        self.emitted = end
        return out
