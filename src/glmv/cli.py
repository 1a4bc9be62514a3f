"""The `glmv` command line."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _chat(args: argparse.Namespace) -> int:
    if not args.model:
        print("glmv chat: no model given, and this build of glmv ships no bundled model yet.\n"
              "Pass --model PATH to a GLM-V checkpoint folder (GLM-4.5V or GLM-4.1V, Hugging Face layout).",
              file=sys.stderr)
        return 2
    if not args.prompt:
        print("glmv chat: a question is needed, e.g. glmv chat --model PATH \"What is in this picture?\" -i photo.png",
              file=sys.stderr)
        return 2
    from . import LLM, SamplingParams
    from .config import CheckpointError
    from .inputs.media import MediaError

    content = [{"type": "image_url", "image_url": {"url": path}} for path in args.image]
    content += [{"type": "video_url", "video_url": {"url": path}} for path in args.video]
    content.append({"type": "text", "text": args.prompt})
    try:
        llm = LLM(args.model, dtype=args.dtype, device=args.device)
        params = SamplingParams(temperature=args.temperature, top_p=args.top_p, max_tokens=args.max_tokens,
                                seed=args.seed)
        out = llm.chat([{"role": "user", "content": content}], params, thinking=not args.no_thinking)
    except (CheckpointError, MediaError, ValueError) as exc:
        print(f"glmv chat: {exc}", file=sys.stderr)
        return 1
    if out.reasoning_content:
        dim = sys.stdout.isatty()
        print(("\x1b[2m" if dim else "") + "Thinking: " + out.reasoning_content + ("\x1b[0m" if dim else ""))
        print()
    print(out.content)
    return 0


def _bench(args: argparse.Namespace) -> int:
    try:
        from .bench.throughput import benchmark, markdown
    except ImportError as exc:
        print(f"glmv bench: {exc}. The benchmark compares against transformers: pip install 'glmv[bench]'",
              file=sys.stderr)
        return 2
    report = benchmark(args.preset, args.requests, args.image_size, args.prompt_tokens, args.output_len, args.dtype,
                       args.device, args.layers, Path(args.out), Path(args.cache_dir), args.skip_sequential,
                       args.peak_gbps)
    print(markdown(report))
    print(f"written: {Path(args.out) / 'bench.md'} and {Path(args.out) / 'bench.json'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="glmv", description="Self-hosted GLM-V (GLM-4.5V / GLM-4.1V).")
    commands = parser.add_subparsers(dest="command", required=True)
    chat = commands.add_parser("chat", help="ask the model one question about text, images or a video",
                               description="Ask a GLM-V model one question, with optional images or a video, "
                                           "and print its thinking and its answer.")
    chat.add_argument("prompt", nargs="?", help="the question")
    chat.add_argument("--model", help="checkpoint folder (config.json, *.safetensors, tokenizer.json, ...)")
    chat.add_argument("-i", "--image", action="append", default=[], help="image path or URL (repeatable)")
    chat.add_argument("--video", action="append", default=[], help="video path or URL")
    chat.add_argument("--no-thinking", action="store_true", help="answer directly, without the <think> step")
    chat.add_argument("--max-tokens", type=int, default=1024, help="most tokens to generate (default 1024)")
    chat.add_argument("--temperature", type=float, default=0.0, help="0 for greedy decoding (default 0)")
    chat.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (default 1.0)")
    chat.add_argument("--seed", type=int, default=None, help="random seed for sampling")
    chat.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16", "float16"],
                      help="weight dtype (default bfloat16)")
    chat.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    chat.set_defaults(func=_chat)

    from .bench.throughput import PRESETS  # plain data; transformers is imported only when the bench runs

    bench = commands.add_parser(
        "bench", help="throughput and latency of glmv's engine against transformers, side by side",
        description="Benchmark glmv's engine against Hugging Face transformers generate (one request after "
                    "another, and all requests padded into one batch) on a random-weight checkpoint of a named "
                    "shape, in the same run. Writes bench.md and bench.json. Needs transformers "
                    "(pip install 'glmv[bench]').")
    bench.add_argument("--preset", default="small", choices=sorted(PRESETS),
                       help="model shape: small (~96M MoE, for CPU), glm-4.1v-9b or glm-4.5v (real shapes, for a GPU)")
    bench.add_argument("--layers", type=int, default=None, help="override the number of decoder layers")
    bench.add_argument("--requests", type=int, default=32, help="concurrent requests (default 32)")
    bench.add_argument("--image-size", type=int, default=448, help="side of each request's image in pixels (448)")
    bench.add_argument("--prompt-tokens", type=int, default=64, help="text tokens per prompt (default 64)")
    bench.add_argument("--output-len", type=int, default=128, help="tokens generated per request (default 128)")
    bench.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                       help="weights and activations for both engines (default float32)")
    bench.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    bench.add_argument("--skip-sequential", action="store_true",
                       help="skip transformers one request at a time (the slowest run)")
    bench.add_argument("--peak-gbps", type=float, default=None,
                       help="memory bandwidth of the device in GB/s, to report batch-1 decode against the roofline")
    bench.add_argument("--out", default="bench-results", help="folder for bench.md, bench.json and the images")
    bench.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "glmv" / "bench"),
                       help="where random checkpoints are written once and reused")
    bench.set_defaults(func=_bench)

    from .server.commands import add_commands

    add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
