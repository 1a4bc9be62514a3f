"""`glmv agent --mode web URL "task"`: a browsing agent in headless Chromium.

Each step: number the page's interactive elements (set-of-marks), take a screenshot, ask the model
with the web prompt (task, marked elements, history, memory), parse its action, carry it out.
Every step is logged (steps.jsonl plus its screenshot). --dry-run asks and prints but never acts;
--script replays answers from a file instead of asking a model (to test a page or the executor).
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

from .agent_formats import Action, ActionError, parse_web, web_prompt
from .client import ModelError, Reply, connect, image_part

MARK_JS = """() => {
  document.querySelectorAll('[data-glmv-mark]').forEach((n) => n.remove());
  const selector = 'a[href], button, input, textarea, select, [role=button], [role=link], [onclick], [contenteditable=true]';
  const seen = [];
  for (const node of document.querySelectorAll(selector)) {
    const r = node.getBoundingClientRect();
    const style = getComputedStyle(node);
    if (r.width < 2 || r.height < 2 || style.visibility === 'hidden' || style.display === 'none') continue;
    if (r.bottom < 0 || r.right < 0 || r.top > innerHeight || r.left > innerWidth) continue;
    const label = (node.innerText || node.getAttribute('aria-label') || node.placeholder || node.value ||
                   node.title || node.name || '').trim().replace(/\\s+/g, ' ').slice(0, 60);
    const mark = document.createElement('div');
    mark.setAttribute('data-glmv-mark', '');
    mark.textContent = seen.length;
    Object.assign(mark.style, {position: 'fixed', zIndex: 2147483647,  // up and left, off the element's text
      left: `${Math.max(0, r.left - 14)}px`, top: `${Math.max(0, r.top - 8)}px`,
      background: '#e6194b', color: '#fff', font: 'bold 12px sans-serif', padding: '0 3px', pointerEvents: 'none',
      outline: '2px solid #e6194b'});
    document.body.appendChild(mark);
    seen.push({tag: node.tagName.toLowerCase(), type: node.type || '', label,
               x: r.left + r.width / 2, y: r.top + r.height / 2});
  }
  return seen;
}"""
UNMARK_JS = "() => document.querySelectorAll('[data-glmv-mark]').forEach((n) => n.remove())"


def describe(mark: dict) -> str:
    kind = f"{mark['tag']}[{mark['type']}]" if mark["type"] and mark["tag"] == "input" else mark["tag"]
    return f"{kind} {mark['label']!r}" if mark["label"] else kind


class ScriptedAnswers:
    """Answers read from a file, one per step, separated by lines of '---' (for --script)."""

    def __init__(self, path: str | Path):
        self.answers = [a.strip() for a in Path(path).read_text().split("\n---\n") if a.strip()]

    def ask(self, messages, thinking=True, max_tokens=1024) -> Reply:
        if not self.answers:
            raise ModelError("the script has no answer left")
        return Reply(content=self.answers.pop(0))


def execute(page, action: Action, marks: list[dict]) -> None:
    """Carry out one web action on the page (positions from the marks of the screenshot)."""
    def centre(mark: int | None) -> tuple[float, float]:
        if mark is None or not 0 <= mark < len(marks):
            raise ActionError(f"there is no element [{mark}] on the page (marks 0-{len(marks) - 1})")
        return marks[mark]["x"], marks[mark]["y"]

    if action.kind == "click":
        page.mouse.click(*centre(action.mark))
    elif action.kind == "type":
        page.mouse.click(*centre(action.mark))
        page.keyboard.press("Control+A")
        page.keyboard.type(action.text)
        page.keyboard.press("Enter")
    elif action.kind == "scroll":
        if action.mark is not None:
            page.mouse.move(*centre(action.mark))
        height = page.viewport_size["height"] if page.viewport_size else 800
        page.mouse.wheel(0, (1 if action.text == "down" else -1) * height * 0.8)
    elif action.kind == "key":
        page.keyboard.press("Enter" if action.text.lower() in ("return", "enter") else action.text)
    elif action.kind == "wait":
        page.wait_for_timeout(2000)
    elif action.kind == "back":
        page.go_back()
    else:
        raise ActionError(f"{action.kind!r} is not a web action")
    settle(page)


def settle(page) -> None:
    """Let a navigation the action started (a link, a form sent with Enter) begin, then finish."""
    page.wait_for_timeout(400)
    page.wait_for_load_state("load")


def run_web_agent(model, url: str, task: str, log_dir: str | Path, max_steps: int = 10, dry_run: bool = False,
                  thinking: bool = True, max_tokens: int = 1024, width: int = 1280, height: int = 800,
                  echo=print) -> str | None:
    """Run the loop; the final answer, or None when the step limit comes first."""
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    from .render import launch, screenshot

    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    history: list[str] = []
    memory = "{}"
    with sync_playwright() as p, open(log_dir / "steps.jsonl", "a") as log:
        browser = launch(p)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(url, wait_until="load")
            for step in range(1, max_steps + 1):
                try:
                    marks = page.evaluate(MARK_JS)
                except PlaywrightError:  # a late navigation replaced the page: mark the new one
                    settle(page)
                    marks = page.evaluate(MARK_JS)
                shot = log_dir / f"step-{step:02d}.png"
                screenshot(page, shot)
                page.evaluate(UNMARK_JS)
                prompt = web_prompt(task, history, [describe(m) for m in marks], memory)
                began = time.perf_counter()
                reply = model.ask([{"role": "user", "content": [image_part(str(shot)), {"type": "text", "text": prompt}]}],
                                  thinking=thinking, max_tokens=max_tokens)
                record = {"step": step, "url": page.url, "screenshot": shot.name, "answer": reply.content,
                          "seconds": round(time.perf_counter() - began, 2)}
                try:
                    action = parse_web(reply.content)
                    record["action"] = asdict(action)
                    echo(f"step {step}: {action.kind}" + (f" [{action.mark}]" if action.mark is not None else "")
                         + (f" {action.text!r}" if action.text else ""))
                    if action.kind == "answer":
                        log.write(json.dumps(record) + "\n")
                        return action.text
                    if not dry_run:
                        execute(page, action, marks)
                    history.append(f"{action.thought} Action: {action.written}")
                    memory = action.memory or memory
                except ActionError as exc:  # told to the model at the next step, which may correct itself
                    record["error"] = str(exc)
                    echo(f"step {step}: {exc}")
                    history.append(f"(the last answer could not be carried out: {exc})")
                log.write(json.dumps(record) + "\n")
                log.flush()
        finally:
            browser.close()
    return None


def main(args) -> int:
    if args.mode != "web":
        print("glmv agent: only --mode web runs here (a browser); mobile and desktop prompts and parsers are in "
              "glmv.apps.agent_formats for your own device loop", file=sys.stderr)
        return 2
    try:
        model = ScriptedAnswers(args.script) if args.script else connect(args.model, args.url, args.api_key,
                                                                          args.dtype, args.device)
        answer = run_web_agent(model, args.start_url, args.task, args.log_dir, args.max_steps, args.dry_run,
                               not args.no_thinking, args.max_tokens)
    except (ModelError, ValueError, OSError, RuntimeError) as exc:
        print(f"glmv agent: {exc}", file=sys.stderr)
        return 1
    if answer is None:
        print(f"no answer within {args.max_steps} steps; log: {Path(args.log_dir) / 'steps.jsonl'}")
        return 3
    print(answer)
    return 0
