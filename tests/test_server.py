"""`glmv serve` against the official clients (zai-sdk, zhipuai, openai) and curl, over real HTTP on loopback.

The server runs a scripted checkpoint: with thinking on it answers REASONING then CONTENT (then " and"
until max_tokens); with thinking off it answers TOOL_CONTENT and a tool call Describe(you=4).
"""
from __future__ import annotations

import base64
import http.server
import json
import shutil
import sqlite3
import subprocess
import threading
import time
from functools import partial

import httpx
import pytest
from PIL import Image

from media_files import data_url, png_bytes, random_image, write_video
from server_fixtures import CONTENT, REASONING, TOOL_CONTENT, glmv, scripted_checkpoint, start_server

TOOLS = [{"type": "function", "function": {"name": "Describe", "description": "describe a thing", "parameters": {
    "type": "object", "properties": {"you": {"type": "integer"}}}}}]
QUESTION = "What happens in this image?"


@pytest.fixture(scope="module")
def web_root(tmp_path_factory):
    return tmp_path_factory.mktemp("web")


@pytest.fixture(scope="module")
def files(web_root):
    """A loopback web server holding an image, a video, a PDF and a text file."""
    root = web_root
    random_image(96, 80, seed=1).save(root / "cat.png")
    write_video(root / "clip.mp4", frames=8, fps=4)
    pages = [random_image(200, 280, seed=s) for s in (2, 3)]
    pages[0].save(root / "doc.pdf", save_all=True, append_images=pages[1:])
    (root / "notes.txt").write_text("The meeting is on Tuesday.")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             partial(http.server.SimpleHTTPRequestHandler, directory=str(root)))
    server.RequestHandlerClass.log_message = lambda *a: None
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("server")
    model = scripted_checkpoint(root / "scripted-glm")
    db = root / "glmv.db"
    keys = {}
    for name, extra in (("main", []), ("slow", ["--rpm", "2"]), ("single", ["--max-concurrency", "1"]),
                        ("revoked", [])):
        made = glmv("keys", "create", "--db", str(db), "--name", name, *extra)
        assert made.returncode == 0, made.stderr
        keys[name] = made.stdout.strip()
    srv = start_server(model, db, "--allow-private-urls")
    srv.keys = keys
    yield srv
    assert srv.stop(), srv.log.read_text()


def zai(server, key="main", **kw):
    from zai import ZaiClient
    return ZaiClient(api_key=server.keys[key], base_url=f"{server.url}/api/paas/v4", max_retries=0, **kw)


def zhipu(server, key="main"):
    from zhipuai import ZhipuAI
    return ZhipuAI(api_key=server.keys[key], base_url=f"{server.url}/api/paas/v4", max_retries=0)


def openai_client(server, key="main"):
    from openai import OpenAI
    return OpenAI(api_key=server.keys[key], base_url=f"{server.url}/v1", max_retries=0)


def image_message(url: str, text: str = QUESTION) -> list[dict]:
    return [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": text}]}]


def collect(stream) -> tuple[str, str, list]:
    reasoning, content, chunks = [], [], []
    for chunk in stream:
        chunks.append(chunk)
        delta = chunk.choices[0].delta
        reasoning.append(getattr(delta, "reasoning_content", None) or "")
        content.append(delta.content or "")
    return "".join(reasoning), "".join(content), chunks


def usage_rows(server) -> list[dict]:
    with sqlite3.connect(server.db) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("select * from usage order by id")]


def metric(server, name: str) -> float:
    text = httpx.get(f"{server.url}/metrics").text
    return float(next(line.split()[-1] for line in text.splitlines() if line.startswith(name + " ")))


# -- the official clients ---------------------------------------------------------------------------

