"""GUI agent: the parsers on GLM-4.5V's mobile, desktop and web formats, and the web executor in real
Chromium on a local site, driven by an action script through the real CLI."""
import http.server
import json
import shutil
import threading
import urllib.parse

import pytest

from glmv.apps.agent_formats import ActionError, mobile_prompt, parse_mobile, parse_pc, parse_web, pc_prompt, web_prompt
from server_fixtures import glmv


def test_mobile_answers():
    action = parse_mobile('Memory: nothing yet\nReason: Settings holds Wi-Fi.\nAction: <|begin_of_box|>'
                          '{"action_type": "click", "box_2d": [[100,200,300,400]]}<|end_of_box|>')
    assert (action.kind, action.point, action.memory, action.thought) == ("click", (200, 300), "nothing yet",
                                                                         "Settings holds Wi-Fi.")
    assert action.pixel(1080, 2400) == (216, 720) and "<|begin_of_box|>" not in action.raw
    typed = parse_mobile('Memory: -\nReason: r\nAction: {"action_type": "input_text", "text": "hi", '
                         '"box_2d": [[0,0,10,10]], "override": true}')
    assert (typed.kind, typed.text, typed.args["override"]) == ("type", "hi", True)
    assert parse_mobile('Memory: -\nReason: r\nAction: {"action_type": "status", "goal_status": "complete"}').kind == "done"
    assert parse_mobile('Memory: -\nReason: r\nAction: {"action_type": "open_app", "app_name": "Clock"}').text == "Clock"
    with pytest.raises(ActionError):
        parse_mobile("I would tap the button.")


def test_desktop_answers():
    action = parse_pc("<think>The dialog is open.</think>I will confirm.\n<|begin_of_box|>left_click(start_box='[512,300]', "
                      "element_info='OK button')<|end_of_box|>\nMemory:\n[{\"dialog\": \"open\"}]")
    assert (action.kind, action.point, action.args["element_info"]) == ("click", (512, 300), "OK button")
    assert action.thought == "I will confirm." and action.memory == '[{"dialog": "open"}]'
    assert action.pixel(1920, 1080) == (983, 324)
    drag = parse_pc("<|begin_of_box|>left_drag(start_box='[10,20]', end_box='[300,400]', element_info='')<|end_of_box|>")
    assert (drag.kind, drag.point, drag.end) == ("drag", (10, 20), (300, 400))
    assert parse_pc("key(keys='ctrl+c')\nMemory:\n[]").text == "ctrl+c"
    assert parse_pc("<|begin_of_box|>type(content='hello, world')<|end_of_box|>").text == "hello, world"
    assert parse_pc("All done. <|begin_of_box|>DONE()<|end_of_box|>").kind == "done"
    assert parse_pc("scroll(start_box='[500,500]', direction='down', step=5, element_info='')").args["step"] == 5
    with pytest.raises(ActionError, match="unknown"):
        parse_pc("explode(start_box='[1,2]')")


def test_web_answers():
    typed = parse_web("Thought: The search box is 3.\nAction: Type [3]; [glmv engine]\nMemory_Updated: {\"q\": 1}")
    assert (typed.kind, typed.mark, typed.text, typed.memory) == ("type", 3, "glmv engine", '{"q": 1}')
    assert parse_web("Thought: t\nAction: Click [12]").mark == 12
    scroll = parse_web("Action: Scroll [WINDOW]; [down]")
    assert (scroll.kind, scroll.mark, scroll.text) == ("scroll", None, "down")
    assert parse_web("Action: Scroll [7]; [up]").mark == 7
    with pytest.raises(ActionError):
        parse_web("Action: Scroll [page]; [down]")
    assert parse_web("Thought: found\nAction: ANSWER; <content>42 stars</content>").text == "42 stars"
    assert parse_web("Action: GoBack").kind == "back" and parse_web("Action: Key; [Return]").text == "Return"
    with pytest.raises(ActionError):
        parse_web("Thought: hmm\nAction: Teleport [2]")


def test_prompts_carry_task_history_and_the_coordinate_rule():
    assert "thousandths (0-999)" in mobile_prompt("Open Wi-Fi", []) and "You just started" in mobile_prompt("x", [])
    assert "Step 1:\nclicked" in mobile_prompt("x", ["clicked"])
    assert "Ubuntu" in pc_prompt("x", []) and "left_click(start_box='[x,y]'" in pc_prompt("x", [])
    web = web_prompt("Find the price", [f"step{i}" for i in range(20)], ["input 'Search'", "a 'Next'"])
    assert "[0] input 'Search'\n[1] a 'Next'" in web and "step4" not in web and "step19" in web  # last 15 steps


@pytest.fixture
def site():
    visits = []

    class Site(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path != "/favicon.ico":
                visits.append(self.path)
            path = urllib.parse.urlsplit(self.path)
            if path.path == "/search":
                query = urllib.parse.parse_qs(path.query).get("q", [""])[0]
                body = f"<p>You searched {query}</p><a href='/more'>More results</a>"
            elif path.path == "/more":
                body = "<h1>The answer is 42</h1>"
            else:
                body = "<form action='/search'><input name='q' placeholder='Search'><button>Go</button></form>"
            data = f"<html><body style='font-size:24px'>{body}</body></html>".encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Site)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", visits
    server.shutdown()


SCRIPT = """Thought: I type the query into the search box.
Action: Type [0]; [hello glmv]
Memory_Updated: {}
---
Thought: Element 7 does not exist.
Action: Click [7]
Memory_Updated: {}
---
Thought: More results should hold it.
Action: Click [0]
Memory_Updated: {"searched": true}
---
Thought: The page says 42.
Action: ANSWER; <content>The answer is 42</content>
Memory_Updated: {}
"""


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium (apt-get install chromium)")
def test_the_web_agent_acts_on_a_real_page(site, tmp_path):
    url, visits = site
    (tmp_path / "script.txt").write_text(SCRIPT)
    out = glmv("agent", url, "Find the answer", "--script", str(tmp_path / "script.txt"), "--log-dir",
               str(tmp_path / "log"))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "The answer is 42"
    assert visits == ["/", "/search?q=hello+glmv", "/more"]  # typed, submitted with Enter, followed the link
    steps = [json.loads(line) for line in (tmp_path / "log" / "steps.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps] == [1, 2, 3, 4]
    assert "no element [7]" in steps[1]["error"] and steps[3]["action"]["kind"] == "answer"
    assert all((tmp_path / "log" / s["screenshot"]).stat().st_size > 1000 for s in steps)
    assert steps[2]["url"].endswith("/search?q=hello+glmv")

    visits.clear()
    dry = glmv("agent", url, "Find the answer", "--script", str(tmp_path / "script.txt"), "--dry-run",
               "--log-dir", str(tmp_path / "dry"))
    assert dry.returncode == 0 and "step 1: type [0] 'hello glmv'" in dry.stdout
    assert visits == ["/"]  # nothing was done to the page
    short = glmv("agent", url, "Find the answer", "--script", str(tmp_path / "script.txt"), "--max-steps", "1",
                 "--log-dir", str(tmp_path / "short"))
    assert short.returncode == 3 and "no answer within 1 steps" in short.stdout
