"""Reasoning and tool-call parsing, whole and streamed (the streamed form must add up to the whole)."""
import json
import random

import pytest

from glmv.outputs.reasoning import ReasoningStream, split_reasoning
from glmv.outputs.tool_calls import ToolCallStream, parse_tool_calls

ANSWERS = [
    "\n<think>Let me look.\nThe star is blue.</think>\nThe answer is <|begin_of_box|>[1,2,3,4]<|end_of_box|>",
    "<think></think>\nPlain answer",
    "No thinking at all",
    "\n<think>cut off by max_tokens, still thinking",
    "  \n  <think>a</think>b</think>c",
    "<thi not a tag",
]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {
    "city": {"type": "string"}, "days": {"type": "integer"}, "units": {"type": "object"}}}}}]


def stream_split(text: str, cuts: list[int], thinking: bool = False) -> tuple[str, str]:
    stream, reasoning, content, prev = ReasoningStream(thinking), [], [], 0
    for i, cut in enumerate(cuts + [len(text)]):
        r, c = stream.feed(text[prev:cut], final=i == len(cuts))
        reasoning.append(r)
        content.append(c)
        prev = cut
    return "".join(reasoning), "".join(content)


@pytest.mark.parametrize("text", ANSWERS)
def test_streamed_reasoning_adds_up_to_the_whole(text):
    reasoning, content = split_reasoning(text)
    rng = random.Random(0)
    for _ in range(50):  # every way of cutting the text into deltas, including inside the tags
        cuts = sorted(rng.sample(range(1, len(text)), min(len(text) - 1, rng.randint(1, 8))))
        r, c = stream_split(text, cuts)
        assert r.strip() == (reasoning or "") and c.strip() == content


def test_prompt_that_opens_thinking():
    assert stream_split("all reasoning</think>answer", [3, 17], thinking=True) == ("all reasoning", "answer")


def test_tool_calls_are_parsed_with_typed_arguments():
    text = ("I will check.\n<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Paris</arg_value>\n"
            "<arg_key>days</arg_key>\n<arg_value>3</arg_value>\n<arg_key>units</arg_key>\n"
            "<arg_value>{\"t\": \"C\"}</arg_value>\n</tool_call>\n<tool_call>get_weather\n<arg_key>city</arg_key>\n"
            "<arg_value>42</arg_value>\n</tool_call>")
    content, calls = parse_tool_calls(text, TOOLS)
    assert content == "I will check."
    assert [c.name for c in calls] == ["get_weather", "get_weather"]
    assert json.loads(calls[0].arguments) == {"city": "Paris", "days": 3, "units": {"t": "C"}}
    assert json.loads(calls[1].arguments) == {"city": "42"}  # a string parameter stays a string
    assert calls[0].id != calls[1].id and calls[0].to_dict(0)["type"] == "function"


def test_text_without_calls_is_unchanged():
    assert parse_tool_calls("just text <tool", TOOLS) == ("just text <tool", [])


def test_tool_call_stream_holds_the_calls_back():
    text = "Sure<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Rome</arg_value>\n</tool_call>"
    for cut in range(1, len(text)):
        stream = ToolCallStream(TOOLS)
        shown = stream.feed(text[:cut]) + stream.feed(text[cut:])
        rest, calls = stream.finish()
        assert shown + rest == "Sure"
        assert json.loads(calls[0].arguments) == {"city": "Rome"}
    stream = ToolCallStream(TOOLS)
    assert stream.feed("a <tool") == "a " and stream.finish() == ("<tool", [])
    assert ToolCallStream(None).feed("<tool_call>x") == "<tool_call>x"  # no tools: nothing is parsed
