"""`glmv render answer.md -o page.png`: the HTML of a web-page-coding answer, rendered by headless
Chromium, to set beside the screenshot it was asked to reproduce.

The page is rendered offline: every request it makes other than data: and about: URLs is refused,
since a model's HTML is untrusted.
"""
from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
_FENCE = re.compile(r"```(?:html|HTML)?[ \t]*\n(.*?)```", re.S)


def extract_html(text: str) -> str:
    """The answer's HTML: its longest fenced block that looks like HTML, or the text itself when it is HTML."""
    blocks = [b for b in _FENCE.findall(text) if "<" in b and ">" in b]
    if blocks:
        return max(blocks, key=len)
    start = re.search(r"<!doctype html|<html|<body|<div|<style", text, re.I)
    if start is None:
        raise ValueError("the answer holds no HTML (no ```html block and no <html> markup)")
    return text[start.start():]


def chromium_path() -> str:
    """Chromium from $GLMV_CHROMIUM, else the system's (Debian: apt-get install chromium)."""
    found = os.environ.get("GLMV_CHROMIUM") or next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
    if not found:
        raise RuntimeError("no Chromium found: install it (apt-get install chromium) or set GLMV_CHROMIUM")
    return found


def launch(playwright):
    return playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)


def screenshot(page, path: str | Path, full_page: bool = False, tries: int = 4) -> None:
    """page.screenshot, tried again after a pause when headless Chromium has no frame to give yet
    ("Unable to capture screenshot", seen right after a page's first load on a cold, busy machine)."""
    from playwright.sync_api import Error as PlaywrightError

    for attempt in range(tries):
        try:
            page.screenshot(path=str(path), full_page=full_page)
            return
        except PlaywrightError as exc:
            if "Unable to capture screenshot" not in str(exc) or attempt == tries - 1:
                raise
            page.wait_for_timeout(500 * (attempt + 1))


def render_html(html: str, output: str | Path, width: int = 1280, height: int = 800, full_page: bool = True) -> Path:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise RuntimeError("rendering needs Playwright: pip install 'glmv[browser]'") from None
    with sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(("data:", "about:"))
                       else route.abort())
            page.set_content(html, wait_until="load", timeout=30_000)
            screenshot(page, output, full_page)
        finally:
            browser.close()
    return Path(output)


def main(args) -> int:
    try:
        text = sys.stdin.read() if args.answer == "-" else Path(args.answer).read_text()
        out = render_html(extract_html(text), args.output, args.width, args.height, not args.viewport_only)
    except (ValueError, RuntimeError, OSError) as exc:
        print(f"glmv render: {exc}", file=sys.stderr)
        return 1
    print(f"rendered: {out}")
    return 0
