"""The engine against the transformers reference: continuous batching, chunked prefill, prefix
caching, preemption, cancellation, and the allocator back at zero after every test."""
import asyncio

import pytest
import torch

from glmv import SamplingParams
from glmv.bench.reference import hf_model
from glmv.engine.async_llm import AsyncLLM, QueueFullError
from glmv.engine.config import EngineConfig
from glmv.engine.llm_engine import LLMEngine
from media_files import random_image, write_video
from reference import reference_inputs

GREEDY = dict(temperature=0, ignore_eos=True)


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    root = tmp_path_factory.mktemp("engine_media")
    random_image(200, 200, seed=11).save(root / "a.png")
    random_image(300, 130, seed=12).save(root / "b.png")
    random_image(140, 250, seed=13).save(root / "c.png")
    write_video(root / "clip.mp4", frames=12, fps=4)
    return root


def image(path):
    return {"type": "image_url", "image_url": {"url": str(path)}}


def conversations(media):
    return [
        [{"role": "user", "content": "Hello, how are you today?"}],
        [{"role": "user", "content": [image(media / "a.png"), {"type": "text", "text": "What is this?"}]}],
        [{"role": "system", "content": "Be brief."},
         {"role": "user", "content": [image(media / "b.png"), image(media / "c.png"),
                                      {"type": "text", "text": "Compare the images in detail."}]}],
        [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": str(media / "clip.mp4")}},
                                      {"type": "text", "text": "Describe this video."}]}],
        [{"role": "user", "content": "Tell me the position of the blue star. " * 6}],
    ]


MAX_TOKENS = [9, 12, 7, 10, 14]


def make_engine(path, **options):
    return LLMEngine(path, EngineConfig(dtype="float32", progress=False, **options))


@pytest.fixture(scope="module")
def engine(moe_checkpoint):
    # A small token budget so that prompts with images are prefilled in several chunks.
    return make_engine(moe_checkpoint, max_num_batched_tokens=48, block_size=8)


@pytest.fixture(autouse=True)
def no_leaked_blocks(request):
    yield
    for name in ("engine", "tiny_engine"):
        if name in request.fixturenames:
            eng = request.getfixturevalue(name)
            assert eng.block_manager.num_used == 0, "KV blocks leaked"
            assert not eng.has_unfinished() and not eng.requests


@pytest.fixture(scope="module")
def expected(moe_checkpoint, engine, media):
    """The reference's greedy tokens for each conversation, one request at a time."""
    ref = hf_model(moe_checkpoint)
    out = []
    with torch.inference_mode():
        for conv, n in zip(conversations(media), MAX_TOKENS):
            prompt = engine.prompts.build(conv)
            gen = ref.generate(**reference_inputs(prompt, engine.model_config), max_new_tokens=n, min_new_tokens=n,
                               do_sample=False)
            out.append(gen[0, len(prompt.token_ids):].tolist())
    return out


def run(engine, arrivals):
    """arrivals: {step: [(prompt, params)]}: requests join at those steps; -> outputs in arrival order."""
    seqs, step = [], 0
    while step <= max(arrivals) or engine.has_unfinished():
        for prompt, params in arrivals.get(step, []):
            seqs.append(engine.add_request(prompt, params))
        engine.step()
        step += 1
    return [engine.output(s) for s in seqs]


def test_mixed_batch_with_late_arrivals_matches_reference(engine, media, expected):
    prompts = [engine.prompts.build(c) for c in conversations(media)]
    params = [SamplingParams(max_tokens=n, **GREEDY) for n in MAX_TOKENS]
    pairs = list(zip(prompts, params))
    # Two start together, two join while those decode, the last joins mid-way.
    outputs = run(engine, {0: pairs[:2], 3: pairs[2:4], 6: pairs[4:]})
    assert [o.token_ids for o in outputs] == expected
    assert all(o.finish_reason == "length" for o in outputs)


def test_prefix_cache_reuses_the_prompt_and_the_image(engine, media, expected):
    conv = conversations(media)[2]  # two images
    params = SamplingParams(max_tokens=MAX_TOKENS[2], **GREEDY)
    hits_before = engine.runner.encoder_cache.hits
    first = run(engine, {0: [(engine.prompts.build(conv), params)]})[0]
    again = run(engine, {0: [(engine.prompts.build(conv), params)]})[0]
    prompt_len = len(again.prompt_token_ids)
    assert again.token_ids == first.token_ids == expected[2]
    # All full blocks but the one holding the last prompt token come from the cache.
    assert again.cached_tokens == (prompt_len - 1) // 8 * 8 > 0
    # Same text, another first image: the cache stops where the images start.
    other = [conv[0], {"role": "user", "content": [image(media / "a.png"), *conv[1]["content"][1:]]}]
    prompt = engine.prompts.build(other)
    out = run(engine, {0: [(prompt, params)]})[0]
    first_image = prompt.token_ids.index(engine.model_config.image_token_id)
    assert 0 < out.cached_tokens <= first_image
    # The second image's features came from the encoder cache, not the vision tower.
    assert engine.runner.encoder_cache.hits > hits_before