@pytest.mark.parametrize("make_client", [zai, zhipu], ids=["zai-sdk", "zhipuai"])
def test_zai_sdks_image_question_with_thinking(server, make_client):
    client = make_client(server)
    messages = image_message(data_url(random_image(64, 64, seed=5)))  # the SDKs send it as bare base64
    out = client.chat.completions.create(model="glm-4.5v", messages=messages, thinking={"type": "enabled"},
                                         max_tokens=12)
    message = out.choices[0].message
    assert message.reasoning_content == REASONING and message.content.startswith(CONTENT)
    assert out.choices[0].finish_reason == "length" and out.usage.completion_tokens == 12
    assert out.usage.prompt_tokens > 16  # the image's tokens are in the prompt
    assert out.request_id == out.id

    stream = client.chat.completions.create(model="glm-4.5v", messages=messages, stream=True, max_tokens=12,
                                            request_id="my-request-1")
    reasoning, content, chunks = collect(stream)
    assert reasoning == REASONING and content == message.content
    assert chunks[-1].choices[0].finish_reason == "length" and chunks[-1].usage.completion_tokens == 12
    assert chunks[-1].usage.prompt_tokens_details.cached_tokens > 0  # the same image prompt again: prefix cache
    assert all(c.choices[0].finish_reason is None for c in chunks[:-1])


def test_openai_create_stream_and_stream_helper(server, files):
    client = openai_client(server)
    messages = image_message(f"{files}/cat.png")
    out = client.chat.completions.create(model="glm-4.5v", messages=messages, max_tokens=12, temperature=0, seed=3)
    assert out.choices[0].message.reasoning_content == REASONING
    assert out.choices[0].message.content.startswith(CONTENT)
    reasoning, content, chunks = collect(client.chat.completions.create(
        model="glm-4.5v", messages=messages, max_tokens=12, stream=True, stream_options={"include_usage": True}))
    assert (reasoning, content) == (REASONING, out.choices[0].message.content)
    assert chunks[-1].usage.total_tokens == out.usage.total_tokens
    with client.chat.completions.stream(model="glm-4.5v", messages=messages, max_tokens=12, stop=[" and"]) as stream:
        events = [e.type for e in stream]
        final = stream.get_final_completion()
    assert "content.delta" in events and final.choices[0].finish_reason == "stop"
    assert final.choices[0].message.content == CONTENT  # cut before the stop string


def test_thinking_off_both_ways(server):
    out = zai(server).chat.completions.create(model="glm-4.5v", messages=[{"role": "user", "content": "Hi"}],
                                              thinking={"type": "disabled"}, max_tokens=30)
    assert getattr(out.choices[0].message, "reasoning_content", None) is None
    assert out.choices[0].message.content.startswith(TOOL_CONTENT + "<tool_call>Describe")  # no tools: raw text
    assert out.choices[0].finish_reason == "stop"
    again = openai_client(server).chat.completions.create(
        model="glm-4.5v", messages=[{"role": "user", "content": "Hi"}], max_tokens=30,
        extra_body={"chat_template_kwargs": {"enable_thinking": False}})
    assert again.choices[0].message.content == out.choices[0].message.content


def test_images_as_url_data_url_and_bare_base64(server, files):
    image = random_image(64, 64, seed=9)
    bare = base64.b64encode(png_bytes(image)).decode()
    client = openai_client(server)
    prompt_tokens = set()
    for url in (data_url(image), bare, f"{files}/cat.png"):
        out = client.chat.completions.create(model="glm-4.5v", messages=image_message(url), max_tokens=6)
        assert out.choices[0].message.reasoning_content == REASONING
        prompt_tokens.add(out.usage.prompt_tokens)
    assert min(prompt_tokens) > 16


