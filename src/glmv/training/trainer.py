"""Supervised fine-tuning of a GLM-V checkpoint.

The model is glmv's own (model/modeling.py), trained in fp32 master weights (bf16 autocast on GPU).
A batch is right-padded rows flattened to [B * L] tokens, so the model's `attend` hook is plain
causal attention per row. AdamW with linear warm-up and cosine decay, gradient clipping, and the
loss-free expert balancing of GLM-4.5 (each router's correction bias is nudged towards an even
load, no auxiliary loss). Checkpoints are complete model folders plus the optimizer state; batch k
is fixed by the seed (data.Batches), so a resumed run continues the run it resumes.
"""
from __future__ import annotations

import json
import math
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..model.loader import load_model
from ..model.modeling import GlmvForConditionalGeneration, Router
from ..model.saver import save_model
from .data import IGNORE, Batch, Batches

SIDE_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "preprocessor_config.json",
              "video_preprocessor_config.json", "processor_config.json", "generation_config.json")


@dataclass
class TrainConfig:
    steps: int
    batch_size: int = 16
    lr: float = 1e-4
    vision_lr_ratio: float = 1.0  # the vision tower's learning rate is lr times this
    min_lr_ratio: float = 0.1  # the cosine ends at lr * min_lr_ratio
    warmup: int = 100
    weight_decay: float = 0.05
    clip: float = 1.0
    balance_rate: float = 1e-3  # step of the routers' correction bias per training step
    seed: int = 0
    save_every: int = 500
    keep: int = 2  # checkpoints kept besides the final model
    max_length: int = 4096
    device: str = "cpu"
    bf16: bool = False  # autocast to bfloat16 (GPU)