def test_preemption_under_a_tiny_kv_budget_matches_reference(moe_checkpoint, media, expected):
    cfg = make_engine(moe_checkpoint).model_config.text
    block_bytes = 2 * cfg.num_hidden_layers * 8 * cfg.num_key_value_heads * cfg.head_dim * 4
    tiny = make_engine(moe_checkpoint, block_size=8, kv_cache_memory=40 * block_bytes, max_num_batched_tokens=64)
    assert tiny.block_manager.num_blocks == 40  # fewer than the five requests need together
    prompts = [tiny.prompts.build(c) for c in conversations(media)]
    params = [SamplingParams(max_tokens=n, **GREEDY) for n in MAX_TOKENS]
    outputs = run(tiny, {0: list(zip(prompts, params))})
    assert tiny.scheduler.num_preemptions > 0
    assert [o.token_ids for o in outputs] == expected
    assert tiny.block_manager.num_used == 0
    with pytest.raises(ValueError, match="KV blocks"):
        tiny.check(prompts[0], SamplingParams(max_tokens=400))


def test_seeded_sampling_is_reproducible_whatever_runs_beside_it(engine, media):
    prompts = [engine.prompts.build(c) for c in conversations(media)]
    seeded = SamplingParams(temperature=1.0, top_p=0.9, top_k=50, max_tokens=12, seed=7, ignore_eos=True)
    alone = run(engine, {0: [(prompts[1], seeded)]})[0]
    noisy = SamplingParams(temperature=1.0, max_tokens=12, ignore_eos=True)
    together = run(engine, {0: [(prompts[0], noisy), (prompts[1], seeded), (prompts[4], noisy)]})[1]
    other_seed = run(engine, {0: [(prompts[1], SamplingParams(temperature=1.0, top_p=0.9, top_k=50, max_tokens=12,
                                                             seed=8, ignore_eos=True))]})[0]
    assert alone.token_ids == together.token_ids
    assert alone.token_ids != other_seed.token_ids


def test_stop_string_across_tokens_and_streamed_text(engine, media):
    prompt = engine.prompts.build(conversations(media)[0])
    full = run(engine, {0: [(prompt, SamplingParams(max_tokens=24, **GREEDY))]})[0]
    pieces = [engine.tokenizer.decode([t]) for t in full.token_ids]
    # A stop string made of the end of one token and the start of the next.
    i = next(i for i in range(3, len(pieces) - 1) if pieces[i] and pieces[i + 1] and "\ufffd" not in pieces[i] + pieces[i + 1])
    stop = pieces[i][-1] + pieces[i + 1][0]
    cut = full.text.find(stop)
    seq = engine.add_request(prompt, SamplingParams(max_tokens=24, stop=[stop], **GREEDY))
    streamed = []
    while engine.has_unfinished():
        streamed += [u.text for u in engine.step()]
    out = engine.output(seq)
    assert out.finish_reason == "stop" and out.text == full.text[:cut]
    assert "".join(streamed) == out.text and stop not in "".join(streamed)
    assert out.token_ids == full.token_ids[:len(out.token_ids)]


def test_logprobs_with_top_alternatives(engine, media):
    prompt = engine.prompts.build(conversations(media)[1])
    out = run(engine, {0: [(prompt, SamplingParams(max_tokens=5, logprobs=3, **GREEDY))]})[0]
    assert len(out.logprobs) == len(out.top_logprobs) == 5
    for token, logprob, top in zip(out.token_ids, out.logprobs, out.top_logprobs):
        assert len(top) == 3 and [v for _, v in top] == sorted((v for _, v in top), reverse=True)
        assert top[0][0] == token and top[0][1] == pytest.approx(logprob)  # greedy picks the most likely


def test_thinking_budget_forces_the_end_of_thinking(engine):
    prompt = engine.prompts.build([{"role": "user", "content": "Count the shapes."}])
    think, end = engine.think_start, engine.think_end
    # A prompt that leaves the model inside <think>, as a template that opens it would.
    prompt.token_ids = prompt.token_ids + [think]
    prompt.positions = torch.cat([prompt.positions, prompt.positions[:, -1:] + 1], dim=1)
    params = SamplingParams(max_tokens=8, max_thinking_tokens=3, stop_token_ids=[end], **GREEDY)
    out = run(engine, {0: [(prompt, params)]})[0]
    assert out.token_ids[3] == end and len(out.token_ids) == 4 and out.finish_reason == "stop"


