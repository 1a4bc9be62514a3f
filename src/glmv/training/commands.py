"""`glmv train` and `glmv eval`."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from .recipe import Recipe
from .synthetic import TASKS

RECIPE = Recipe()
FINETUNE_LR = 2e-5


def _train(args: argparse.Namespace) -> int:
    from ..config import CheckpointError
    from ..inputs.prompt import PromptBuilder
    from .data import Batches, ExampleError, JsonlSource, SyntheticSource
    from .recipe import create_small_model
    from .trainer import TrainConfig, train

    if bool(args.recipe) == bool(args.data):
        print("glmv train: give a JSONL file of conversations, or --recipe small (the synthetic world)", file=sys.stderr)
        return 2
    if not args.recipe and not args.model:
        print("glmv train: --model PATH (the checkpoint to fine-tune) is needed with a JSONL file", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    out = Path(args.out)
    began = time.perf_counter()
    model = Path(args.model) if args.model else out / "init"
    if args.recipe and not args.model:
        if not (model / "model.safetensors").is_file():
            print(f"creating the small model in {model}", file=sys.stderr)
            create_small_model(model, args.seed)
        if args.vision_steps:
            from .vision_pretrain import pretrain_vision

            done = out / "vision" / "vision_pretrain.json"  # a finished stage of the same length is reused
            if not done.is_file() or json.loads(done.read_text())["steps"] != args.vision_steps:
                pretrain_vision(model, out / "vision", args.vision_steps, args.batch_size, RECIPE.vision_lr, args.seed)
            model = out / "vision"
    lr = args.lr if args.lr is not None else (RECIPE.lr if args.recipe else FINETUNE_LR)
    vision_ratio = (args.vision_lr_ratio if args.vision_lr_ratio is not None
                    else RECIPE.vision_lr_ratio if args.recipe else 1.0)
    cfg = TrainConfig(steps=args.steps or RECIPE.steps, batch_size=args.batch_size, lr=lr, warmup=args.warmup,
                      vision_lr_ratio=vision_ratio, seed=args.seed,
                      save_every=args.save_every, max_length=args.max_length, device=args.device,
                      bf16=args.device.startswith("cuda") and not args.fp32, clip=args.clip,
                      weight_decay=args.weight_decay)
    try:
        builder = PromptBuilder.from_pretrained(model)
        source = (SyntheticSource(builder, args.seed, RECIPE.weights, RECIPE.questions_per_scene) if args.recipe
                  else JsonlSource(builder, args.data, args.seed))
        if not args.recipe and not args.steps:  # one epoch
            cfg.steps = -(-len(source) // cfg.batch_size)
        batches = Batches(source, cfg.batch_size, builder.tokenizer.token_id("<|endoftext|>"), args.seed,
                          cfg.max_length)
        final = train(model, batches, cfg, out, resume=args.resume)
    except (CheckpointError, ExampleError, ValueError, OSError) as exc:
        print(f"glmv train: {exc}", file=sys.stderr)
        return 1
    if batches.skipped:
        print(f"left out {batches.skipped} examples longer than {cfg.max_length} tokens", file=sys.stderr)
    print(f"trained {cfg.steps} steps in {(time.perf_counter() - began) / 60:.1f} min; model: {final}")
    if args.recipe:
        from .recipe import export

        final = export(final, out / "glmv-small")
        print(f"bfloat16 model to ship: {final}")
    if args.eval_data:
        from .evaluate import validation_loss

        print(json.dumps({"validation_loss": validation_loss(final, args.eval_data, cfg)}))
    if args.recipe and args.eval_samples:
        from .evaluate import evaluate

        _report(evaluate(final, args.eval_samples, thinking=(False,), device=args.device), out / "eval.json")
    return 0


def _report(report: dict, path: str | Path | None) -> None:
    from .evaluate import markdown

    if path:
        Path(path).write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(report))


def _eval(args: argparse.Namespace) -> int:
    from ..config import CheckpointError
    from ..model.loader import model_or_bundled
    from . import evaluate

    try:
        model = model_or_bundled(args.model)
    except CheckpointError as exc:
        print(f"glmv eval: {exc}", file=sys.stderr)
        return 2
    modes = {"off": (False,), "on": (True,), "both": (False, True)}[args.thinking]
    try:
        report = evaluate.evaluate(model, args.samples, seed=args.seed, tasks=args.task or None, thinking=modes,
                                   device=args.device, dtype=args.dtype)
    except (CheckpointError, ValueError) as exc:
        print(f"glmv eval: {exc}", file=sys.stderr)
        return 1
    _report(report, args.json)
    return 0


def add_commands(commands) -> None:
    train = commands.add_parser(
        "train", help="fine-tune a GLM-V checkpoint (or train the small model from scratch)",
        description="Supervised fine-tuning with the loss on assistant tokens only: AdamW, linear warm-up then "
                    "cosine decay, gradient clipping, bf16 autocast on GPU, checkpoints every --save-every steps "
                    "(--resume continues from the last one). Data: a JSONL file whose lines are "
                    '{"messages": [...]} with OpenAI-style image_url parts, or {"messages": [...], "images": [...]} '
                    "with <image> marking each image in the texts (paths relative to the file). "
                    "--recipe small instead builds glmv's small GLM-4.5V-architecture model and trains it on the "
                    "synthetic world: the command that made the model glmv ships.")
    train.add_argument("data", nargs="?", help="JSONL file of conversations")
    train.add_argument("--recipe", choices=["small"], help="train the shipped small model from scratch")
    train.add_argument("--model", help="checkpoint folder to start from (with --recipe: default a fresh one)")
    train.add_argument("--out", default="runs/train", help="folder for checkpoints, train_log.jsonl and final/")
    train.add_argument("--steps", type=int, default=None,
                       help=f"optimizer steps (default: one epoch of the JSONL; {RECIPE.steps} for the recipe)")
    train.add_argument("--vision-steps", type=int, default=RECIPE.vision_steps,
                       help="with --recipe: steps of dense vision-tower pretraining before the conversations")
    train.add_argument("--batch-size", type=int, default=RECIPE.batch_size, help="conversations per step")
    train.add_argument("--lr", type=float, default=None,
                       help=f"peak learning rate (default: {FINETUNE_LR} to fine-tune, {RECIPE.lr} for the recipe)")
    train.add_argument("--vision-lr-ratio", type=float, default=None,
                       help=f"the vision tower's learning rate as a share of --lr, 0 to freeze it (default: 1; "
                            f"{RECIPE.vision_lr_ratio} for the recipe)")
    train.add_argument("--warmup", type=int, default=RECIPE.warmup, help="linear warm-up steps")
    train.add_argument("--weight-decay", type=float, default=0.05, help="AdamW weight decay of the matrices")
    train.add_argument("--clip", type=float, default=1.0, help="gradient norm clip")
    train.add_argument("--seed", type=int, default=RECIPE.seed, help="seed of the data order and the fresh weights")
    train.add_argument("--save-every", type=int, default=500, help="steps between checkpoints")
    train.add_argument("--resume", action="store_true", help="continue from the last checkpoint under --out")
    train.add_argument("--max-length", type=int, default=4096, help="longer conversations are left out")
    train.add_argument("--eval-data", help="JSONL of held-out conversations: report their loss at the end")
    train.add_argument("--eval-samples", type=int, default=30,
                       help="with --recipe: held-out scenes per task scored at the end (0 to skip)")
    train.add_argument("--device", default="cpu", help="cpu or cuda")
    train.add_argument("--fp32", action="store_true", help="no bf16 autocast on GPU")
    train.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: all)")
    train.set_defaults(func=_train)

    ev = commands.add_parser(
        "eval", help="score a model on held-out scenes of the synthetic world",
        description="Ask a model questions about freshly drawn scenes (grounding, counting, colour, shape, reading, "
                    "chart to table, arithmetic) through the inference engine with greedy decoding, and score the "
                    "answers: mean IoU of the boxes for grounding, the share of table cells for charts, exact "
                    "answers for the rest.")
    ev.add_argument("--model", help="checkpoint folder (default: the model glmv ships)")
    ev.add_argument("--samples", type=int, default=100, help="scenes per task")
    ev.add_argument("--task", action="append", choices=TASKS,
                    help="only this task (repeatable)")
    ev.add_argument("--thinking", choices=["off", "on", "both"], default="both", help="thinking mode(s) to score")
    ev.add_argument("--seed", type=int, default=1234, help="seed of the held-out scenes (training uses others)")
    ev.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16"], help="inference dtype")
    ev.add_argument("--device", default="cpu", help="cpu or cuda")
    ev.add_argument("--json", help="also write the report to this JSON file")
    ev.set_defaults(func=_eval)
