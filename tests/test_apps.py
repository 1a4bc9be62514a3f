"""The tools for the model's uses (glmv chat, doc, render), run as a user runs them: local model or a
real server on loopback (serving the scripted checkpoint, whose answers are known), real PDFs, real
Chromium."""
import http.server
import sqlite3
import subprocess
import sys
import threading

import numpy as np
import pytest
from PIL import Image

from glmv.apps.doc import page_range, render_pages
from glmv.apps.render import extract_html
from media_files import random_image
from server_fixtures import CONTENT, REASONING, glmv, scripted_checkpoint, start_server


@pytest.fixture(scope="module")
def scripted(tmp_path_factory):
    return scripted_checkpoint(tmp_path_factory.mktemp("scripted") / "scripted-glm")


@pytest.fixture(scope="module")
def server(scripted, tmp_path_factory):
    srv = start_server(scripted, tmp_path_factory.mktemp("apps") / "glmv.db")
    yield srv
    assert srv.stop(), srv.log.read_text()


def requests_made(server) -> int:
    with sqlite3.connect(server.db) as db:
        return db.execute("select count(*) from usage").fetchone()[0]


def test_chat_one_shot_is_the_same_here_and_through_a_server(scripted, server, tmp_path):
    random_image(64, 48).save(tmp_path / "a.png")
    args = ["-i", str(tmp_path / "a.png"), "--max-tokens", "12", "--dtype", "float32", "What is this?"]
    local = glmv("chat", "--model", str(scripted), *args)
    remote = glmv("chat", "--url", f"{server.url}/api/paas/v4", *args)
    assert local.returncode == 0 and remote.returncode == 0, local.stderr + remote.stderr
    assert local.stdout == remote.stdout
    thinking, answer = local.stdout.split("\n\n", 1)
    assert thinking == f"Thinking: {REASONING}" and answer.startswith(CONTENT)


