"""Documents (`file_url` parts) as the model sees them: PDF pages become images, text files text.

- PDF: each page is rendered with pdfium. All files of a request share a page budget
  (max_file_pages) and an image-token budget, split evenly over the pages, so a long document
  costs a bounded prompt.
- docx/xlsx/pptx (and the older doc/xls/ppt, odt/ods/odp): converted to PDF by LibreOffice
  when it is installed, then read as a PDF.
- txt/md/jsonl/csv/json: UTF-8 text, placed in the message as a text part.
"""
from __future__ import annotations

import math
import shutil
import subprocess
import tempfile
import threading
import urllib.parse
from pathlib import Path

from PIL import Image

from .media import MediaError, MediaLimits, read_source
from .processor import ProcessorConfig

TEXT_TYPES = {"txt", "md", "markdown", "jsonl", "csv", "json", "tsv"}
OFFICE_TYPES = {"docx", "xlsx", "pptx", "doc", "xls", "ppt", "odt", "ods", "odp", "rtf"}
MIME_TYPES = {"application/pdf": "pdf", "text/plain": "txt", "text/markdown": "md", "text/csv": "csv",
              "application/json": "json", "application/jsonl": "jsonl", "application/x-ndjson": "jsonl",
              "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
              "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
              "application/vnd.openxmlformats-officedocument.presentationml.presentation": "pptx"}
OFFICE_TIMEOUT_S = 120
PDFIUM_LOCK = threading.Lock()  # pdfium is not thread-safe; requests may be prepared on several threads


def file_type(url: str, data: bytes) -> str:
    """The document type, from the bytes when they are a PDF, else from the data: MIME type or the URL's extension."""
    if data.startswith(b"%PDF-"):
        return "pdf"
    if url.startswith("data:"):
        mime = url[5:].split(",", 1)[0].split(";", 1)[0].lower()
        if mime in MIME_TYPES:
            return MIME_TYPES[mime]
    suffix = Path(urllib.parse.urlsplit(url).path).suffix.lower().lstrip(".")
    if suffix in TEXT_TYPES | OFFICE_TYPES:
        return suffix
    raise MediaError("unsupported file type: send a PDF, Word/Excel/PowerPoint file, or txt/md/jsonl/csv "
                     "(name the type by the URL's extension or the data: URL's MIME type)")


def read_documents(urls: list[str], limits: MediaLimits, proc: ProcessorConfig) -> list[list[dict]]:
    """For each file URL, the content parts that stand for it (image parts holding PIL pages, or one text part)."""
    loaded = []
    for url in urls:
        data = read_source(url, limits.max_file_bytes, limits)
        kind = file_type(url, data)
        if kind in OFFICE_TYPES:
            data, kind = office_to_pdf(data, kind), "pdf"
        loaded.append((kind, data))
    with PDFIUM_LOCK:
        return _document_parts(loaded, limits, proc)


def _document_parts(loaded: list[tuple[str, bytes]], limits: MediaLimits, proc: ProcessorConfig) -> list[list[dict]]:
    pdfs = [open_pdf(data) for kind, data in loaded if kind == "pdf"]
    try:
        pages = sum(len(pdf) for pdf in pdfs)
        if pages > limits.max_file_pages:
            raise MediaError(f"the documents have {pages} pages; at most {limits.max_file_pages} are read per request")
        per_page_pixels = limits.file_image_tokens // max(pages, 1) * proc.factor ** 2
        parts, next_pdf = [], iter(pdfs)
        for kind, data in loaded:
            if kind == "pdf":
                pdf = next(next_pdf)
                parts.append([{"type": "image_url", "image_url": {"url": render_page(pdf[i], per_page_pixels)}}
                              for i in range(len(pdf))])
            else:
                parts.append([{"type": "text", "text": data.decode("utf-8", errors="replace")}])
        return parts
    finally:
        for pdf in pdfs:
            pdf.close()


def open_pdf(data: bytes):
    import pypdfium2 as pdfium

    try:
        return pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        raise MediaError(f"cannot read the PDF: {exc}") from exc


def render_page(page, max_pixels: int) -> Image.Image:
    """A page as an RGB image of at most max_pixels (and at most 2x its size in points, ~144 dpi)."""
    width, height = page.get_size()
    scale = min(2.0, math.sqrt(max_pixels / max(width * height, 1.0)))
    return page.render(scale=scale).to_pil().convert("RGB")


def office_to_pdf(data: bytes, kind: str) -> bytes:
    soffice = shutil.which("soffice") or shutil.which("libreoffice")
    if soffice is None:
        raise MediaError(f"reading a .{kind} file needs LibreOffice (soffice), which is not installed on this "
                         "server; send it as a PDF instead")
    with tempfile.TemporaryDirectory(prefix="glmv-office-") as tmp:
        source = Path(tmp) / f"document.{kind}"
        source.write_bytes(data)
        try:
            subprocess.run([soffice, f"-env:UserInstallation=file://{tmp}/profile", "--headless", "--convert-to",
                            "pdf", "--outdir", tmp, str(source)], capture_output=True, timeout=OFFICE_TIMEOUT_S,
                           check=True)
        except subprocess.TimeoutExpired as exc:
            raise MediaError(f"converting the .{kind} file took over {OFFICE_TIMEOUT_S} s") from exc
        except subprocess.CalledProcessError as exc:
            raise MediaError(f"LibreOffice could not convert the .{kind} file: "
                             f"{exc.stderr.decode(errors='replace')[-300:]}") from exc
        result = Path(tmp) / "document.pdf"
        if not result.is_file():
            raise MediaError(f"LibreOffice could not convert the .{kind} file")
        return result.read_bytes()