def test_async_stream_cancel_frees_blocks_and_others_finish(moe_checkpoint, media):
    llm = AsyncLLM(moe_checkpoint, EngineConfig(dtype="float32", progress=False, max_num_seqs=2,
                                                max_queued_requests=1))
    prompts = [llm.engine.prompts.build(c) for c in conversations(media)]
    long = SamplingParams(max_tokens=200, **GREEDY)

    async def scenario():
        async def collect(prompt, params):
            return [u async for u in llm.generate(prompt, params)]

        stream = llm.generate(prompts[1], long)
        first = [await stream.__anext__() for _ in range(3)]
        other = asyncio.create_task(collect(prompts[0], SamplingParams(max_tokens=6, **GREEDY)))
        queued = asyncio.create_task(collect(prompts[4], SamplingParams(max_tokens=4, **GREEDY)))
        await asyncio.sleep(0)
        with pytest.raises(QueueFullError):  # 2 running + 1 queued is the limit
            await collect(prompts[2], long)
        await stream.aclose()  # the client went away
        updates, queued_updates = await other, await queued
        await llm.idle()
        return first, updates, queued_updates

    try:
        first, updates, queued_updates = asyncio.run(scenario())
        assert all(not u.finished for u in first)
        assert updates[-1].finished and updates[-1].output_tokens == 6
        assert queued_updates[-1].finished and queued_updates[-1].finish_reason == "length"
        assert llm.engine.block_manager.num_used == 0 and not llm.engine.requests
    finally:
        llm.shutdown()


def sequence(engine, output_ids, **params):
    from glmv.engine.sequence import Sequence

    prompt = engine.prompts.build([{"role": "user", "content": "Hello"}])
    seq = Sequence("s", prompt, SamplingParams(**params), set(), None,
                   generator=torch.Generator().manual_seed(0))
    seq.output_ids = list(output_ids)
    return seq


def test_penalties_move_the_choice(engine):
    from glmv.engine.sampler import sample

    vocab = engine.model_config.text.vocab_size
    in_prompt = set(sequence(engine, []).token_ids)
    a, b, c = [t for t in range(vocab) if t not in in_prompt][:3]
    logits = torch.zeros(1, vocab)
    logits[0, a], logits[0, b], logits[0, c] = 3.0, 2.5, 1.0
    plain = sample(logits, [sequence(engine, [a, a], temperature=0)], [None])
    assert plain.token_ids == [a]
    # frequency: 3.0 - 2 * 0.4 = 2.2 < 2.5
    freq = sample(logits, [sequence(engine, [a, a], temperature=0, frequency_penalty=0.4)], [None])
    assert freq.token_ids == [b]
    # presence counts once: 3.0 - 0.4 = 2.6 > 2.5
    pres = sample(logits, [sequence(engine, [a, a], temperature=0, presence_penalty=0.4)], [None])
    assert pres.token_ids == [a]
    # repetition divides a positive logit: 3.0 / 2 = 1.5 < 2.5
    rep = sample(logits, [sequence(engine, [a], temperature=0, repetition_penalty=2.0)], [None])
    assert rep.token_ids == [b]
    # the raw log-probabilities are reported, not the penalised ones
    lp = sample(logits, [sequence(engine, [a], temperature=0, repetition_penalty=2.0, logprobs=0)], [None])
    assert lp.logprobs[0] == pytest.approx(logits.log_softmax(-1)[0, b].item())


def test_top_k_and_top_p_truncate(engine):
    from glmv.engine.sampler import sample

    logits = torch.full((1, 300), -30.0)
    logits[0, 10], logits[0, 11], logits[0, 12] = 2.0, 1.9, 1.8
    for seed in range(20):
        seq = sequence(engine, [], temperature=1.0, top_k=2)
        seq.generator.manual_seed(seed)
        assert sample(logits, [seq], [None]).token_ids[0] in (10, 11)
        seq = sequence(engine, [], temperature=1.0, top_p=0.3)
        seq.generator.manual_seed(seed)
        assert sample(logits, [seq], [None]).token_ids == [10]


def test_streamed_text_never_breaks_a_character(engine):
    from glmv.engine.detokenizer import Detokenizer

    text = "Count: 三个红色圆形 🔴🔴🔴 and <|begin_of_box|>3<|end_of_box|> done."
    ids = engine.tokenizer.encode(text)
    detok = Detokenizer(engine.tokenizer, [])
    deltas = []
    for token in ids:
        detok.add(token)
        deltas.append(detok.delta(finished=False))
    deltas.append(detok.delta(finished=True))
    assert "".join(deltas) == engine.tokenizer.decode(ids) == text
    assert not any("\ufffd" in d for d in deltas)
