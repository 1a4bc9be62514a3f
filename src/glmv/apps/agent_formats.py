"""GLM-4.5V's GUI-agent formats: the prompts for mobile, desktop and web, and parsers for the answers.

Conventions the official agent examples follow:
- all history goes into one user turn, with the current screenshot;
- coordinates are thousandths of the screenshot (0-999), often wrapped in box tokens, which the
  parsers strip before anything else (and before an answer is put back into the history);
- mobile answers `Memory: / Reason: / Action: {json}`; desktop answers a thought, an action call
  such as `left_click(start_box='[x,y]')`, then `Memory:`; web answers `Thought: / Action: /
  Memory_Updated:` with actions on numbered marks (`Click [3]`, `Type [5]; text`).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from ..outputs.boxes import BOX_END, BOX_START

COORDINATES = "The coordinates involved are all represented in thousandths (0-999)."

MOBILE_ACTIONS = """\
{"action_type": "click", "box_2d": [[xmin, ymin, xmax, ymax]]}  tap the element in the box
{"action_type": "long_press", "box_2d": [[xmin, ymin, xmax, ymax]]}  press and hold the element
{"action_type": "input_text", "text": "...", "box_2d": [[...]], "override": true}  type into the field (override replaces its text)
{"action_type": "swipe", "direction": "up|down|left|right", "box_2d": [[...]]}  swipe, in the box if given
{"action_type": "keyboard_enter"}  press enter
{"action_type": "navigate_home"}  go to the home screen
{"action_type": "navigate_back"}  go back
{"action_type": "open_app", "app_name": "..."}  open an app by name
{"action_type": "wait"}  wait for the screen to settle
{"action_type": "answer", "text": "..."}  answer the user
{"action_type": "status", "goal_status": "complete|infeasible"}  stop: the task is done or cannot be done"""

PC_ACTIONS = """\
left_click(start_box='[x,y]', element_info='')
right_click(start_box='[x,y]', element_info='')
middle_click(start_box='[x,y]', element_info='')
hover(start_box='[x,y]', element_info='')
left_double_click(start_box='[x,y]', element_info='')
left_drag(start_box='[x1,y1]', end_box='[x2,y2]', element_info='')
key(keys='ctrl+c')  keys joined with +
type(content='')  types only: it neither focuses nor clears a field
scroll(start_box='[x,y]', direction='down|up', step=5, element_info='')
WAIT()  wait 5 seconds
DONE()  the task is done
FAIL()  the task cannot be done"""

WEB_ACTIONS = """\
Click [N]  click the element with mark N
Type [N]; [text]  type text into field N (it is cleared first and Enter is pressed after)
Scroll [N or WINDOW]; [up or down]  scroll an element or the whole window
Wait  wait a few seconds
GoBack  go back to the previous page
Key; [Return]  press a key
ANSWER; <content>...</content>  finish with the answer"""


def mobile_prompt(task: str, history: list[str]) -> str:
    steps = "\n".join(f"Step {i + 1}:\n{h}" for i, h in enumerate(history)) or \
        "You just started, no action has been performed yet."
    return (f"You are a mobile GUI agent. {COORDINATES}\n\n# Task:\n{task}\n\n# Task Platform\nMobile\n\n"
            f"# Action Space\n{MOBILE_ACTIONS}\nCall exactly one action per step.\n\n"
            f"# Historical Actions and Current Memory\n{steps}\n\n"
            "# Output Format\nMemory: what to remember for later steps\nReason: why this action\n"
            "Action: one action as JSON")


def pc_prompt(task: str, history: list[str], memory: str = "[]") -> str:
    steps = "\n".join(f"step {i + 1}: {h}" for i, h in enumerate(history)) or "none yet"
    return (f"You are a desktop GUI agent. {COORDINATES}\n\n# Task:\n{task}\n\n# Task Platform\nUbuntu\n\n"
            f"# Action Space\n{PC_ACTIONS}\n\n# History\n{steps}\n\nMemory:\n{memory}\n\n"
            "# Output Format\nPlain text explanation with action(param='...')\nMemory:\n[{\"key\": \"value\"}, ...]\n\n"
            "Current Screenshot:")


def web_prompt(task: str, history: list[str], marks: list[str], memory: str = "{}") -> str:
    """marks: a short description of each numbered element, in mark order."""
    elements = "\n".join(f"[{i}] {m}" for i, m in enumerate(marks)) or "(no marked elements)"
    steps = "\n".join(f"Step {i + 1}: {h}" for i, h in enumerate(history[-15:])) or "none yet"
    return (f"You are a web browsing agent. The screenshot shows numbered marks on the interactive elements.\n\n"
            f"# Task:\n{task}\n\n# Action Space\n{WEB_ACTIONS}\n\n# Marked elements\n{elements}\n\n"
            f"# History\n{steps}\n\nMemory: {memory}\n\n"
            "# Output Format\nThought: your reasoning\nAction: one action\nMemory_Updated: a JSON object")


@dataclass
class Action:
    kind: str  # click, long_press, type, swipe, scroll, key, hover, drag, wait, back, home, open_app, answer, done, fail
    point: tuple[float, float] | None = None  # thousandths
    end: tuple[float, float] | None = None  # drag target, thousandths
    mark: int | None = None  # web: the element's number
    text: str = ""
    args: dict = field(default_factory=dict)
    thought: str = ""
    memory: str = ""
    raw: str = ""  # the answer with its box tokens removed
    written: str = ""  # the action as the model wrote it (box tokens removed): what the history repeats

    def pixel(self, width: int, height: int, which: str = "point") -> tuple[int, int] | None:
        """A point in thousandths (0-999) as pixels of a width x height screenshot."""
        value = getattr(self, which)
        if value is None:
            return None
        return (min(width - 1, max(0, round(value[0] * width / 1000))),
                min(height - 1, max(0, round(value[1] * height / 1000))))


class ActionError(ValueError):
    pass


def strip_boxes(text: str) -> str:
    # agent.md spells one of them <|start_of_box|>; accept it too
    return text.replace(BOX_START, "").replace(BOX_END, "").replace("<|start_of_box|>", "")


def _after_think(text: str) -> str:
    return text.split("</think>")[-1]


def _centre(box) -> tuple[float, float]:
    box = box[0] if box and isinstance(box[0], (list, tuple)) else box
    if len(box) == 2:
        return float(box[0]), float(box[1])
    x1, y1, x2, y2 = (float(v) for v in box)
    return (x1 + x2) / 2, (y1 + y2) / 2


def parse_mobile(answer: str) -> Action:
    text = strip_boxes(_after_think(answer))
    m = re.search(r"Memory:(.*?)Reason:(.*?)Action:(.*)", text, re.S)
    if not m:
        raise ActionError("no 'Memory: ... Reason: ... Action: ...' in the answer")
    memory, reason, action_text = (part.strip() for part in m.groups())
    start, end = action_text.find("{"), action_text.rfind("}")
    try:
        action = json.loads(action_text[start:end + 1])
    except json.JSONDecodeError as exc:
        raise ActionError(f"the action is not JSON: {action_text[:200]}") from exc
    kind = action.get("action_type")
    names = {"input_text": "type", "navigate_back": "back", "navigate_home": "home", "keyboard_enter": "key",
             "status": "done" if action.get("goal_status") == "complete" else "fail"}
    point = _centre(action["box_2d"]) if action.get("box_2d") else None
    text_arg = action.get("text") or action.get("app_name") or ("Enter" if kind == "keyboard_enter" else "")
    return Action(names.get(kind, kind), point, text=text_arg,
                  args={k: v for k, v in action.items() if k not in ("action_type", "box_2d", "text")},
                  thought=reason, memory=memory, raw=text.strip(), written=action_text[start:end + 1])


_CALL = re.compile(r"([a-zA-Z_]+)\((.*?)\)\s*(?:$|\n|Memory:)", re.S)
_KWARG = re.compile(r"(\w+)\s*=\s*'((?:[^'\\]|\\.)*)'|(\w+)\s*=\s*(\d+)")


def parse_pc(answer: str) -> Action:
    body = _after_think(answer)
    boxed = re.search(re.escape(BOX_START) + r"(.*?)" + re.escape(BOX_END), body, re.S)
    text = strip_boxes(body)
    source = boxed.group(1) if boxed else text
    call = _CALL.search(source + "\n") or re.search(r"([\w_]+)\(([^)]*)\)", source)
    if not call:
        raise ActionError("no action call such as left_click(start_box='[x,y]') in the answer")
    name, arguments = call.group(1), call.group(2)
    kwargs = {m.group(1) or m.group(3): (m.group(2) if m.group(1) else int(m.group(4))) for m in _KWARG.finditer(arguments)}
    written = call.group(0).split("Memory:")[0].strip()
    thought, _, memory = text.partition("Memory:")
    thought = thought.replace(written, "").strip()

    def point(key):
        if key not in kwargs:
            return None
        numbers = [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?", str(kwargs[key]))]
        return _centre(numbers) if len(numbers) in (2, 4) else None

    kind = {"left_click": "click", "right_click": "right_click", "middle_click": "middle_click", "hover": "hover",
            "left_double_click": "double_click", "left_drag": "drag", "key": "key", "type": "type",
            "scroll": "scroll", "WAIT": "wait", "DONE": "done", "FAIL": "fail"}.get(name)
    if kind is None:
        raise ActionError(f"unknown desktop action {name!r}")
    text_arg = kwargs.get("content") or kwargs.get("keys") or kwargs.get("direction") or ""
    return Action(kind, point("start_box"), point("end_box"), text=str(text_arg), args=kwargs, thought=thought,
                  memory=memory.strip(), raw=text.strip(), written=written)


def parse_web(answer: str) -> Action:
    text = strip_boxes(_after_think(answer))
    thought = re.search(r"Thought:(.*?)(?:Action:|$)", text, re.S)
    memory = re.search(r"Memory_Updated:(.*)$", text, re.S)
    action = re.search(r"Action:(.*?)(?:Memory_Updated:|$)", text, re.S)
    if not action:
        raise ActionError("no 'Action:' in the answer")
    line = action.group(1).strip()
    common = dict(thought=thought.group(1).strip() if thought else "", memory=memory.group(1).strip() if memory else "",
                  raw=text.strip(), written=line)
    if m := re.match(r"Click\s*\[?(\d+)\]?", line, re.I):
        return Action("click", mark=int(m.group(1)), **common)
    if m := re.match(r"Type\s*\[?(\d+)\]?\s*;\s*\[?(.*?)\]?$", line, re.I | re.S):
        return Action("type", mark=int(m.group(1)), text=m.group(2), **common)
    if m := re.match(r"Scroll\s*\[?(\d+|WINDOW)\]?\s*;\s*\[?(up|down)\]?", line, re.I):
        target = m.group(1)
        return Action("scroll", mark=None if target.upper() == "WINDOW" else int(target), text=m.group(2).lower(),
                      **common)
    if m := re.match(r"ANSWER\s*;\s*(.*)$", line, re.I | re.S):
        content = re.search(r"<content>(.*?)</content>", m.group(1), re.S)
        return Action("answer", text=(content.group(1) if content else m.group(1)).strip(), **common)
    if m := re.match(r"Key\s*;\s*\[?(\w+)\]?", line, re.I):
        return Action("key", text=m.group(1), **common)
    if re.match(r"Wait", line, re.I):
        return Action("wait", **common)
    if re.match(r"GoBack", line, re.I):
        return Action("back", **common)
    raise ActionError(f"unknown web action {line[:80]!r}")