def test_video_pdf_and_text_files(server, files):
    client = zai(server)
    text_only = client.chat.completions.create(model="glm-4.5v", messages=[{"role": "user", "content": QUESTION}],
                                               max_tokens=4).usage.prompt_tokens
    video = client.chat.completions.create(model="glm-4.5v", max_tokens=6, messages=[{"role": "user", "content": [
        {"type": "video_url", "video_url": {"url": f"{files}/clip.mp4"}}, {"type": "text", "text": QUESTION}]}])
    assert video.choices[0].message.reasoning_content == REASONING and video.usage.prompt_tokens > text_only + 8
    pdf = client.chat.completions.create(model="glm-4.5v", max_tokens=6, messages=[{"role": "user", "content": [
        {"type": "file_url", "file_url": {"url": f"{files}/doc.pdf"}}, {"type": "text", "text": QUESTION}]}])
    assert pdf.choices[0].message.reasoning_content == REASONING
    assert pdf.usage.prompt_tokens > text_only + 2 * 8  # two rendered pages
    txt = client.chat.completions.create(model="glm-4.5v", max_tokens=6, messages=[{"role": "user", "content": [
        {"type": "file_url", "file_url": {"url": f"{files}/notes.txt"}}, {"type": "text", "text": QUESTION}]}])
    assert txt.usage.prompt_tokens > text_only


def minimal_docx(path):
    """A one-paragraph Word file, written by hand (the three parts a .docx needs)."""
    import zipfile

    ns = "http://schemas.openxmlformats.org"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("[Content_Types].xml", f'<?xml version="1.0"?><Types xmlns="{ns}/package/2006/content-types">'
                   '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
                   '<Default Extension="xml" ContentType="application/xml"/><Override PartName="/word/document.xml" '
                   'ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/>'
                   '</Types>')
        z.writestr("_rels/.rels", f'<?xml version="1.0"?><Relationships xmlns="{ns}/package/2006/relationships">'
                   f'<Relationship Id="r1" Type="{ns}/officeDocument/2006/relationships/officeDocument" '
                   'Target="word/document.xml"/></Relationships>')
        z.writestr("word/document.xml", f'<?xml version="1.0"?><w:document xmlns:w="{ns}/wordprocessingml/2006/'
                   'main"><w:body><w:p><w:r><w:t>The meeting is on Tuesday.</w:t></w:r></w:p></w:body></w:document>')


def test_office_files_need_libreoffice(server, files, web_root):
    """A .docx is converted by LibreOffice when it is installed; otherwise the error names the missing tool."""
    minimal_docx(web_root / "memo.docx")
    response = httpx.post(f"{server.url}/api/paas/v4/chat/completions", headers={
        "Authorization": f"Bearer {server.keys['main']}"}, json={"model": "glm-4.5v", "max_tokens": 4, "messages": [
            {"role": "user", "content": [{"type": "file_url", "file_url": {"url": f"{files}/memo.docx"}},
                                         {"type": "text", "text": QUESTION}]}]})
    if shutil.which("soffice") or shutil.which("libreoffice"):
        assert response.status_code == 200 and response.json()["usage"]["prompt_tokens"] > 16
    else:
        assert response.status_code == 400 and "LibreOffice (soffice)" in response.json()["error"]["message"]


def test_tool_calls_plain_streamed_and_answered(server):
    messages = [{"role": "user", "content": "Describe it"}]
    out = zai(server).chat.completions.create(model="glm-4.5v", messages=messages, tools=TOOLS, tool_choice="auto",
                                              thinking={"type": "disabled"}, max_tokens=30)
    choice = out.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content == TOOL_CONTENT
    call = choice.message.tool_calls[0]
    assert call.function.name == "Describe" and json.loads(call.function.arguments) == {"you": 4}

    client = openai_client(server)
    reasoning, content, chunks = collect(client.chat.completions.create(
        model="glm-4.5v", messages=messages, tools=TOOLS, stream=True, max_tokens=30,
        extra_body={"thinking": {"type": "disabled"}}))
    assert content == TOOL_CONTENT and chunks[-1].choices[0].finish_reason == "tool_calls"
    streamed = [c.choices[0].delta.tool_calls for c in chunks if c.choices[0].delta.tool_calls]
    assert len(streamed) == 1 and json.loads(streamed[0][0].function.arguments) == {"you": 4}

    history = messages + [{"role": "assistant", "content": TOOL_CONTENT, "tool_calls": [call.model_dump()]},
                          {"role": "tool", "tool_call_id": call.id, "content": "{\"answer\": 4}"}]
    follow = client.chat.completions.create(model="glm-4.5v", messages=history, tools=TOOLS, max_tokens=8)
    assert follow.choices[0].message.reasoning_content == REASONING
    assert follow.usage.prompt_tokens > out.usage.prompt_tokens  # the call and its result are in the prompt


