"""Load official GLM-V checkpoints (safetensors, single file or sharded) into glmv's model.

The model is built on the meta device and materialised once, in its final dtype and on its final
device; each checkpoint tensor is then read from its shard straight into its slot (a one-tensor
temporary only when the dtype, the device or the layout differs). Peak memory stays near the
model's own size. Checkpoint keys are the official ones;
fused parameters (qkv, gate_up, stacked experts) are filled slice by slice.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..config import CheckpointError, ModelConfig
from .modeling import GlmvForConditionalGeneration

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
FP32_BUFFERS = ("e_score_correction_bias",)

_LAYER = re.compile(r"^model\.language_model\.layers\.(\d+)\.")
_EXPERT = re.compile(r"^(.*\.mlp\.experts)\.(\d+)\.(gate|up|down)_proj\.weight$")
_QKV = re.compile(r"^(.*\.self_attn)\.(q|k|v)_proj\.(weight|bias)$")
_GATE_UP = re.compile(r"^(.*)\.(gate|up)_proj\.weight$")


@dataclass
class Slot:
    """Where a checkpoint tensor goes: a parameter (or buffer) name and an index into it."""
    name: str
    index: tuple = ()
    reshape: str | None = None  # "patch_embed" or "downsample": conv kernels stored as linears


def bundled_model() -> Path | None:
    """The small GLM-V model shipped inside the package (see its model card), if this build has it."""
    from importlib.resources import files

    path = Path(str(files("glmv").joinpath("assets/glmv-small")))
    return path if (path / "model.safetensors").is_file() else None


def model_or_bundled(model: str | Path | None) -> Path:
    """`model`, or the bundled small model when none is given (--model of every command)."""
    if model:
        return Path(model)
    path = bundled_model()
    if path is None:
        raise CheckpointError("no --model given, and this build of glmv lacks its bundled model "
                              "(glmv/assets/glmv-small): pass --model PATH to a GLM-V checkpoint folder")
    return path


def parse_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    return DTYPES[dtype]


def slot_for(key: str, config: ModelConfig, targets: dict[str, torch.Tensor]) -> Slot | None:
    """Map an official checkpoint key to its place among the model's tensors; None for keys to skip."""
    cfg = config.text
    layer = _LAYER.match(key)
    if layer and int(layer.group(1)) >= cfg.num_hidden_layers:
        return None  # multi-token-prediction layers (model.language_model.layers.46.*): not used for decoding
    if m := _EXPERT.match(key):
        prefix, expert, part = m.group(1), int(m.group(2)), m.group(3)
        inter = cfg.moe_intermediate_size
        if part == "down":
            return Slot(f"{prefix}.down_proj", (expert,))
        return Slot(f"{prefix}.gate_up_proj", (expert, slice(0, inter) if part == "gate" else slice(inter, 2 * inter)))
    if m := _QKV.match(key):
        q, kv = cfg.num_attention_heads * cfg.head_dim, cfg.num_key_value_heads * cfg.head_dim
        rows = {"q": slice(0, q), "k": slice(q, q + kv), "v": slice(q + kv, q + 2 * kv)}[m.group(2)]
        return Slot(f"{m.group(1)}.qkv_proj.{m.group(3)}", (rows,))
    if m := _GATE_UP.match(key):
        name = f"{m.group(1)}.gate_up_proj.weight"
        if name not in targets:
            return Slot(key)  # reported as unexpected
        half = targets[name].shape[0] // 2
        return Slot(name, (slice(0, half) if m.group(2) == "gate" else slice(half, 2 * half),))
    if key == "model.visual.patch_embed.proj.weight":
        return Slot(key, reshape="patch_embed")
    if key == "model.visual.downsample.weight":
        return Slot(key, reshape="downsample")
    return Slot(key)


def _reshape(tensor: torch.Tensor, how: str | None) -> torch.Tensor:
    if how == "patch_embed":  # Conv3d [out, C, T, p, p] -> Linear [out, C*T*p*p]
        return tensor.reshape(tensor.shape[0], -1)
    if how == "downsample":  # Conv2d [out, C, m, m] -> Linear over (row, col, channel) [out, m*m*C]
        return tensor.permute(0, 2, 3, 1).reshape(tensor.shape[0], -1)
    return tensor


def checkpoint_files(path: Path) -> list[Path]:
    index = path / "model.safetensors.index.json"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError) as exc:
            raise CheckpointError(f"{index} is not a valid safetensors index: {exc}") from exc
        files = [path / name for name in sorted(set(weight_map.values()))]
    elif (path / "model.safetensors").is_file():
        files = [path / "model.safetensors"]
    else:
        raise CheckpointError(f"no model.safetensors or model.safetensors.index.json in {path}")
    for f in files:
        if not f.is_file():
            raise CheckpointError(f"checkpoint shard {f} is missing")
    return files


