"""Training: targets only where the assistant speaks, both JSONL forms, batches equal to one-by-one
forwards, a loss that really falls, exact resume, official-format checkpoints, the CLI."""
import json
import random

import pytest
import torch
from safetensors.torch import load_file

from glmv.bench.reference import hf_model
from glmv.inputs.media import MediaLimits
from glmv.inputs.prompt import PromptBuilder
from glmv.model.loader import load_model
from glmv.outputs.boxes import BOX_END
from glmv.training.data import (IGNORE, Batches, ExampleError, JsonlSource, SyntheticSource, collate, encode,
                                 read_jsonl)
from glmv.training.recipe import init_weights
from glmv.training.synthetic import make_sample
from glmv.training.trainer import RowAttention, TrainConfig, batch_loss, learning_rate, train
from reference import prompt_logits
from server_fixtures import glmv


def write_dataset(root, n, seed=0, form="openai"):
    """n synthetic conversations as PNG files and a JSONL that refers to them by relative path."""
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        sample = make_sample(rng, ("counting", "colour", "reading")[i % 3])
        sample.image.save(root / f"img{i}.png")
        reply = sample.messages(thinking=i % 2 == 0)[1]["content"]
        question = sample.messages(thinking=i % 2 == 0)[0]["content"][1]["text"]
        if form == "openai":
            user = {"role": "user", "content": [{"type": "image_url", "image_url": {"url": f"img{i}.png"}},
                                                {"type": "text", "text": question}]}
            lines.append({"messages": [user, {"role": "assistant", "content": reply}]})
        else:
            lines.append({"messages": [{"role": "user", "content": f"<image>{question}"},
                                       {"role": "assistant", "content": reply}], "images": [f"img{i}.png"]})
    path = root / f"{form}.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    return path


@pytest.fixture(scope="module")
def builder(moe_checkpoint):
    return PromptBuilder.from_pretrained(moe_checkpoint)


def target_text(builder, example):
    return builder.tokenizer.decode([t for t in example.targets if t != IGNORE])


def test_targets_cover_exactly_the_assistant_turns(builder, tmp_path):
    image = make_sample(random.Random(0), "counting").image
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": "How many?"}]},
        {"role": "assistant", "content": "<think>I count them.</think>There are 3."},
        {"role": "user", "content": "And now?/nothink"},
        {"role": "assistant", "content": "<think></think>Still 3."},
    ]
    example = encode(builder, messages)
    assert target_text(builder, example) == ("\n<think>I count them.</think>\nThere are 3.<|user|>"
                                             "\n<think></think>\nStill 3.<|user|>")
    # every target is the next token, and no target points into the prompt or the image
    for t, target in enumerate(example.targets):
        if target != IGNORE:
            assert example.token_ids[t + 1] == target
    assert example.token_ids[-1] == builder.tokenizer.token_id("<|user|>")
    assert example.positions.shape == (3, len(example))
    with pytest.raises(ExampleError, match="no assistant"):
        encode(builder, messages[:2])


def test_synthetic_scenes_are_asked_several_questions_over_one_image(builder):
    source = SyntheticSource(builder, seed=0, weights={"grounding": 1.0, "counting": 1.0}, questions=3)
    turns = []
    for i in range(12):
        example = source.example(i)
        assert len(example.media) == 1  # the image is sent once, with the first question
        answers = target_text(builder, example).split("<|user|>")[:-1]
        turns.append(len(answers))
        assert answers[0].rstrip().endswith(BOX_END), answers  # a grounding or counting question comes first
        assert all(answer.count("</think>") == 1 and answer.split("</think>")[1].strip() for answer in answers)
    assert set(turns) == {1, 2, 3}


def test_both_jsonl_forms_give_the_same_examples(moe_checkpoint, tmp_path):
    builder = PromptBuilder.from_pretrained(moe_checkpoint, MediaLimits(allow_local_files=False))
    openai = JsonlSource(builder, write_dataset(tmp_path, 4, form="openai"), seed=0)
    marked = JsonlSource(builder, write_dataset(tmp_path, 4, form="images"), seed=0)
    assert not builder.limits.allow_local_files  # training reads local files; the builder it was given still does not
    for i in range(4):
        a, b = openai.example(i), marked.example(i)
        assert a.token_ids == b.token_ids and a.targets == b.targets
        assert torch.equal(a.media[0].pixel_values, b.media[0].pixel_values)


