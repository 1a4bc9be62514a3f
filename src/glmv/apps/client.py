"""One way for glmv's tools to ask a model: the local engine, or any server that speaks the Z.AI
API (`glmv serve`, or the hosted one), with the same messages and the same reply.

Local files in the messages are sent to a server as data: URLs, since a server never reads the
client's disk.
"""
from __future__ import annotations

import base64
import io
import json
import mimetypes
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from ..outputs.reasoning import ReasoningStream


@dataclass
class Reply:
    reasoning: str = ""
    content: str = ""
    usage: dict = field(default_factory=dict)


@dataclass
class Delta:
    """A piece of a streamed reply: reasoning or answer text."""
    reasoning: str = ""
    content: str = ""


class ModelError(RuntimeError):
    pass


def image_part(source: str) -> dict:
    return {"type": "image_url", "image_url": {"url": source}}


def user_message(text: str, images: list[str] = (), videos: list[str] = (), files: list[str] = (),
                 video_options: dict | None = None) -> dict:
    """video_options: per-request sampling, {"fps": 1, "max_frames": 32} (None values left out)."""
    options = {k: v for k, v in (video_options or {}).items() if v is not None}
    parts = [image_part(s) for s in images]
    parts += [{"type": "video_url", "video_url": {"url": s, **options}} for s in videos]
    parts += [{"type": "file_url", "file_url": {"url": s}} for s in files]
    return {"role": "user", "content": [*parts, {"type": "text", "text": text}] if parts else text}


class Model:
    """What the tools need of a model: stream() yields Deltas then the whole Reply; ask() waits for it."""

    def stream(self, messages: list[dict], thinking: bool = True, max_tokens: int = 1024,
               temperature: float = 0.0) -> Iterator[Delta | Reply]:
        raise NotImplementedError

    def ask(self, messages: list[dict], thinking: bool = True, max_tokens: int = 1024,
            temperature: float = 0.0) -> Reply:
        return [r for r in self.stream(messages, thinking, max_tokens, temperature) if isinstance(r, Reply)][0]


class LocalModel(Model):
    """The engine in this process (loads the checkpoint once)."""

    def __init__(self, path: str | Path, dtype: str = "bfloat16", device: str = "cpu"):
        from ..llm import LLM

        self.llm = LLM(path, dtype=dtype, device=device, progress=False)

    def stream(self, messages: list[dict], thinking: bool = True, max_tokens: int = 1024,
               temperature: float = 0.0) -> Iterator[Delta | Reply]:
        """Deltas as they are decoded, then the whole Reply."""
        from ..sampling_params import SamplingParams

        engine, params = self.llm.engine, SamplingParams(temperature=temperature, max_tokens=max_tokens)
        prompt = self.llm.prompts.build(messages, thinking)
        engine.check(prompt, params)
        seq = engine.add_request(prompt, params)
        splitter = ReasoningStream(thinking=engine.opens_thinking(prompt.token_ids))
        while engine.has_unfinished():
            for update in engine.step():
                if update.request_id == seq.request_id:
                    reasoning, content = splitter.feed(update.text, final=update.finished)
                    if reasoning or content:
                        yield Delta(reasoning, content)
        out = engine.output(seq)
        yield Reply(out.reasoning_content or "", out.content,
                    {"prompt_tokens": len(prompt.token_ids), "completion_tokens": len(out.token_ids)})


class RemoteModel(Model):
    """A Z.AI-compatible server: POST {url}/chat/completions, streamed over server-sent events."""

    def __init__(self, url: str, api_key: str | None = None, model: str = "glm-4.5v", timeout: float = 600):
        self.url, self.api_key, self.model, self.timeout = url.rstrip("/"), api_key, model, timeout

    def stream(self, messages: list[dict], thinking: bool = True, max_tokens: int = 1024,
               temperature: float = 0.0) -> Iterator[Delta | Reply]:
        body = {"model": self.model, "messages": [_inline_files(m) for m in messages], "stream": True,
                "max_tokens": max_tokens, "temperature": temperature,
                "thinking": {"type": "enabled" if thinking else "disabled"}}
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(f"{self.url}/chat/completions", json.dumps(body).encode(), headers)
        reply = Reply()
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                for raw in response:
                    line = raw.decode().strip()
                    if not line.startswith("data:") or line == "data: [DONE]":
                        continue
                    event = json.loads(line[5:])
                    if "error" in event:
                        raise ModelError(f"server error {event['error'].get('code')}: {event['error'].get('message')}")
                    choice = (event.get("choices") or [{}])[0]
                    delta = choice.get("delta") or {}
                    piece = Delta(delta.get("reasoning_content") or "", delta.get("content") or "")
                    reply.reasoning += piece.reasoning
                    reply.content += piece.content
                    reply.usage = event.get("usage") or choice.get("usage") or reply.usage
                    if piece.reasoning or piece.content:
                        yield piece
        except urllib.error.HTTPError as exc:
            raise ModelError(_error_text(exc)) from None
        except urllib.error.URLError as exc:
            raise ModelError(f"cannot reach {self.url}: {exc.reason}") from None
        yield reply


def _error_text(exc: urllib.error.HTTPError) -> str:
    try:
        error = json.loads(exc.read())["error"]
        return f"server answered {exc.code} (code {error.get('code')}): {error.get('message')}"
    except (ValueError, KeyError, TypeError):
        return f"server answered {exc.code} {exc.reason}"


def _inline_files(message: dict) -> dict:
    """Local paths and PIL images in media parts become data: URLs."""
    content = message.get("content")
    if not isinstance(content, list):
        return message
    parts = []
    for part in content:
        kind = part.get("type")
        ref = part.get(kind) if kind in ("image_url", "video_url", "file_url") else None
        url = ref.get("url") if isinstance(ref, dict) else None
        if isinstance(url, Image.Image):
            buffer = io.BytesIO()
            url.save(buffer, format="PNG")
            part = {**part, kind: {**ref, "url": "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()}}
        elif isinstance(url, str) and "://" not in url and not url.startswith("data:") and Path(url).is_file():
            mime = mimetypes.guess_type(url)[0] or "application/octet-stream"
            data = base64.b64encode(Path(url).read_bytes()).decode()
            part = {**part, kind: {**ref, "url": f"data:{mime};base64,{data}"}}
        parts.append(part)
    return {**message, "content": parts}


def connect(model: str | None = None, url: str | None = None, api_key: str | None = None, dtype: str = "bfloat16",
            device: str = "cpu", remote_model: str = "glm-4.5v") -> LocalModel | RemoteModel:
    """--url picks a server; otherwise --model (default: the bundled model) runs in this process."""
    if url:
        return RemoteModel(url, api_key, remote_model)
    from ..model.loader import model_or_bundled

    return LocalModel(model_or_bundled(model), dtype, device)