def load_model(path: str | Path, dtype: str | torch.dtype = "bfloat16", device: str | torch.device = "cpu",
               progress: bool = True) -> GlmvForConditionalGeneration:
    path = Path(path)
    dtype, device = parse_dtype(dtype), torch.device(device)
    config = ModelConfig.from_pretrained(path)
    files = checkpoint_files(path)

    with torch.device("meta"):
        model = GlmvForConditionalGeneration(config)
    model.to(dtype)
    for name, buf in model.named_buffers():
        if name.endswith(FP32_BUFFERS):
            buf.data = buf.data.float()
    model.to_empty(device=device)
    model.eval().requires_grad_(False)

    targets = dict(model.named_parameters()) | dict(model.named_buffers())
    filled = {name: 0 for name in targets}
    headers = {f: read_header(f) for f in files}
    bar = tqdm(total=sum(len(h) for h in headers.values()), desc=f"Loading {path.name}", unit="tensor",
               disable=not progress)
    for f, header in headers.items():
        with open(f, "rb") as handle:
            for key, entry in header.items():
                _load_tensor(model, targets, filled, key, entry, handle, f)
                bar.update(1)
    bar.close()

    if config.tie_word_embeddings and filled["lm_head.weight"] == 0:
        model.lm_head.weight = model.model.language_model.embed_tokens.weight
        filled["lm_head.weight"] = model.lm_head.weight.numel()
    missing = [name for name, count in filled.items() if count != targets[name].numel()]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks tensors for: {', '.join(missing[:10])}"
                              + (f" and {len(missing) - 10} more" if len(missing) > 10 else ""))
    return model


SAFETENSORS_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64,
                      "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
                      "BOOL": torch.bool}


@dataclass
class TensorEntry:
    dtype: torch.dtype
    shape: tuple
    start: int  # absolute byte offset in the file
    nbytes: int


def read_header(file: Path) -> dict[str, TensorEntry]:
    """The tensor table of a safetensors file, checked against the file's size."""
    size = file.stat().st_size
    with open(file, "rb") as f:
        prefix = f.read(8)
        n = int.from_bytes(prefix, "little") if len(prefix) == 8 else -1
        if n <= 0 or 8 + n > size:
            raise CheckpointError(f"cannot read {file}: not a safetensors file (bad header length)")
        try:
            raw = json.loads(f.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"cannot read {file}: header is not valid JSON") from exc
    entries = {}
    for key, info in raw.items():
        if key == "__metadata__":
            continue
        try:
            dtype = SAFETENSORS_DTYPES[info["dtype"]]
            begin, end = info["data_offsets"]
            shape = tuple(info["shape"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"cannot read {file}: bad entry for tensor {key!r}") from exc
        nbytes = int(np.prod(shape, dtype=np.int64)) * torch.empty((), dtype=dtype).element_size()
        if end - begin != nbytes or 8 + n + end > size:
            raise CheckpointError(f"cannot read {file}: tensor {key!r} lies outside the file or has the wrong size")
        entries[key] = TensorEntry(dtype, shape, 8 + n + begin, nbytes)
    return entries


def _read(handle, entry: TensorEntry, out: torch.Tensor | None = None) -> torch.Tensor:
    """Read a tensor's bytes, into `out` when given (CPU, contiguous, same dtype and shape): no temporary."""
    if out is None:
        out = torch.empty(entry.shape, dtype=entry.dtype)
    handle.seek(entry.start)
    if entry.nbytes and handle.readinto(memoryview(out.view(torch.uint8).reshape(-1).numpy())) != entry.nbytes:
        raise CheckpointError(f"cannot read {handle.name}: file ends early")
    return out


def _load_tensor(model, targets, filled, key, entry: TensorEntry, handle, file):
    slot = slot_for(key, model.config, targets)
    if slot is None:
        return
    if slot.name not in targets:
        raise CheckpointError(f"unexpected tensor {key!r} in {file.name}: not part of a {model.config.model_type} model")
    dest = targets[slot.name].data[slot.index] if slot.index else targets[slot.name].data
    shape = entry.shape if slot.reshape is None else tuple(_reshape(torch.empty(entry.shape, device="meta"), slot.reshape).shape)
    if tuple(dest.shape) != shape:
        raise CheckpointError(f"tensor {key!r} in {file.name} has shape {entry.shape}, "
                              f"expected {tuple(dest.shape)} from config.json")
    direct = (slot.reshape is None and dest.device.type == "cpu" and dest.dtype == entry.dtype
              and dest.is_contiguous())
    if direct:
        _read(handle, entry, dest)  # straight from the file into the model's memory
    else:
        dest.copy_(_reshape(_read(handle, entry), slot.reshape))
    filled[slot.name] += dest.numel()
