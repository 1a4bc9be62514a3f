"""glmv against the transformers reference on tiny random checkpoints of both architectures."""
import numpy as np
import pytest
import torch

from glmv import LLM, SamplingParams
from glmv.bench.reference import hf_model
from media_files import random_image, write_video
from reference import prompt_logits, reference_inputs


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    root = tmp_path_factory.mktemp("media")
    random_image(200, 200, seed=1).save(root / "square.png")
    random_image(300, 130, seed=2).save(root / "wide.png")  # non-square grid: position interpolation
    write_video(root / "clip.mp4", frames=12, fps=4)  # 3 s at 4 fps -> 6 sampled frames -> 3 frame pairs
    return root


def conversations(media):
    image = lambda name: {"type": "image_url", "image_url": {"url": str(media / name)}}
    return {
        "text": [{"role": "user", "content": "Hello, how are you today?"}],
        "one_image": [{"role": "user", "content": [image("wide.png"), {"type": "text", "text": "What is this?"}]}],
        "two_images": [{"role": "system", "content": "Be brief."},
                       {"role": "user", "content": [image("square.png"), image("wide.png"),
                                                    {"type": "text", "text": "Compare the images."}]}],
        "video": [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": str(media / "clip.mp4")}},
                                               {"type": "text", "text": "Describe this video."}]}],
    }


@pytest.fixture(scope="module")
def llms(moe_checkpoint, dense_checkpoint):
    return {p: LLM(p, dtype="float32", progress=False) for p in (moe_checkpoint, dense_checkpoint)}


@pytest.fixture(scope="module")
def references(moe_checkpoint, dense_checkpoint):
    return {p: hf_model(p) for p in (moe_checkpoint, dense_checkpoint)}


@pytest.mark.parametrize("case", ["text", "one_image", "two_images", "video"])
def test_logits_match_reference(checkpoint, llms, references, media, case):
    llm, ref = llms[checkpoint], references[checkpoint]
    prompt = llm.prompts.build(conversations(media)[case])
    model = llm.model
    with torch.inference_mode():
        expected = ref(**reference_inputs(prompt, llm.config)).logits[0]
        features = None
        if prompt.media:
            features = model.encode_media(torch.cat([m.pixel_values for m in prompt.media]), [m.grid for m in prompt.media])
        logits = prompt_logits(model, prompt.token_ids, prompt.positions, features)
    assert logits.shape == expected.shape
    assert (logits - expected).abs().max().item() < 1e-4
    if case == "video":
        assert prompt.media[0].grid[0] == 3


@pytest.mark.parametrize("case", ["text", "two_images", "video"])
def test_greedy_generation_matches_reference(checkpoint, llms, references, media, case):
    llm, ref = llms[checkpoint], references[checkpoint]
    messages = conversations(media)[case]
    out = llm.chat(messages, SamplingParams(temperature=0, max_tokens=16, ignore_eos=True, logprobs=1))
    prompt = llm.prompts.build(messages)
    with torch.inference_mode():
        gen = ref.generate(**reference_inputs(prompt, llm.config), max_new_tokens=16, min_new_tokens=16,
                           do_sample=False, output_logits=True, return_dict_in_generate=True)
    expected = gen.sequences[0, len(prompt.token_ids):].tolist()
    assert out.token_ids == expected
    # The chosen tokens' log-probabilities match at every step, so decode positions are right too.
    ref_logprobs = [torch.log_softmax(s[0].float(), -1)[t].item() for s, t in zip(gen.logits, expected)]
    np.testing.assert_allclose(out.logprobs, ref_logprobs, atol=1e-4)
    assert out.text == llm.tokenizer.decode(out.token_ids)
