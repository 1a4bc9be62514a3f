"""Split a GLM-V answer into its thinking and its content at <think>...</think>."""
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
