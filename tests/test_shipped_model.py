"""The model glmv ships: inside the package, small, in the official format, and really answering,
through the real server and the real CLI, about scenes drawn fresh for each test."""
import json
import random
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from glmv import LLM
from glmv.bench.reference import hf_model
from glmv.model.loader import bundled_model
from glmv.outputs.boxes import boxed, parse_boxes
from glmv.sampling_params import SamplingParams
from glmv.training.evaluate import score
from glmv.training.synthetic import make_sample
from media_files import data_url
from reference import prompt_logits, reference_inputs
from server_fixtures import glmv, start_server

MODEL = bundled_model()
# A little under the shipped model's own score on these 12 scenes (6 right in both modes; a constant
# answer of 1 gets 3). Its boxes do not follow the image yet (IoU 0.04 on its card), so grounding is
# checked for well-formed boxes only, until a model that places them ships.
COUNTING_RIGHT = 5
pytestmark = pytest.mark.skipif(MODEL is None, reason="this build carries no bundled model yet (issue 5)")


def scenes(task, n, seed="ci"):
    """Held out from training (which draws from "{seed}:{index}") and from the model card's evaluation."""
    return [make_sample(random.Random(f"{seed}:{task}:{i}"), task) for i in range(n)]


def test_the_model_ships_inside_the_package_with_its_card():
    assert MODEL is not None and MODEL.parent.name == "assets"
    assert sum(f.stat().st_size for f in MODEL.iterdir()) <= 25_000_000
    config = json.loads((MODEL / "config.json").read_text())
    assert config["model_type"] == "glm4v_moe" and config["text_config"]["n_routed_experts"] > 1
    card = (MODEL / "README.md").read_text()
    assert "glmv train --recipe small" in card and "glmv eval" in card
    assert json.loads((MODEL / "eval.json").read_text())["modes"]["direct"]["counting"]["score"] > 0


def test_it_is_an_official_checkpoint_the_reference_runs_alike():
    llm = LLM(MODEL, dtype="float32", progress=False)
    sample = make_sample(random.Random("parity"), "grounding")
    prompt = llm.prompts.build([{"role": "user", "content": [{"type": "image", "image": sample.image},
                                                             {"type": "text", "text": sample.question}]}])
    with torch.inference_mode():
        expected = hf_model(MODEL)(**reference_inputs(prompt, llm.config)).logits[0]
        media = prompt.media[0]
        features = llm.model.encode_media(media.pixel_values, [media.grid])
        got = prompt_logits(llm.model, prompt.token_ids, prompt.positions, features)
    assert (got - expected).abs().max() < 1e-3


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = start_server(None, tmp_path_factory.mktemp("shipped") / "glmv.db", "--dtype", "bfloat16")
    yield srv
    assert srv.stop(), srv.log.read_text()


def ask(server, samples, thinking):
    from openai import OpenAI

    client = OpenAI(api_key="local", base_url=f"{server.url}/v1", max_retries=0)

    def one(sample):
        reply = client.chat.completions.create(
            model="glmv-small", temperature=0, max_tokens=300,
            messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": data_url(sample.image)}},
                                                   {"type": "text", "text": sample.question}]}],
            extra_body={"thinking": {"type": "enabled" if thinking else "disabled"}})
        return reply.choices[0].message

    with ThreadPoolExecutor(8) as pool:  # concurrent requests: the engine batches them
        return list(pool.map(one, samples))


@pytest.mark.parametrize("thinking", [False, True], ids=["direct", "thinking"])
def test_grounding_and_counting_on_fresh_scenes_through_the_server(server, thinking):
    grounding, counting = scenes("grounding", 12), scenes("counting", 12)
    boxes = ask(server, grounding, thinking)
    counts = ask(server, counting, thinking)
    for m in boxes:  # GLM-4.5V's form: 0-1000 boxes between the box tokens
        found = parse_boxes(m.content)
        assert m.content.startswith("<|begin_of_box|>") and m.content.endswith("<|end_of_box|>"), m.content
        assert found and all(0 <= x1 < x2 <= 1000 and 0 <= y1 < y2 <= 1000 for x1, y1, x2, y2 in found), m.content
    right = sum(score(s, m.content) for s, m in zip(counting, counts))
    assert right >= COUNTING_RIGHT, [(s.answer, m.content) for s, m in zip(counting, counts)]
    if thinking:  # the reasoning comes apart from the answer
        assert all(m.reasoning_content and "<think>" not in m.content for m in counts + boxes)


def test_glmv_chat_uses_the_shipped_model_by_default(tmp_path):
    """No --model: the CLI answers as the bundled model does in-process (greedy, both bfloat16)."""
    sample = scenes("counting", 1, seed="cli")[0]
    sample.image.save(tmp_path / "scene.png")
    out = glmv("chat", "-i", str(tmp_path / "scene.png"), "--no-thinking", sample.question)
    assert out.returncode == 0, out.stderr
    expected = LLM(MODEL, dtype="bfloat16", progress=False).chat(
        [[{"role": "user", "content": [{"type": "image", "image": sample.image}, {"type": "text", "text": sample.question}]}]],
        SamplingParams(temperature=0, max_tokens=1024), thinking=False)[0].content
    assert boxed(expected) and out.stdout.strip() == expected.strip(), (expected, out.stdout)


def test_glmv_eval_scores_the_model_and_measures_how_much_its_answers_rest_on_the_image(tmp_path):
    out = glmv("eval", "--samples", "4", "--task", "counting", "--task", "colour", "--thinking", "off",
               "--json", str(tmp_path / "eval.json"))
    assert out.returncode == 0, out.stderr
    report = json.loads((tmp_path / "eval.json").read_text())
    assert list(report["modes"]) == ["direct"] and set(report["modes"]["direct"]) == {"counting", "colour"}
    assert all(0 <= r["score"] <= 1 for r in report["modes"]["direct"].values())
    reliance = report["image_reliance"]
    assert set(reliance) == {"counting", "colour"} and all(r["own_image"] > 0 for r in reliance.values())
    # Its colour answers come from the image (2.2 against 5.7 nats on the card's 30 scenes; 2.9 against
    # 5.4 on these 4): with another scene's picture the right colour is much less likely.
    assert reliance["colour"]["own_image"] < reliance["colour"]["other_image"] - 1, reliance
    assert "another image" in out.stdout and "| colour |" in out.stdout