def test_async_task(server):
    client = zai(server)
    task = client.chat.asyncCompletions.create(model="glm-4.5v", messages=[{"role": "user", "content": "Hi"}],
                                               max_tokens=10)
    assert task.task_status == "PROCESSING"
    for _ in range(100):
        result = client.chat.asyncCompletions.retrieve_completion_result(id=task.id)
        if result.task_status != "PROCESSING":
            break
        time.sleep(0.1)
    assert result.task_status == "SUCCESS"
    assert result.choices[0].message.content.startswith(CONTENT) and result.usage.completion_tokens == 10
    other = httpx.get(f"{server.url}/api/paas/v4/async-result/{task.id}",
                      headers={"Authorization": f"Bearer {server.keys['slow']}"})
    assert other.status_code == 400  # another key cannot read it


# -- errors through the clients ----------------------------------------------------------------------

def test_wrong_key_raises_each_clients_401(server):
    import openai
    import zai as zai_sdk
    import zhipuai

    wrong = server.keys["main"].split(".")[0] + ".wrongsecret"
    messages = [{"role": "user", "content": "Hi"}]
    with pytest.raises(zai_sdk.core.APIAuthenticationError):
        zai_sdk.ZaiClient(api_key=wrong, base_url=f"{server.url}/api/paas/v4", max_retries=0).chat.completions.create(
            model="glm-4.5v", messages=messages)
    with pytest.raises(zhipuai.core._errors.APIAuthenticationError):
        zhipuai.ZhipuAI(api_key=wrong, base_url=f"{server.url}/api/paas/v4", max_retries=0).chat.completions.create(
            model="glm-4.5v", messages=messages)
    with pytest.raises(openai.AuthenticationError) as err:
        openai.OpenAI(api_key=wrong, base_url=f"{server.url}/v1", max_retries=0).chat.completions.create(
            model="glm-4.5v", messages=messages)
    assert err.value.code == "1000"
    with pytest.raises(openai.AuthenticationError) as err:
        openai.OpenAI(api_key="nodot", base_url=f"{server.url}/v1", max_retries=0).chat.completions.create(
            model="glm-4.5v", messages=messages)
    assert err.value.code == "1002"


def test_jwt_auth(server):
    import jwt

    out = zai(server, disable_token_cache=False).chat.completions.create(
        model="glm-4.5v", messages=[{"role": "user", "content": "Hi"}], max_tokens=3)
    assert out.usage.completion_tokens == 3
    key_id, secret = server.keys["main"].split(".")

    def call(token):
        return httpx.post(f"{server.url}/api/paas/v4/chat/completions", headers={"Authorization": f"Bearer {token}"},
                          json={"model": "glm-4.5v", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2})

    now_ms = int(time.time() * 1000)
    header = {"alg": "HS256", "sign_type": "SIGN"}
    expired = jwt.encode({"api_key": key_id, "exp": now_ms - 1000, "timestamp": now_ms - 5000}, secret,
                         algorithm="HS256", headers=header)
    assert call(expired).json()["error"]["code"] == "1003"
    forged = jwt.encode({"api_key": key_id, "exp": now_ms + 60_000, "timestamp": now_ms}, "not-the-secret-but-32-bytes-long!",
                        algorithm="HS256", headers=header)
    assert call(forged).status_code == 401 and call(forged).json()["error"]["code"] == "1004"
    good = jwt.encode({"api_key": key_id, "exp": now_ms + 60_000, "timestamp": now_ms}, secret, algorithm="HS256",
                      headers=header)
    assert call(good).status_code == 200


