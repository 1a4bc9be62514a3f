"""Split a GLM-V answer into its thinking and its content at <think>...</think>, whole or streamed."""
from __future__ import annotations

THINK_START, THINK_END = "<think>", "</think>"


def split_reasoning(text: str) -> tuple[str | None, str]:
    """-> (reasoning_content or None, content). Text before <think> is dropped; an unfinished
    <think> (cut by max_tokens) is all reasoning."""
    start = text.find(THINK_START)
    end = text.find(THINK_END)
    if start < 0 and end < 0:
        return None, text.strip()
    begin = start + len(THINK_START) if 0 <= start and (end < 0 or start < end) else 0
    if end < 0:
        return text[begin:].strip(), ""
    return text[begin:end].strip(), text[end + len(THINK_END):].strip()


def partial_tag(text: str, tag: str) -> int:
    """Length of the longest end of `text` that could be the start of `tag` (to hold back while streaming)."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-n:]):
            return n
    return 0


class ReasoningStream:
    """The streamed form of split_reasoning: feed text deltas, get (reasoning, content) deltas whose
    concatenations equal split_reasoning's parts (leading whitespace of each part dropped)."""

    def __init__(self, thinking: bool = False):
        self.state = "thinking" if thinking else "start"  # start -> thinking -> answer, or start -> answer
        self.pending = ""
        self.started = {"thinking": False, "answer": False}

    def feed(self, text: str, final: bool = False) -> tuple[str, str]:
        self.pending += text
        reasoning, content = [], []
        while True:
            if self.state == "start":
                stripped = self.pending.lstrip()
                if stripped.startswith(THINK_START):
                    self.pending, self.state = stripped[len(THINK_START):], "thinking"
                    continue
                if not final and (not stripped or THINK_START.startswith(stripped)):
                    break
                self.state = "answer"
                continue
            if self.state == "thinking":
                at = self.pending.find(THINK_END)
                if at >= 0:
                    reasoning.append(self._emit("thinking", self.pending[:at]))
                    self.pending, self.state = self.pending[at + len(THINK_END):], "answer"
                    continue
                keep = 0 if final else partial_tag(self.pending, THINK_END)
                reasoning.append(self._emit("thinking", self.pending[:len(self.pending) - keep]))
                self.pending = self.pending[len(self.pending) - keep:]
                break
            content.append(self._emit("answer", self.pending))
            self.pending = ""
            break
        return "".join(reasoning), "".join(content)

    def _emit(self, part: str, text: str) -> str:
        if not self.started[part]:
            text = text.lstrip()
            self.started[part] = bool(text)
        return text
