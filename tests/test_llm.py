"""The offline API: batches, thinking switch, reasoning split, sampling, limits."""
import pytest

from glmv import LLM, SamplingParams
from glmv.outputs.reasoning import split_reasoning


@pytest.fixture(scope="module")
def llm(moe_checkpoint):
    return LLM(moe_checkpoint, dtype="float32", progress=False)


def ask(text):
    return [{"role": "user", "content": text}]


def test_a_list_of_conversations_gives_a_list_of_outputs(llm):
    params = SamplingParams(temperature=0, max_tokens=6, ignore_eos=True)
    batch = llm.chat([ask("Hello, how are you?"), ask("Describe the image.")], params)
    assert isinstance(batch, list) and len(batch) == 2
    single = llm.chat(ask("Describe the image."), params)
    assert batch[1].token_ids == single.token_ids
    assert len(single.token_ids) == 6 and single.finish_reason == "length" and single.logprobs is None


def test_thinking_switch_changes_the_prompt(llm):
    on = llm.prompts.build(ask("Hello"), thinking=True)
    off = llm.prompts.build(ask("Hello"), thinking=False)
    assert on.text.endswith("Hello<|assistant|>")
    assert off.text.endswith("Hello/nothink<|assistant|>\n<think></think>\n")


def test_seeded_sampling_is_reproducible(llm):
    params = SamplingParams(temperature=1.0, top_p=0.9, top_k=50, max_tokens=12, seed=7, ignore_eos=True)
    a = llm.chat(ask("Tell me a story."), params)
    b = llm.chat(ask("Tell me a story."), params)
    c = llm.chat(ask("Tell me a story."), SamplingParams(temperature=1.0, max_tokens=12, seed=8, ignore_eos=True))
    assert a.token_ids == b.token_ids
    assert a.token_ids != c.token_ids


def test_stop_token_ends_the_answer(llm):
    greedy = llm.chat(ask("Hello"), SamplingParams(temperature=0, max_tokens=8, ignore_eos=True))
    stop = greedy.token_ids[3]
    out = llm.chat(ask("Hello"), SamplingParams(temperature=0, max_tokens=8, ignore_eos=True, stop_token_ids=[stop]))
    first = greedy.token_ids.index(stop)
    assert out.token_ids == greedy.token_ids[:first + 1] and out.finish_reason == "stop"
    assert out.text == llm.tokenizer.decode(greedy.token_ids[:first])


def test_context_limit_and_bad_params(llm):
    with pytest.raises(ValueError, match="exceeds the context"):
        llm.chat(ask("hi " * 4000), SamplingParams(max_tokens=200))
    with pytest.raises(ValueError, match="max_tokens"):
        SamplingParams(max_tokens=16385)
    with pytest.raises(ValueError, match="role"):
        llm.chat([{"role": "wizard", "content": "hi"}])
    with pytest.raises(ValueError, match="unsupported type"):
        llm.chat([{"role": "user", "content": [{"type": "audio_url", "audio_url": {"url": "x"}}]}])


@pytest.mark.parametrize("text, reasoning, content", [
    ("\n<think>Count the shapes.</think>\nThere are <|begin_of_box|>3<|end_of_box|>.",
     "Count the shapes.", "There are <|begin_of_box|>3<|end_of_box|>."),
    ("The answer is 4.", None, "The answer is 4."),
    ("\n<think>Still thinking when cut", "Still thinking when cut", ""),
    ("\n<think></think>\nDirect.", "", "Direct."),
    ("reasoning without an opening tag</think>answer", "reasoning without an opening tag", "answer"),
])
def test_split_reasoning(text, reasoning, content):
    assert split_reasoning(text) == (reasoning, content)