def test_unknown_model_and_over_limit_inputs(server):
    import openai

    client = openai_client(server)
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Hi"}])
    assert err.value.code == "1211"
    image = data_url(random_image(28, 28))
    too_many = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": image}}] * 51}]
    with pytest.raises(openai.BadRequestError, match="51 image_url parts") as err:
        client.chat.completions.create(model="glm-4.5v", messages=too_many)
    assert err.value.code == "1214"
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="glm-4.5v", messages=[{"role": "user", "content": "Hi"}],
                                       max_tokens=16385)
    assert err.value.code == "1214"
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="glm-4.5v", messages=[{"role": "user", "content": "star " * 3000}])
    assert err.value.code == "1261"
    with pytest.raises(openai.BadRequestError) as err:  # fits alone, not with max_tokens
        client.chat.completions.create(model="glm-4.5v", messages=[{"role": "user", "content": "star " * 1000}],
                                       max_tokens=2000)
    assert err.value.code == "1261"


def test_rate_limits(server):
    import openai

    client = openai_client(server, "slow")  # 2 requests per minute
    for _ in range(2):
        client.chat.completions.create(model="glm-4.5v", messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
    with pytest.raises(openai.RateLimitError) as err:
        client.chat.completions.create(model="glm-4.5v", messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
    assert err.value.code == "1303"

    single = openai_client(server, "single")  # one request at a time
    stream = single.chat.completions.create(model="glm-4.5v", messages=[{"role": "user", "content": "Hi"}],
                                            max_tokens=400, stream=True)
    next(iter(stream))
    with pytest.raises(openai.RateLimitError) as err:
        single.chat.completions.create(model="glm-4.5v", messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
    assert err.value.code == "1302"
    collect(stream)
    single.chat.completions.create(model="glm-4.5v", messages=[{"role": "user", "content": "Hi"}], max_tokens=2)


def test_official_curl_quick_start(server):
    """docs.z.ai's curl example with the host swapped: JSON, then SSE."""
    body = {"model": "glm-4.5v", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": data_url(random_image(56, 56))}},
        {"type": "text", "text": "Where is the second bottle of beer from the right on the table?"}]}],
        "thinking": {"type": "enabled"}}
    command = ["curl", "-sS", "-X", "POST", f"{server.url}/api/paas/v4/chat/completions",
               "-H", "Content-Type: application/json", "-H", f"Authorization: Bearer {server.keys['main']}",
               "-d", json.dumps({**body, "max_tokens": 10})]
    assert shutil.which("curl"), "curl is needed (the CI script installs it)"
    out = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
    assert out["choices"][0]["message"]["reasoning_content"] == REASONING
    command[-1] = json.dumps({**body, "max_tokens": 10, "stream": True})
    raw = subprocess.run(command + ["-N"], capture_output=True, text=True, check=True).stdout
    events = raw.split("\n\n")
    assert events[-1] == "" and events[-2] == "data: [DONE]"
    chunks = [json.loads(e[len("data: "):]) for e in events[:-2]]
    assert all(e.startswith("data: ") for e in events[:-1])
    assert chunks[-1]["choices"][0]["finish_reason"] == "length" and chunks[-1]["usage"]["completion_tokens"] == 10
    assert "finish_reason" not in chunks[0]["choices"][0] and chunks[0]["object"] == "chat.completion.chunk"


# -- bad input: a clear error each, the server keeps serving, every request leaves its usage row ---------

