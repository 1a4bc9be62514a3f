"""GLM tool calls in the model's output, as API `tool_calls`.

The model writes
    <tool_call>NAME
    <arg_key>KEY</arg_key>
    <arg_value>VALUE</arg_value>
    ...
    </tool_call>
Values of parameters that the tool's JSON schema does not type as strings are JSON-decoded when
they parse; the arguments go out as a JSON string, as the Z.AI and OpenAI APIs send them.
"""
from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass

from .reasoning import partial_tag

TOOL_CALL_START, TOOL_CALL_END = "<tool_call>", "</tool_call>"
_CALL = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.S)
_ARG = re.compile(r"<arg_key>\s*(.*?)\s*</arg_key>\s*<arg_value>(.*?)</arg_value>", re.S)


@dataclass
class ToolCall:
    name: str
    arguments: str  # a JSON object, as a string
    id: str = ""

    def __post_init__(self):
        self.id = self.id or f"call_{secrets.token_hex(12)}"

    def to_dict(self, index: int) -> dict:
        return {"id": self.id, "index": index, "type": "function",
                "function": {"name": self.name, "arguments": self.arguments}}


def _string_params(tools: list[dict] | None, name: str) -> set[str]:
    for tool in tools or []:
        fn = tool.get("function", tool) if isinstance(tool, dict) else {}
        if fn.get("name") == name:
            props = (fn.get("parameters") or {}).get("properties") or {}
            return {key for key, schema in props.items() if isinstance(schema, dict) and schema.get("type") == "string"}
    return set()


def _value(raw: str, keep_string: bool):
    if keep_string:
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def parse_tool_calls(text: str, tools: list[dict] | None = None) -> tuple[str, list[ToolCall]]:
    """-> (content before the first call, the calls). Text without <tool_call> comes back unchanged."""
    at = text.find(TOOL_CALL_START)
    if at < 0:
        return text, []
    calls = []
    for match in _CALL.finditer(text, at):
        body = match.group(1)
        name = body.split("<arg_key>", 1)[0].strip()
        if not name:
            continue
        strings = _string_params(tools, name)
        args = {key: _value(value.strip("\n"), key in strings) for key, value in _ARG.findall(body)}
        calls.append(ToolCall(name, json.dumps(args, ensure_ascii=False)))
    return text[:at].rstrip(), calls


class ToolCallStream:
    """Streams content until a <tool_call> starts, then holds the rest for parse_tool_calls at the end."""

    def __init__(self, tools: list[dict] | None):
        self.tools = tools
        self.held = ""
        self.in_calls = False

    def feed(self, content: str) -> str:
        if not self.tools:
            return content
        self.held += content
        if self.in_calls:
            return ""
        at = self.held.find(TOOL_CALL_START)
        if at >= 0:
            self.in_calls = True
            out, self.held = self.held[:at], self.held[at:]
            return out
        keep = partial_tag(self.held, TOOL_CALL_START)
        out, self.held = self.held[:len(self.held) - keep], self.held[len(self.held) - keep:]
        return out

    def finish(self) -> tuple[str, list[ToolCall]]:
        """-> (content still held, the tool calls)."""
        if not self.in_calls:
            rest, self.held = self.held, ""
            return rest, []
        _, calls = parse_tool_calls(self.held, self.tools)
        self.held = ""
        return "", calls
