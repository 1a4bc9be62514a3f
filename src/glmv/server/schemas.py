"""The wire format: request models (lenient as the Z.AI API is: null means absent, unknown fields
are ignored) and the response bodies (shared/research/zai-api-spec.md sections 3-5)."""
from __future__ import annotations

import json
import time
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..sampling_params import MAX_TOKENS_LIMIT, stop_strings

MAX_MESSAGES = 4096
MAX_TOOLS = 128


class Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")

    @model_validator(mode="before")
    @classmethod
    def _drop_nulls(cls, data: Any) -> Any:
        return {k: v for k, v in data.items() if v is not None} if isinstance(data, dict) else data


class MediaURL(Lenient):
    url: str
    detail: str | None = None  # OpenAI clients send it; GLM-V has no use for it


class TextPart(Lenient):
    type: Literal["text"]
    text: str


class ImagePart(Lenient):
    type: Literal["image_url"]
    image_url: MediaURL


class VideoURL(MediaURL):
    fps: float | None = None  # per-request sampling, within the server's limits
    max_frames: int | None = None


class VideoPart(Lenient):
    type: Literal["video_url"]
    video_url: VideoURL


class FilePart(Lenient):
    type: Literal["file_url"]
    file_url: MediaURL


Part = Annotated[Union[TextPart, ImagePart, VideoPart, FilePart], Field(discriminator="type")]


class FunctionCall(Lenient):
    name: str
    arguments: str | dict = "{}"


class ToolCallIn(Lenient):
    id: str | None = None
    type: str = "function"
    function: FunctionCall


class Message(Lenient):
    role: Literal["system", "user", "assistant", "tool"]
    content: str | list[Part] | None = None
    reasoning_content: str | None = None
    tool_calls: list[ToolCallIn] | None = None
    tool_call_id: str | None = None
    name: str | None = None


class FunctionDef(Lenient):
    name: str = Field(min_length=1, max_length=256)
    description: str | None = None
    parameters: dict | None = None


class Tool(Lenient):
    type: Literal["function"] = "function"
    function: FunctionDef


class Thinking(Lenient):
    type: Literal["enabled", "disabled"] = "enabled"
    clear_thinking: bool = True


class ChatRequest(Lenient):
    model: str = Field(min_length=1)
    messages: list[Message] = Field(min_length=1, max_length=MAX_MESSAGES)
    stream: bool = False
    thinking: Thinking | None = None
    chat_template_kwargs: dict | None = None  # OpenAI-style: {"enable_thinking": false}
    do_sample: bool = True
    temperature: float | None = Field(None, ge=0.0, le=1.0)
    top_p: float | None = Field(None, ge=0.0, le=1.0)
    max_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS_LIMIT)
    max_completion_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS_LIMIT)
    stop: str | list[str] | None = None
    request_id: str | int | float | None = None
    user_id: str | None = Field(None, min_length=6, max_length=128)
    tools: list[Tool] | None = Field(None, max_length=MAX_TOOLS)
    tool_choice: Literal["auto", "none"] | dict | None = None
    seed: int | None = None
    stream_options: dict | None = None

    @field_validator("stop")
    @classmethod
    def _stop(cls, value):
        return stop_strings(value)

    @property
    def thinking_enabled(self) -> bool:
        if self.thinking is not None:
            return self.thinking.type == "enabled"
        return bool((self.chat_template_kwargs or {}).get("enable_thinking", True))

    def template_messages(self) -> list[dict]:
        """Messages as the chat template takes them (tool-call arguments as objects)."""
        out = []
        for msg in self.messages:
            item = msg.model_dump(exclude_none=True, exclude={"tool_calls"})
            if msg.tool_calls:
                item["tool_calls"] = [{"id": c.id, "type": c.type, "function": {
                    "name": c.function.name, "arguments": _as_object(c.function.arguments)}} for c in msg.tool_calls]
            item.setdefault("content", "")
            out.append(item)
        return out


def _as_object(arguments: str | dict) -> dict:
    if isinstance(arguments, dict):
        return arguments
    try:
        value = json.loads(arguments or "{}")
    except ValueError:
        return {"arguments": arguments}
    return value if isinstance(value, dict) else {"arguments": value}


# -- responses ------------------------------------------------------------------------------------

def usage(prompt_tokens: int, completion_tokens: int, cached_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": cached_tokens}}


def message(content: str, reasoning: str | None, tool_calls: list[dict]) -> dict:
    out: dict = {"role": "assistant", "content": content}
    if reasoning is not None:
        out["reasoning_content"] = reasoning
    if tool_calls:
        out["tool_calls"] = tool_calls
    return out


def completion(task_id: str, request_id: str, model: str, created: int, message_: dict, finish_reason: str,
               usage_: dict) -> dict:
    return {"id": task_id, "request_id": request_id, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "finish_reason": finish_reason, "message": message_}], "usage": usage_}


def chunk(task_id: str, created: int, model: str, delta: dict, finish_reason: str | None = None,
          usage_: dict | None = None) -> dict:
    choice: dict = {"index": 0, "delta": delta}
    if finish_reason is not None:
        choice["finish_reason"] = finish_reason
    body = {"id": task_id, "object": "chat.completion.chunk", "created": created, "model": model, "choices": [choice]}
    if usage_ is not None:
        body["usage"] = usage_
    return body


def now() -> int:
    return int(time.time())