def test_chat_conversation_with_commands(server, tmp_path):
    random_image(64, 48).save(tmp_path / "a.png")
    lines = "\n".join([f"/image {tmp_path / 'a.png'}", "What is this?", "/thinking off", "And this?", "/nonsense",
                       "/exit", "never asked"])
    out = subprocess.run([sys.executable, "-m", "glmv.cli", "chat", "--url", f"{server.url}/api/paas/v4",
                          "--max-tokens", "12"], input=lines, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert f"(attached {tmp_path / 'a.png'})" in out.stdout and "(thinking off)" in out.stdout
    assert out.stdout.count(f"Thinking: {REASONING}") == 1  # the second question did not think
    assert "commands: /image" in out.stdout and "never asked" not in out.stdout


def test_chat_against_a_dead_server_fails_clearly():
    out = glmv("chat", "--url", "http://127.0.0.1:9/api/paas/v4", "Hi")
    assert out.returncode == 1 and "cannot reach" in out.stderr


def write_pdf(path, pages):
    images = [Image.new("RGB", (300, 400), (255, 255 - 20 * i, 255)) for i in range(pages)]
    images[0].save(path, save_all=True, append_images=images[1:])
    return path


def test_page_ranges_and_the_token_budget(tmp_path):
    assert page_range("2-4,7,3", 9) == [2, 3, 4, 7] and page_range(None, 3) == [1, 2, 3]
    for bad in ("0-2", "5-12", "x"):
        with pytest.raises(ValueError):
            page_range(bad, 9)
    images, numbers = render_pages(write_pdf(tmp_path / "d.pdf", 5), "2-3", tokens_per_page=100)
    assert numbers == [2, 3] and len(images) == 2
    assert all(im.width * im.height <= 1.03 * 100 * 28 * 28 for im in images)  # pdfium rounds the scaled size
    assert all(im.width * im.height >= 60 * 28 * 28 for im in images)  # the budget is used, not wasted


def test_doc_reads_a_long_pdf_map_reduce_through_a_server(server, tmp_path):
    pdf = write_pdf(tmp_path / "long.pdf", 7)
    before = requests_made(server)
    out = glmv("doc", str(pdf), "What is on the pages?", "--url", f"{server.url}/api/paas/v4", "--chunk-pages", "3",
               "--page-tokens", "64", "--max-tokens", "12", "--show-parts", "--no-thinking")
    assert out.returncode == 0, out.stderr
    assert requests_made(server) - before == 4  # three chunks (1-3, 4-6, 7) and the combining request
    assert "[pages 1-3]" in out.stdout and "[pages 4-6]" in out.stdout and "[pages 7-7]" in out.stdout
    one = glmv("doc", str(pdf), "What?", "--url", f"{server.url}/api/paas/v4", "--pages", "1-2", "--max-tokens", "4")
    assert one.returncode == 0 and requests_made(server) - before == 5  # fits one request
    bad = glmv("doc", str(pdf), "What?", "--url", f"{server.url}/api/paas/v4", "--pages", "9")
    assert bad.returncode == 1 and "outside the document" in bad.stderr


def test_html_is_found_in_answers():
    assert extract_html("Here:\n```html\n<div>hi</div>\n```\nDone.") == "<div>hi</div>\n"
    assert extract_html("<!DOCTYPE html><html><body>x</body></html>").startswith("<!DOCTYPE html>")
    short, long = "```html\n<b>a</b>\n```", "```html\n<html><body>long page</body></html>\n```"
    assert "long page" in extract_html(f"{short}\n{long}")
    with pytest.raises(ValueError, match="no HTML"):
        extract_html("Just words.")


def test_render_draws_the_page_in_real_chromium_and_fetches_nothing(tmp_path):
    fetched = []

    class Recorder(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            fetched.append(self.path)
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):
            pass

    web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    answer = tmp_path / "answer.md"
    answer.write_text("The page:\n```html\n<html><body style='margin:0;background:#fff'>"
                      "<div style='width:200px;height:100px;background:rgb(255,0,0)'></div>"
                      f"<img src='http://127.0.0.1:{web.server_address[1]}/tracker.png'></body></html>\n```\n")
    out = glmv("render", str(answer), "-o", str(tmp_path / "page.png"), "--width", "400", "--height", "300")
    web.shutdown()
    assert out.returncode == 0, out.stderr
    assert fetched == []
    page = np.asarray(Image.open(tmp_path / "page.png").convert("RGB"))
    assert page.shape[1] == 400 and tuple(page[50, 100]) == (255, 0, 0) and tuple(page[50, 300]) == (255, 255, 255)


def test_video_sampling_per_request_through_the_api_and_the_cli(server, tmp_path):
    import base64

    import httpx

    from media_files import write_video

    clip = write_video(tmp_path / "clip.mp4", frames=24, fps=4)  # 6 s
    url = "data:video/mp4;base64," + base64.b64encode(clip.read_bytes()).decode()

    def ask(**sampling):
        video = {"type": "video_url", "video_url": {"url": url, **sampling}}
        return httpx.post(f"{server.url}/api/paas/v4/chat/completions", timeout=60,
                          json={"model": "glm-4.5v", "max_tokens": 1,
                                "messages": [{"role": "user", "content": [video, {"type": "text", "text": "What?"}]}]})

    tokens = {name: ask(**sampling).json()["usage"]["prompt_tokens"]
              for name, sampling in (("default", {}), ("1fps", {"fps": 1}), ("2frames", {"max_frames": 2}))}
    assert tokens["default"] > tokens["1fps"] > tokens["2frames"]  # 12, 6 and 2 frames (6, 3 and 1 frame pairs)
    for bad, code in (({"fps": 0}, "1214"), ({"max_frames": 100000}, "1214"), ({"fps": "fast"}, "1210")):
        reply = ask(**bad)
        assert reply.status_code == 400 and reply.json()["error"]["code"] == code, reply.text
    before = requests_made(server)
    out = glmv("chat", "--url", f"{server.url}/api/paas/v4", "--video", str(clip), "--fps", "1", "--max-tokens", "1",
               "What?")
    assert out.returncode == 0, out.stderr
    with sqlite3.connect(server.db) as db:
        prompt = db.execute("select prompt_tokens from usage order by rowid desc limit 1").fetchone()[0]
    assert requests_made(server) == before + 1 and prompt == tokens["1fps"]  # sampled as the API sampled fps=1