class RowAttention:
    """Causal attention within each padded row of a [B, L] batch (padding sits at the end of a row,
    after every real token, so no mask is needed)."""

    def __init__(self, rows: int, length: int):
        self.rows, self.length = rows, length

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        q, k, v = (t.view(self.rows, self.length, t.shape[1], t.shape[2]).transpose(1, 2) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        return out.transpose(1, 2).reshape(self.rows * self.length, out.shape[1], out.shape[3])


def batch_loss(model: GlmvForConditionalGeneration, batch: Batch, device: torch.device) -> torch.Tensor:
    """Mean cross-entropy over the batch's target tokens; logits only for the rows that have one."""
    ids, targets = batch.input_ids.to(device), batch.targets.to(device)
    features = model.encode_media(batch.pixel_values, batch.grids) if batch.grids else None
    hidden = model(model.embed(ids, features), batch.positions.to(device), RowAttention(batch.rows, batch.length))
    keep = targets != IGNORE
    return F.cross_entropy(model.compute_logits(hidden[keep]), targets[keep])


def learning_rate(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


class ExpertLoad:
    """Counts how many tokens each router sends to each expert during a step (a forward hook)."""

    def __init__(self, model: torch.nn.Module):
        self.routers = [m for m in model.modules() if isinstance(m, Router)]
        self.counts = [torch.zeros(r.cfg.n_routed_experts) for r in self.routers]
        for router, count in zip(self.routers, self.counts):
            router.register_forward_hook(self._counter(count))

    @staticmethod
    def _counter(count: torch.Tensor):
        def hook(_module, _inputs, output) -> None:
            count.add_(torch.bincount(output[1].flatten().cpu(), minlength=count.numel()))
        return hook

    def balance(self, rate: float) -> None:
        """Raise the bias of under-loaded experts and lower it for over-loaded ones, then reset."""
        for router, count in zip(self.routers, self.counts):
            if count.sum() > 0:
                bias = router.e_score_correction_bias
                bias.add_(rate * torch.sign(count.mean() - count).to(bias.device))
            count.zero_()


def optimizer_for(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """Matrices decay, vectors do not; the vision tower may learn at its own pace (lr_scale)."""
    groups = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            key = (p.dim() >= 2, name.startswith("model.visual."))
            groups.setdefault(key, []).append(p)
    return torch.optim.AdamW([{"params": params, "weight_decay": cfg.weight_decay if decay else 0.0,
                               "lr_scale": cfg.vision_lr_ratio if visual else 1.0}
                              for (decay, visual), params in groups.items()], lr=cfg.lr, betas=(0.9, 0.95), eps=1e-8)


def checkpoints(out: Path) -> list[Path]:
    """The checkpoint folders under `out`, oldest first."""
    return sorted((out / "checkpoints").glob("step-*"), key=lambda p: int(p.name[len("step-"):]))


def latest_checkpoint(out: Path) -> Path | None:
    complete = [c for c in checkpoints(out) if (c / "trainer_state.pt").is_file()]
    return complete[-1] if complete else None


def save_model_folder(model, folder: Path, source_model: Path) -> None:
    """The weights (in the model's dtype) plus the source checkpoint's tokenizer, template and processor files."""
    save_model(model, folder)
    for name in SIDE_FILES:
        if (source_model / name).is_file():
            shutil.copy(source_model / name, folder / name)


def save_checkpoint(model, optimizer, step: int, cfg: TrainConfig, source_model: Path, folder: Path) -> None:
    """A complete model folder, then the optimizer state last: a folder without trainer_state.pt
    (an interrupted save) is never resumed from."""
    save_model_folder(model, folder, source_model)
    tmp = folder / "trainer_state.pt.tmp"
    torch.save({"step": step, "optimizer": optimizer.state_dict(), "config": asdict(cfg)}, tmp)
    tmp.replace(folder / "trainer_state.pt")


def train(model_path: str | Path, batches: Batches, cfg: TrainConfig, out: str | Path, resume: bool = False,
          progress: bool = True) -> Path:
    """Train from `model_path` (or the last checkpoint under `out` with resume) for cfg.steps steps;
    the final model lands in out/final, a checkpoint folder like any other."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    source_model, start = Path(model_path), 0
    resume_from = latest_checkpoint(out) if resume else None
    device = torch.device(cfg.device)
    model = load_model(resume_from or source_model, dtype="float32", device=device, progress=False)
    model.train().requires_grad_(True)
    if cfg.vision_lr_ratio == 0:  # a frozen tower needs no backward pass through it
        model.model.visual.requires_grad_(False)
    optimizer = optimizer_for(model, cfg)
    if resume_from is not None:
        state = torch.load(resume_from / "trainer_state.pt", map_location=device, weights_only=True)
        optimizer.load_state_dict(state["optimizer"])
        start = state["step"]
    load = ExpertLoad(model)
    bar = tqdm(total=cfg.steps, initial=start, desc="training", unit="step", disable=not progress)
    # line-buffered: the log can be followed while the run goes on; the next pool is prepared meanwhile
    with open(out / "train_log.jsonl", "a", buffering=1) as log, ThreadPoolExecutor(max_workers=1) as prefetch:
        size, pool_index, pool = batches.pool, None, []
        upcoming = prefetch.submit(batches.pool_batches, start // size)
        for step in range(start, cfg.steps):
            if step // size != pool_index:
                pool_index = step // size
                pool = upcoming.result()
                more = (pool_index + 1) * size < cfg.steps
                upcoming = prefetch.submit(batches.pool_batches, pool_index + 1) if more else None
            batch = pool[step % size]
            if batch is None or batch.num_targets == 0:
                bar.update(1)
                continue
            began = time.perf_counter()
            lr = learning_rate(step, cfg)
            for group in optimizer.param_groups:
                group["lr"] = lr * group["lr_scale"]
            with torch.autocast(device.type, torch.bfloat16, enabled=cfg.bf16):
                loss = batch_loss(model, batch, device)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            load.balance(cfg.balance_rate)
            seconds = time.perf_counter() - began
            tokens = int((batch.input_ids != batches.pad_id).sum())
            record = {"step": step + 1, "loss": round(loss.item(), 4), "lr": lr, "grad_norm": round(float(grad_norm), 3),
                      "tokens": tokens, "tokens_per_s": round(tokens / seconds, 1)}
            log.write(json.dumps(record) + "\n")
            bar.set_postfix(loss=f"{record['loss']:.3f}", tok_s=f"{record['tokens_per_s']:.0f}", lr=f"{lr:.2e}")
            bar.update(1)
            if (step + 1) % cfg.save_every == 0 and step + 1 < cfg.steps:
                save_checkpoint(model, optimizer, step + 1, cfg, source_model, out / "checkpoints" / f"step-{step + 1}")
                for old in checkpoints(out)[:-cfg.keep]:
                    shutil.rmtree(old)
    bar.close()
    save_model_folder(model, out / "final", source_model)
    return out / "final"
