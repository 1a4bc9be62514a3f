"""`glmv chat`: one question (`glmv chat -i photo.png "What is this?"`) or a conversation in the
terminal, streamed, with the thinking shown apart (dimmed on a terminal, marked in plain output).

In a conversation, lines starting with / are commands: /image PATH|URL, /video PATH|URL, /file PATH|URL
attach media to the next question; /thinking on|off; /clear starts over; /exit (or Ctrl-D) leaves.
"""
from __future__ import annotations

import sys

from .client import Delta, ModelError, Reply, connect, user_message

HELP = ("commands: /image PATH|URL, /video PATH|URL, /file PATH|URL (attach to the next question), "
        "/thinking on|off, /clear, /exit")


class Printer:
    """Writes streamed deltas: thinking dimmed (or after a 'Thinking:' mark), then the answer."""

    def __init__(self, out=sys.stdout):
        self.out, self.color = out, out.isatty()
        self.part = None

    def write(self, delta: Delta) -> None:
        for part, text in (("thinking", delta.reasoning), ("answer", delta.content)):
            if not text:
                continue
            if part != self.part:
                self._switch(part)
            self.out.write(text)
            self.out.flush()

    def _switch(self, part: str) -> None:
        if self.part == "thinking":
            self.out.write("\x1b[0m\n\n" if self.color else "\n\n")
        if part == "thinking":
            self.out.write("\x1b[2mThinking: " if self.color else "Thinking: ")
        self.part = part

    def end(self, reply: Reply) -> None:
        if self.part == "thinking":
            self.out.write("\x1b[0m" if self.color else "")
        self.out.write("\n")
        self.out.flush()
        self.part = None


def video_options(args) -> dict:
    return {"fps": args.fps, "max_frames": args.max_frames}


def answer(model, messages: list[dict], args, printer: Printer) -> Reply:
    reply = Reply()
    for piece in model.stream(messages, thinking=not args.no_thinking, max_tokens=args.max_tokens,
                              temperature=args.temperature):
        if isinstance(piece, Reply):
            reply = piece
        else:
            printer.write(piece)
    printer.end(reply)
    return reply


def main(args) -> int:
    try:
        model = connect(args.model, args.url, args.api_key, args.dtype, args.device)
    except (ModelError, ValueError, OSError) as exc:
        print(f"glmv chat: {exc}", file=sys.stderr)
        return 2
    printer = Printer()
    if args.prompt:
        try:
            answer(model, [user_message(args.prompt, args.image, args.video, args.file, video_options(args))], args,
                   printer)
        except (ModelError, ValueError) as exc:
            print(f"glmv chat: {exc}", file=sys.stderr)
            return 1
        return 0
    return converse(model, args, printer)


def converse(model, args, printer: Printer) -> int:
    history: list[dict] = []
    attached = {"image": list(args.image), "video": list(args.video), "file": list(args.file)}
    interactive = sys.stdin.isatty()
    if interactive:
        print(HELP)
    while True:
        try:
            line = input("> " if interactive else "").strip()
        except EOFError:
            return 0
        if not line:
            continue
        if line.startswith("/"):
            command, _, rest = line.partition(" ")
            if command == "/exit":
                return 0
            if command == "/clear":
                history.clear()
                print("(new conversation)")
            elif command in ("/image", "/video", "/file") and rest.strip():
                attached[command[1:]].append(rest.strip())
                print(f"(attached {rest.strip()})")
            elif command == "/thinking" and rest.strip() in ("on", "off"):
                args.no_thinking = rest.strip() == "off"
                print(f"(thinking {rest.strip()})")
            else:
                print(HELP)
            continue
        message = user_message(line, attached["image"], attached["video"], attached["file"], video_options(args))
        try:
            reply = answer(model, [*history, message], args, printer)
        except (ModelError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            continue
        history += [message, {"role": "assistant", "content": reply.content}]
        attached = {"image": [], "video": [], "file": []}
