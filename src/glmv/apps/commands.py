"""The command lines of glmv's tools for the model's uses."""
from __future__ import annotations

import argparse


def model_options(parser: argparse.ArgumentParser) -> None:
    """Where the model runs: in this process (--model, default the bundled one) or behind a server (--url)."""
    where = parser.add_argument_group("model")
    where.add_argument("--model", help="checkpoint folder to run here (default: glmv-small, the model glmv ships)")
    where.add_argument("--url", help="a Z.AI-compatible server instead, e.g. http://127.0.0.1:8000/api/paas/v4 "
                                     "or https://open.bigmodel.cn/api/paas/v4")
    where.add_argument("--api-key", help="API key for --url")
    where.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16", "float16"],
                       help="weight dtype of a local model")
    where.add_argument("--device", default="cpu", help="cpu or cuda, for a local model")
    where.add_argument("--no-thinking", action="store_true", help="answer directly, without the <think> step")
    where.add_argument("--max-tokens", type=int, default=1024, help="most tokens to generate")


def add_commands(commands) -> None:
    from . import agent, chat, doc, ground, render

    p = commands.add_parser(
        "chat", help="chat with the model in the terminal, or ask one question",
        description="With a question: answer it (with the attached images, video or files) and exit. Without: a "
                    "conversation, streamed, thinking shown apart from the answer; type /image PATH, /video PATH or "
                    "/file PATH to attach media to the next question, /thinking on|off, /clear, /exit. Runs the "
                    "model here, or talks to a Z.AI-compatible server with --url.")
    p.add_argument("prompt", nargs="?", help="a question to answer at once (none: a conversation)")
    p.add_argument("-i", "--image", action="append", default=[], help="image path or URL (repeatable)")
    p.add_argument("--video", action="append", default=[], help="video path or URL")
    p.add_argument("--file", action="append", default=[], help="document path or URL (PDF, text, office)")
    p.add_argument("--fps", type=float, default=None, help="video frames sampled per second (default: the model's)")
    p.add_argument("--max-frames", type=int, default=None, help="at most this many video frames")
    p.add_argument("--temperature", type=float, default=0.0, help="0 for greedy decoding")
    model_options(p)
    p.set_defaults(func=chat.main)

    p = commands.add_parser(
        "ground", help="find things in an image: boxes in pixels, drawn on the image",
        description="Ask the model where something is, parse every [x1,y1,x2,y2] box of its answer, convert the "
                    "boxes from GLM-V's 0-1000 coordinates to pixels of the original image, and print them "
                    "(or --json); -o draws them with labels. Exit status 3 when the answer holds no box.")
    p.add_argument("image", help="image path or URL")
    p.add_argument("query", help='what to find, e.g. "the red car" or "every star"')
    p.add_argument("-o", "--output", help="write the image with the boxes drawn to this file")
    p.add_argument("--json", action="store_true", help="print the boxes as JSON")
    model_options(p)
    p.set_defaults(func=ground.main)

    p = commands.add_parser(
        "doc", help="ask about a long PDF: page ranges, a token budget, map-reduce past the context",
        description="Render the PDF's pages (or --pages) at the resolution that fits --token-budget image tokens "
                    "per request of --chunk-pages pages, and ask the question. Documents longer than one chunk are "
                    "read map-reduce: each chunk answers on its own (progress bar), then one request combines the "
                    "partial answers.")
    p.add_argument("file", help="PDF path")
    p.add_argument("question", help="what to ask about the document")
    p.add_argument("--pages", help="page range, e.g. 1-20 or 3,5,9-12 (default: all)")
    p.add_argument("--token-budget", type=int, default=16384, help="image tokens per request, shared by its pages")
    p.add_argument("--chunk-pages", type=int, default=8, help="pages per request")
    p.add_argument("--page-tokens", type=int, default=None, help="image tokens per page (overrides the budget)")
    p.add_argument("--show-parts", action="store_true", help="also print each chunk's partial answer")
    model_options(p)
    p.set_defaults(func=doc.main)

    p = commands.add_parser(
        "render", help="render the HTML of a web-page-coding answer to a screenshot",
        description="Take the HTML out of a model's answer (its ```html block, or raw HTML) and render it with "
                    "headless Chromium (Playwright; Chromium from $GLMV_CHROMIUM or the system), offline: the "
                    "page may not fetch anything. Compare the result with the screenshot the model worked from.")
    p.add_argument("answer", help="file holding the answer (Markdown or HTML), or - for standard input")
    p.add_argument("-o", "--output", default="page.png", help="PNG to write")
    p.add_argument("--width", type=int, default=1280, help="viewport width in pixels")
    p.add_argument("--height", type=int, default=800, help="viewport height in pixels")
    p.add_argument("--viewport-only", action="store_true", help="capture the viewport, not the whole page")
    p.set_defaults(func=render.main)

    p = commands.add_parser(
        "agent", help="a GUI agent that browses a web page in headless Chromium",
        description="Loop: number the page's interactive elements, screenshot, ask the model (GLM-4.5V's web agent "
                    "format: Thought / Action / Memory_Updated, actions such as Click [3] or Type [5]; text), carry "
                    "out the action. Stops at an ANSWER or after --max-steps. Every step is logged to "
                    "--log-dir/steps.jsonl with its screenshot. Exit status 3 when no answer came.")
    p.add_argument("start_url", metavar="URL", help="page to start from")
    p.add_argument("task", help="what to do, in words")
    p.add_argument("--mode", choices=["web", "mobile", "pc"], default="web",
                   help="web runs here; mobile and pc formats are available as a library")
    p.add_argument("--max-steps", type=int, default=10, help="stop after this many steps")
    p.add_argument("--dry-run", action="store_true", help="ask the model and print its actions, but never act")
    p.add_argument("--log-dir", default="agent-log", help="folder for steps.jsonl and the screenshots")
    p.add_argument("--script", help="replay answers from this file (separated by lines of ---) instead of a model")
    model_options(p)
    p.set_defaults(func=agent.main)