def test_bad_inputs_are_answered_and_recorded(server, tmp_path):
    url = f"{server.url}/api/paas/v4/chat/completions"
    auth = {"Authorization": f"Bearer {server.keys['main']}"}
    before = len(usage_rows(server))
    bomb = png_bytes(Image.new("L", (10000, 10000)))  # 100 MP of zeros in a few hundred KB
    cases = [
        (b"{not json", "1210"),
        (json.dumps([1, 2]).encode(), "1210"),
        (json.dumps({"messages": [{"role": "user", "content": "x"}]}).encode(), "1213"),
        (json.dumps({"model": "glm-4.5v", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}), "1210"),
        (json.dumps({"model": "glm-4.5v", "messages": [{"role": "user", "content": "x"}], "temperature": 1.5}), "1214"),
        (json.dumps({"model": "glm-4.5v", "messages": [{"role": "wizard", "content": "x"}]}), "1214"),
        (json.dumps({"model": "glm-4.5v", "messages": [{"role": "system", "content": "x"}]}), "1214"),
        (json.dumps({"model": "glm-4.5v", "messages": image_message("%%%not-base64%%%")}), "1214"),
        (json.dumps({"model": "glm-4.5v", "messages": image_message(base64.b64encode(bomb).decode())}), "1214"),
        (json.dumps({"model": "glm-4.5v", "messages": image_message("file:///etc/passwd")}), "1214"),
        (json.dumps({"model": "glm-4.5v", "messages": [{"role": "user", "content": [
            {"type": "file_url", "file_url": {"url": "data:application/pdf;base64,JVBERi0xLjQKYnJva2Vu"}}]}]}), "1214"),
        (json.dumps({"model": "glm-4.5v", "messages": [{"role": "user", "content": [  # files and images never mix
            {"type": "file_url", "file_url": {"url": "data:text/plain;base64,aGk="}},
            {"type": "image_url", "image_url": {"url": data_url(random_image(28, 28))}}]}]}), "1214"),
        (json.dumps({"model": "nope", "stream": True, "messages": [{"role": "user", "content": "x"}]}), "1211"),
    ]
    for body, code in cases:
        response = httpx.post(url, content=body, headers=auth)
        assert response.status_code == 400, (body[:80], response.text)
        error = response.json()["error"]
        assert error["code"] == code and error["message"], (body[:80], error)
    assert "pixel limit" in httpx.post(url, content=cases[8][0], headers=auth).json()["error"]["message"]
    # the client hangs up in the middle of a long stream: the generation stops and frees its blocks
    with httpx.stream("POST", url, headers=auth, json={"model": "glm-4.5v", "stream": True, "max_tokens": 1500,
                                                       "messages": [{"role": "user", "content": "Hi"}]}) as stream:
        lines = stream.iter_lines()
        assert next(lines).startswith("data: ")
    deadline = time.monotonic() + 20
    while (metric(server, "glmv_requests_running") or metric(server, "glmv_kv_cache_blocks_used")) \
            and time.monotonic() < deadline:
        time.sleep(0.1)
    assert metric(server, "glmv_requests_running") == 0 and metric(server, "glmv_kv_cache_blocks_used") == 0
    # the same for a plain (non-stream) request whose client gives up waiting
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(url, headers=auth, timeout=0.5, json={"model": "glm-4.5v", "max_tokens": 1900,
                                                         "messages": [{"role": "user", "content": "Hi"}]})
    deadline = time.monotonic() + 20
    while (metric(server, "glmv_requests_running") or len(usage_rows(server)) < before + len(cases) + 3) \
            and time.monotonic() < deadline:
        time.sleep(0.1)
    assert metric(server, "glmv_requests_running") == 0 and metric(server, "glmv_kv_cache_blocks_used") == 0
    time.sleep(0.5)
    rows = usage_rows(server)[before:]
    assert len(rows) == len(cases) + 3
    assert [r["error_code"] for r in rows[:len(cases)]] == [code for _, code in cases]
    assert rows[-2]["status"] == 499 and rows[-2]["completion_tokens"] < 1500
    assert rows[-1]["status"] == 499 and rows[-1]["completion_tokens"] < 1900
    ok = openai_client(server).chat.completions.create(model="glm-4.5v", messages=[{"role": "user", "content": "Hi"}],
                                                       max_tokens=3)
    assert ok.usage.completion_tokens == 3  # still serving


