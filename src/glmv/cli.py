"""The `glmv` command line."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .help_format import Parser


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
    parser = Parser(prog="glmv", description="Self-hosted GLM-V (GLM-4.5V / GLM-4.1V).")
    commands = parser.add_subparsers(dest="command", required=True)
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
    bench.add_argument("--requests", type=int, default=32, help="concurrent requests")
    bench.add_argument("--image-size", type=int, default=448, help="side of each request's image in pixels")
    bench.add_argument("--prompt-tokens", type=int, default=64, help="text tokens per prompt")
    bench.add_argument("--output-len", type=int, default=128, help="tokens generated per request")
    bench.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                       help="weights and activations for both engines")
    bench.add_argument("--device", default="cpu", help="cpu or cuda")
    bench.add_argument("--skip-sequential", action="store_true",
                       help="skip transformers one request at a time (the slowest run)")
    bench.add_argument("--peak-gbps", type=float, default=None,
                       help="memory bandwidth of the device in GB/s, to report batch-1 decode against the roofline")
    bench.add_argument("--out", default="bench-results", help="folder for bench.md, bench.json and the images")
    bench.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "glmv" / "bench"),
                       help="where random checkpoints are written once and reused")
    bench.set_defaults(func=_bench)

    from .apps.commands import add_commands as add_app_commands
    from .server.commands import add_commands as add_server_commands
    from .training.commands import add_commands as add_training_commands

    add_server_commands(commands)
    add_training_commands(commands)
    add_app_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
