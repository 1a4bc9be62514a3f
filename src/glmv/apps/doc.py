"""`glmv doc FILE.pdf "question"`: long documents.

Pages (optionally a range) are rendered at the resolution that fits an image-token budget per
request. A document that fits one request is asked at once; a longer one goes map-reduce: each
chunk of pages is asked on its own ("map", with a progress bar), then the partial answers are
combined into one ("reduce"), so a document longer than the context still gets one answer.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from ..inputs.documents import PDFIUM_LOCK, open_pdf, render_page
from ..inputs.media import MediaError
from .client import ModelError, connect, image_part

MAP_PROMPT = ("These are pages {first} to {last} of a document. {question}\n"
              "Answer only from these pages; if they do not say, answer \"not in these pages\".")
REDUCE_PROMPT = ("A document was read in parts; here is what each part says about the question.\n\n{notes}\n\n"
                 "Question: {question}\nCombine these into one answer, ignoring parts that did not say.")


@dataclass
class DocAnswer:
    answer: str
    reasoning: str
    pages: list[int]  # 1-based page numbers read
    chunks: list[tuple[int, int, str]] = field(default_factory=list)  # map mode: (first, last, partial answer)


def page_range(spec: str | None, count: int) -> list[int]:
    """'3-7,10' -> [3, 4, 5, 6, 7, 10] (1-based, within the document); None -> every page."""
    if not spec:
        return list(range(1, count + 1))
    pages: list[int] = []
    for piece in spec.split(","):
        first, _, last = piece.strip().partition("-")
        try:
            lo, hi = int(first), int(last or first)
        except ValueError:
            raise ValueError(f"bad page range {spec!r}: use e.g. 1-5,8") from None
        if not 1 <= lo <= hi <= count:
            raise ValueError(f"pages {piece.strip()} are outside the document's 1-{count}")
        pages += [p for p in range(lo, hi + 1) if p not in pages]
    return pages


def render_pages(path: str | Path, pages: str | None, tokens_per_page: int, factor: int = 28) -> tuple[list, list[int]]:
    """The chosen pages as images of about tokens_per_page merged image tokens each."""
    data = Path(path).read_bytes()
    with PDFIUM_LOCK:
        pdf = open_pdf(data)
        try:
            numbers = page_range(pages, len(pdf))
            return [render_page(pdf[n - 1], tokens_per_page * factor * factor) for n in numbers], numbers
        finally:
            pdf.close()


def ask_document(model, path: str | Path, question: str, pages: str | None = None, token_budget: int = 16384,
                 chunk_pages: int = 8, tokens_per_page: int | None = None, thinking: bool = False,
                 max_tokens: int = 1024, progress: bool = True) -> DocAnswer:
    """chunk_pages pages share token_budget image tokens per request (unless tokens_per_page is set)."""
    if chunk_pages < 1 or token_budget < 64 or (tokens_per_page is not None and tokens_per_page < 16):
        raise ValueError("--chunk-pages must be at least 1, --token-budget at least 64, --page-tokens at least 16")
    per_page = tokens_per_page or max(64, token_budget // chunk_pages)
    images, numbers = render_pages(path, pages, per_page)

    def ask(text: str, chunk: list) -> tuple[str, str]:
        content = [image_part(image) for image in chunk] + [{"type": "text", "text": text}]
        reply = model.ask([{"role": "user", "content": content}], thinking=thinking, max_tokens=max_tokens)
        return reply.content, reply.reasoning

    if len(images) <= chunk_pages:
        answer, reasoning = ask(question, images)
        return DocAnswer(answer, reasoning, numbers)
    chunks = []
    starts = range(0, len(images), chunk_pages)
    for start in tqdm(starts, desc="reading", unit="chunk", disable=not progress):
        part = numbers[start:start + chunk_pages]
        partial, _ = ask(MAP_PROMPT.format(first=part[0], last=part[-1], question=question),
                         images[start:start + chunk_pages])
        chunks.append((part[0], part[-1], partial))
    notes = "\n\n".join(f"Pages {a}-{b}: {text}" for a, b, text in chunks)
    answer, reasoning = ask(REDUCE_PROMPT.format(notes=notes, question=question), [])
    return DocAnswer(answer, reasoning, numbers, chunks)


def main(args) -> int:
    try:
        model = connect(args.model, args.url, args.api_key, args.dtype, args.device)
        result = ask_document(model, args.file, args.question, args.pages, args.token_budget, args.chunk_pages,
                              args.page_tokens, thinking=not args.no_thinking, max_tokens=args.max_tokens)
    except (ModelError, MediaError, ValueError, OSError) as exc:
        print(f"glmv doc: {exc}", file=sys.stderr)
        return 1
    if args.show_parts:
        for first, last, text in result.chunks:
            print(f"[pages {first}-{last}] {text}\n")
    print(result.answer)
    return 0