def test_default_server_refuses_private_urls_and_drains_on_shutdown(server, files, tmp_path):
    strict = start_server(scripted_checkpoint(tmp_path / "model"), tmp_path / "strict.db", "--api-key", "run.only")
    post = partial(httpx.post, f"{strict.url}/v1/chat/completions", headers={"Authorization": "Bearer run.only"})
    try:
        anonymous = httpx.post(f"{strict.url}/v1/chat/completions", json={"model": "glm-4.5v", "messages": [
            {"role": "user", "content": "Hi"}]})
        assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "1001"
        response = post(json={"model": "glm-4.5v", "messages": image_message(f"{files}/cat.png")})
        assert response.status_code == 400 and "not a public address" in response.json()["error"]["message"]
        for address in ("http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/x.png", "http://[::1]/x.png"):
            response = post(json={"model": "glm-4.5v", "messages": image_message(address)})
            assert response.json()["error"]["code"] == "1214", address
        # a request in flight when the server is told to stop still gets its whole answer
        answers = []
        request = threading.Thread(target=lambda: answers.append(post(timeout=60, json={
            "model": "glm-4.5v", "max_tokens": 1000, "messages": [{"role": "user", "content": "Hi"}]})))
        request.start()
        while not metric(strict, "glmv_requests_running"):
            time.sleep(0.02)
    finally:
        assert strict.stop(), strict.log.read_text()
    request.join()
    assert answers[0].status_code == 200 and answers[0].json()["usage"]["completion_tokens"] == 1000


# -- keys, usage, models, metrics, startup checks --------------------------------------------------------

def test_keys_usage_models_and_metrics(server):
    import openai

    listed = glmv("keys", "list", "--db", str(server.db))
    assert listed.returncode == 0 and all(k.split(".")[0] in listed.stdout for k in server.keys.values())
    with sqlite3.connect(server.db) as conn:  # only hashes are stored
        stored = " ".join(str(v) for row in conn.execute("select * from api_keys") for v in row)
    assert not any(k.split(".")[1] in stored for k in server.keys.values())
    client = openai_client(server, "revoked")
    client.chat.completions.create(model="glm-4.5v", messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
    assert glmv("keys", "revoke", server.keys["revoked"].split(".")[0], "--db", str(server.db)).returncode == 0
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="glm-4.5v", messages=[{"role": "user", "content": "Hi"}], max_tokens=2)

    report = glmv("usage", "--db", str(server.db))
    assert report.returncode == 0 and server.keys["main"].split(".")[0] in report.stdout
    rows = [r for r in usage_rows(server) if r["status"] == 200]
    assert rows and all(r["cost_usd"] > 0 for r in rows)
    r = rows[-1]
    assert r["cost_usd"] == pytest.approx(((r["prompt_tokens"] - r["cached_tokens"]) * 0.6
                                           + r["cached_tokens"] * 0.12 + r["completion_tokens"] * 1.8) / 1e6)

    names = [m.id for m in openai_client(server).models.list()]
    assert names == ["glm-4.5v", "scripted-glm"]
    text = httpx.get(f"{server.url}/metrics").text
    for name in ("glmv_requests_total", "glmv_completion_tokens_total", "glmv_request_latency_seconds_bucket",
                 "glmv_time_to_first_token_seconds_count", "glmv_requests_waiting", "glmv_kv_cache_usage"):
        assert name in text
    assert metric(server, "glmv_completion_tokens_total") > 0
    assert httpx.get(f"{server.url}/nowhere").json()["error"]["code"] == "404"


def test_refuses_open_public_interface_and_a_wrong_model_folder(tmp_path, moe_checkpoint):
    open_public = glmv("serve", "--model", str(tmp_path), "--host", "0.0.0.0", "--db", str(tmp_path / "empty.db"))
    assert open_public.returncode == 2 and "no API keys" in open_public.stderr
    no_model = glmv("serve", "--model", str(tmp_path / "missing"), "--db", str(tmp_path / "empty.db"))
    assert no_model.returncode == 2 and "missing/config.json not found" in no_model.stderr
    corrupt = shutil.copytree(moe_checkpoint, tmp_path / "corrupt")
    weights = (corrupt / "model.safetensors").read_bytes()
    (corrupt / "model.safetensors").write_bytes(weights[:len(weights) // 2])
    cut = glmv("serve", "--model", str(corrupt), "--db", str(tmp_path / "empty.db"))
    assert cut.returncode == 2 and "cannot read" in cut.stderr and "model.safetensors" in cut.stderr, cut.stderr
    assert "Traceback" not in cut.stderr
