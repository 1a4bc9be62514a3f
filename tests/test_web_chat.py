"""The web chat served at /, driven in real headless Chromium (Playwright, Debian's chromium).

The server runs a tiny checkpoint that glmv's trainer has taught three answers about one image (a
box with thinking, a count without, a table), so the test knows what a real model will say: upload the
image, ask, watch the answer stream in and the thinking fold, see the box drawn where the answer puts
it, turn thinking off, get a table. Then a scripted checkpoint behind an API key: the key field, a
refused request, the exact streamed answer. Screenshots go to test-artifacts/web-chat (or
$GLMV_TEST_ARTIFACTS)."""
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from checkpoints import make_taught_checkpoint
from glmv.apps.render import launch, screenshot
from glmv.outputs.boxes import parse_boxes
from server_fixtures import CONTENT, REASONING, scripted_checkpoint, start_server

BOX = [120, 340, 560, 780]
CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")
ARTIFACTS = Path(os.environ.get("GLMV_TEST_ARTIFACTS", Path(__file__).parent.parent / "test-artifacts")) / "web-chat"


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        chromium = launch(p)  # glmv's own launcher: the system chromium, the flags it needs here
        yield chromium
        chromium.close()


def scene(path: Path) -> Path:
    image = Image.new("RGB", (400, 300), (190, 190, 200))
    ImageDraw.Draw(image).rectangle((48, 102, 224, 234), fill=(220, 40, 40))  # where BOX says
    image.save(path)
    return path


@pytest.fixture(scope="module")
def taught_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("web")
    image = str(scene(root / "scene.png"))

    def lesson(question, answer):
        return [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": image}},
                                             {"type": "text", "text": question}]},
                {"role": "assistant", "content": answer}]

    model = make_taught_checkpoint(root / "taught", [
        lesson("Where is the red square?",
               f"<think>I see one red square.</think><|begin_of_box|>[{','.join(map(str, BOX))}]<|end_of_box|>"),
        lesson("How many squares?/nothink", "<think></think><|begin_of_box|>1<|end_of_box|>"),
        lesson("Make a table of it./nothink", "<think></think>| shape | count |\n| --- | --- |\n| square | 1 |"),
    ])
    srv = start_server(model, root / "glmv.db")
    srv.image = root / "scene.png"
    yield srv
    assert srv.stop(), srv.log.read_text()


def ask(page, text, files=()):
    if files:
        page.set_input_files("#files", [str(f) for f in files])
        page.wait_for_function(f"document.querySelectorAll('#attachments .chip').length === {len(files)}")
    finished = "document.querySelectorAll('.msg.assistant[data-done], .msg.error').length"
    before = page.evaluate(finished)
    page.fill("#input", text)
    page.press("#input", "Enter")
    page.wait_for_function(f"{finished} > {before}", timeout=120_000)
    return page.locator(".msg.assistant").last


def count_answer_updates(page):
    """Counts how often the newest answer changes while it streams."""
    page.evaluate("""() => {
        window.updates = 0;
        new MutationObserver(() => { window.updates++; })
            .observe(document.getElementById('messages'), {subtree: true, childList: true, characterData: true});
    }""")


def test_upload_ask_stream_box_and_thinking_switch(browser, taught_server):
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(taught_server.url + "/")
    page.wait_for_function("document.querySelectorAll('#model option').length > 0")
    assert page.locator("#key").is_hidden()  # no keys on this loopback server

    count_answer_updates(page)
    reply = ask(page, "Where is the red square?", [taught_server.image])
    assert page.evaluate("window.updates") > 3  # the answer arrived in pieces
    thinking = reply.locator("details.thinking")
    assert thinking.is_visible() and not thinking.evaluate("d => d.open")  # folded above the answer
    assert thinking.locator(".text").text_content() == "I see one red square."
    assert reply.locator(".answer .box-token").count() == 2
    assert parse_boxes(reply.locator(".answer").text_content()) == [BOX]
    image = reply.locator(".grounded img").bounding_box()
    drawn = reply.locator(".grounded .box").bounding_box()
    x1, y1, x2, y2 = BOX  # drawn in 0-1000 of the image as displayed: over the red square
    assert abs(drawn["x"] - (image["x"] + image["width"] * x1 / 1000)) < 3
    assert abs(drawn["y"] - (image["y"] + image["height"] * y1 / 1000)) < 3
    assert abs(drawn["width"] - image["width"] * (x2 - x1) / 1000) < 3
    assert abs(drawn["height"] - image["height"] * (y2 - y1) / 1000) < 3
    assert "tokens · $" in reply.locator(".usage").inner_text()
    screenshot(page, ARTIFACTS / "grounding.png", full_page=True)

    page.uncheck("#thinking")
    page.click("#clear")  # each lesson was a conversation of its own
    reply = ask(page, "How many squares?", [taught_server.image])
    assert reply.locator("details.thinking").is_hidden()  # thinking off: no thinking block
    assert reply.locator(".answer").inner_text().strip() == "⟦1⟧"
    page.click("#clear")
    reply = ask(page, "Make a table of it.", [taught_server.image])
    assert reply.locator(".answer table td").all_inner_texts() == ["square", "1"]
    screenshot(page, ARTIFACTS / "thinking-off-and-table.png", full_page=True)
    assert not errors


def test_markdown_is_escaped_and_html_answers_preview_in_a_sandbox(browser, taught_server):
    page = browser.new_page()
    page.goto(taught_server.url + "/")
    html = page.evaluate("renderMarkdown('Hi <b>there</b>\\n\\n```html\\n<p onclick=x>page</p>\\n```\\n| a | b |\\n|---|---|\\n| 1 | 2 |')")
    assert "<b>" not in html and "&lt;b&gt;" in html and "&lt;p onclick=x&gt;" in html
    assert "<table>" in html and "<td>1</td>" in html and 'class="copy"' in html
    page.evaluate("document.getElementById('messages').append(htmlPreview(htmlOf('```html\\n<h1 style=\"color:red\">Live</h1>\\n```')))")
    frame = page.locator(".html-answer iframe")
    assert frame.get_attribute("sandbox") == "allow-scripts"
    assert page.frame_locator(".html-answer iframe").locator("h1").inner_text() == "Live"


def test_a_server_with_keys_asks_for_one(browser, tmp_path):
    srv = start_server(scripted_checkpoint(tmp_path / "scripted-glm"), tmp_path / "glmv.db", "--api-key", "k1.secret")
    try:
        page = browser.new_page()
        page.goto(srv.url + "/")
        page.wait_for_function("document.querySelectorAll('#model option').length > 0")
        assert page.locator("#key").is_visible()
        ask(page, "Hello?")
        assert "(code 100" in page.locator(".msg.error").last.inner_text()  # the API's own 401 error
        page.fill("#key", "k1.secret")
        page.dispatch_event("#key", "change")
        reply = ask(page, "Hello?")
        assert reply.locator("details.thinking .text").text_content() == REASONING  # folded, so not innerText
        assert reply.locator(".answer").inner_text().startswith(CONTENT.replace("<|begin_of_box|>", "⟦")
                                                                 .replace("<|end_of_box|>", "⟧"))
        screenshot(page, ARTIFACTS / "keyed-server.png", full_page=True)
        page.reload()  # the key is remembered by the browser, not the server
        page.wait_for_function("document.querySelectorAll('#model option').length > 0")
        assert page.input_value("#key") == "k1.secret"
    finally:
        assert srv.stop(), srv.log.read_text()