def test_bad_jsonl_lines_are_named(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n{not json\n')
    with pytest.raises(ExampleError, match="bad.jsonl:2"):
        read_jsonl(bad)
    bad.write_text('{"messages": [{"role": "user", "content": "<image>hi"}], "images": ["a.png", "b.png"]}\n')
    with pytest.raises(ExampleError, match="bad.jsonl:1: more files"):
        read_jsonl(bad)


def test_a_padded_batch_gives_each_row_its_own_logits(moe_checkpoint, builder, tmp_path):
    """The training forward (rows right-padded into one batch) equals one plain forward per example."""
    model = load_model(moe_checkpoint, dtype="float32", progress=False)
    source = JsonlSource(builder, write_dataset(tmp_path, 3), seed=0)
    examples = [source.example(i) for i in range(3)]
    assert len({len(e) for e in examples}) > 1
    batch = collate(examples, pad_id=0)
    with torch.no_grad():
        features = model.encode_media(batch.pixel_values, batch.grids)
        hidden = model(model.embed(batch.input_ids, features), batch.positions, RowAttention(batch.rows, batch.length))
        logits = model.compute_logits(hidden).view(batch.rows, batch.length, -1)
        for row, e in enumerate(examples):
            own = model.encode_media(torch.cat([m.pixel_values for m in e.media]), [m.grid for m in e.media])
            expected = prompt_logits(model, e.token_ids, e.positions, own)
            assert (logits[row, :len(e)] - expected).abs().max() < 1e-4


def test_learning_rate_warms_up_then_decays_to_the_floor():
    cfg = TrainConfig(steps=100, lr=1e-3, warmup=10, min_lr_ratio=0.1)
    assert learning_rate(0, cfg) == pytest.approx(1e-4) and learning_rate(9, cfg) == pytest.approx(1e-3)
    rates = [learning_rate(s, cfg) for s in range(10, 100)]
    assert all(a >= b for a, b in zip(rates, rates[1:])) and rates[-1] == pytest.approx(1e-4, rel=0.01)


@pytest.fixture
def one_thread():
    """Several CPU threads sum in varying order (drift about 1e-4 after 12 steps); one thread is exact."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_training_lowers_the_loss_and_a_resumed_run_ends_where_the_whole_run_does(moe_checkpoint, builder, tmp_path,
                                                                                  one_thread):
    data = write_dataset(tmp_path, 8, seed=3)
    cfg = TrainConfig(steps=24, batch_size=4, lr=3e-3, warmup=2, save_every=12, seed=0)

    def batches():
        return Batches(JsonlSource(builder, data, seed=0), cfg.batch_size, pad_id=0, seed=0, max_length=4096, pool=2)

    def loss_on_data(path):
        model = load_model(path, dtype="float32", progress=False)
        with torch.no_grad():
            return sum(batch_loss(model, b, torch.device("cpu")).item() for b in batches().pool_batches(0)) / 2

    whole = train(moe_checkpoint, batches(), cfg, tmp_path / "run", progress=False)
    assert loss_on_data(whole) < 0.7 * loss_on_data(moe_checkpoint)
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 25)) and all(r["tokens_per_s"] > 0 for r in log)
    weights = load_file(whole / "model.safetensors")
    # interrupted after the checkpoint at step 12: resume finishes the same run
    (whole / "model.safetensors").unlink()
    resumed = train(moe_checkpoint, batches(), cfg, tmp_path / "run", resume=True, progress=False)
    again = load_file(resumed / "model.safetensors")
    drift = max((weights[k] - again[k]).abs().max().item() for k in weights)
    assert drift < 1e-6, drift
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["step-12"]


def test_a_zero_vision_rate_freezes_the_tower(moe_checkpoint, builder, tmp_path, one_thread):
    data = write_dataset(tmp_path, 4, seed=5)
    batches = Batches(JsonlSource(builder, data, seed=0), 2, pad_id=0, seed=0, max_length=4096, pool=2)
    final = train(moe_checkpoint, batches, TrainConfig(steps=2, batch_size=2, lr=1e-2, warmup=1, vision_lr_ratio=0),
                  tmp_path / "run", progress=False)
    before, after = load_file(moe_checkpoint / "model.safetensors"), load_file(final / "model.safetensors")
    moved = {name for name in before if not torch.equal(before[name], after[name])}
    assert moved and not any("visual" in name for name in moved)


def test_a_trained_checkpoint_loads_in_transformers_with_the_same_logits(moe_checkpoint, builder, tmp_path):
    """init_weights + save_model write the official format: the reference reads it unchanged."""
    from glmv.model.saver import save_model
    from glmv.training.trainer import save_model_folder

    model = load_model(moe_checkpoint, dtype="float32", progress=False)
    init_weights(model, seed=1, std=0.1)
    save_model_folder(model, tmp_path / "fresh", moe_checkpoint)
    reloaded = load_model(tmp_path / "fresh", dtype="float32", progress=False)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), reloaded.state_dict().values()))
    ref = hf_model(tmp_path / "fresh")
    example = encode(builder, [{"role": "user", "content": "How many?"}, {"role": "assistant", "content": "Two."}])
    with torch.no_grad():
        expected = ref(input_ids=torch.tensor([example.token_ids])).logits[0]
        got = prompt_logits(model, example.token_ids, example.positions)
    assert (got - expected).abs().max() < 1e-4
    save_model(model, tmp_path / "half", torch.bfloat16)
    assert load_file(tmp_path / "half" / "model.safetensors")["lm_head.weight"].dtype == torch.bfloat16


def test_glmv_train_cli_fine_tunes_from_jsonl(moe_checkpoint, tmp_path):
    data = write_dataset(tmp_path, 4, form="images")
    out = glmv("train", str(data), "--model", str(moe_checkpoint), "--out", str(tmp_path / "cli"), "--steps", "2",
               "--batch-size", "2", "--eval-data", str(data))
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1])["validation_loss"] > 0
    assert (tmp_path / "cli" / "final" / "tokenizer.json").is_file()
    missing = glmv("train", str(data), "--out", str(tmp_path / "x"))
    assert missing.returncode == 2 and "--model" in missing.stderr
    broken = tmp_path / "broken.jsonl"
    broken.write_text("{oops\n")
    failed = glmv("train", str(broken), "--model", str(moe_checkpoint), "--out", str(tmp_path / "y"))
    assert failed.returncode == 1 and "broken.jsonl:1" in failed.stderr
