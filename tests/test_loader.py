"""Checkpoint loading: sharded files, dtypes, peak memory, and clear errors."""
import json
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file, save_file

from checkpoints import make_checkpoint
from reference import prompt_logits
from glmv.config import CheckpointError
from glmv.model.loader import load_model
from glmv.model.modeling import rope_positions


def text_logits(model, ids):
    positions, _ = rope_positions(ids, [], model.config)
    return prompt_logits(model, ids, positions)


def test_sharded_checkpoint_loads_like_a_single_file(moe_checkpoint, tmp_path):
    sharded = make_checkpoint(tmp_path / "sharded", "glm4v_moe", max_shard_size="100KB")
    index = json.loads((sharded / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 3
    ids = list(range(5, 40))
    with torch.inference_mode():
        a = text_logits(load_model(moe_checkpoint, "float32", progress=False), ids)
        b = text_logits(load_model(sharded, "float32", progress=False), ids)
    assert torch.equal(a, b)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_load(moe_checkpoint, dtype):
    model = load_model(moe_checkpoint, dtype, progress=False)
    assert model.lm_head.weight.dtype == dtype
    # The router's correction bias stays fp32, as the reference keeps it.
    assert model.model.language_model.layers[1].mlp.gate.e_score_correction_bias.dtype == torch.float32
    with torch.inference_mode():
        low = text_logits(model, list(range(5, 30)))
        full = text_logits(load_model(moe_checkpoint, "float32", progress=False), list(range(5, 30)))
    assert torch.isfinite(low).all()
    assert (low.argmax(-1) == full.argmax(-1)).float().mean() > 0.8


PEAK_SCRIPT = textwrap.dedent("""
    import json, sys
    import torch
    from glmv.config import ModelConfig
    from glmv.model.loader import load_model
    from glmv.model.modeling import GlmvForConditionalGeneration

    def status(key):  # kB -> bytes; VmHWM is this process's own peak (ru_maxrss would inherit the parent's)
        return next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith(key))

    with torch.device("meta"):  # warm torch's lazy imports so that they are not counted as the load's
        GlmvForConditionalGeneration(ModelConfig.from_pretrained(sys.argv[1]))
    before = status("VmRSS")
    model = load_model(sys.argv[1], "float32", progress=False)
    size = sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))
    print(json.dumps({"peak_increase": status("VmHWM") - before, "model_bytes": size}))
""")


def test_peak_memory_of_a_sharded_load_stays_near_model_size(tmp_path):
    big = {"hidden_size": 256, "moe_intermediate_size": 512, "n_routed_experts": 16, "num_hidden_layers": 5,
           "num_attention_heads": 8, "num_key_value_heads": 2}
    path = make_checkpoint(tmp_path / "big", "glm4v_moe", max_shard_size="20MB", text_overrides=big)
    shards = sorted(path.glob("model-*.safetensors"))
    largest_shard = max(f.stat().st_size for f in shards)
    out = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, str(path)], capture_output=True, text=True, check=True)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"\nload of {len(shards)} shards: model {report['model_bytes'] / 2**20:.1f} MiB, "
          f"peak RSS increase {report['peak_increase'] / 2**20:.1f} MiB, largest shard {largest_shard / 2**20:.1f} MiB")
    assert report["model_bytes"] > 60 * 2**20
    # A state-dict load needs twice the model; reading each tensor straight into place needs the model
    # alone, plus small one-tensor temporaries for the weights whose layout changes.
    assert report["peak_increase"] < report["model_bytes"] + 16 * 2**20


@pytest.fixture
def broken(moe_checkpoint, tmp_path):
    """A writable copy of the checkpoint to damage."""
    import shutil

    path = tmp_path / "broken"
    shutil.copytree(moe_checkpoint, path)
    return path


def edit_weights(path, edit):
    tensors = load_file(path / "model.safetensors")
    edit(tensors)
    save_file(tensors, path / "model.safetensors", metadata={"format": "pt"})


def test_missing_tensor_is_named(broken):
    edit_weights(broken, lambda t: t.pop("model.language_model.layers.2.mlp.experts.3.up_proj.weight"))
    with pytest.raises(CheckpointError, match=r"layers\.2\.mlp\.experts\.gate_up_proj"):
        load_model(broken, "float32", progress=False)


def test_unexpected_tensor_is_named(broken):
    edit_weights(broken, lambda t: t.__setitem__("model.language_model.extra.weight", torch.zeros(3)))
    with pytest.raises(CheckpointError, match=r"unexpected tensor 'model\.language_model\.extra\.weight'"):
        load_model(broken, "float32", progress=False)


def test_wrong_shape_is_named(broken):
    key = "model.language_model.layers.0.self_attn.k_proj.weight"
    edit_weights(broken, lambda t: t.__setitem__(key, torch.zeros(7, 64)))
    with pytest.raises(CheckpointError, match=r"k_proj\.weight' in model\.safetensors has shape \(7, 64\), expected \(64, 64\)"):
        load_model(broken, "float32", progress=False)


def test_multi_token_prediction_layer_is_skipped(broken):
    edit_weights(broken, lambda t: t.__setitem__("model.language_model.layers.3.eh_proj.weight", torch.zeros(4, 4)))
    load_model(broken, "float32", progress=False)


def test_unsupported_model_type(broken):
    config = json.loads((broken / "config.json").read_text())
    config["model_type"] = "qwen2_vl"
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="unsupported model_type 'qwen2_vl'"):
        load_model(broken, "float32", progress=False)


def test_corrupt_and_missing_files(broken):
    (broken / "model.safetensors").write_bytes(b"\x00\x01garbage" * 10)
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_model(broken, "float32", progress=False)
    (broken / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        load_model(broken, "float32", progress=False)
    with pytest.raises(CheckpointError, match="config.json not found"):
        load_model(broken / "nowhere", "float32", progress=False)


def test_missing_shard_is_named(tmp_path):
    path = make_checkpoint(tmp_path / "sharded", "glm4v", max_shard_size="200KB")
    victim = sorted(path.glob("model-*.safetensors"))[1]
    victim.unlink()
    with pytest.raises(CheckpointError, match=f"shard .*{victim.name} is missing"):
        load_model(path, "float32", progress=False)
