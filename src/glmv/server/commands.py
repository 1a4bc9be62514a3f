"""`glmv serve`, `glmv keys` and `glmv usage`."""
from __future__ import annotations

import argparse
import logging
import os
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

from ..help_format import size_argument
from ..units import format_bytes

DEFAULT_DB = os.environ.get("GLMV_DB", str(Path.home() / ".glmv" / "glmv.db"))


def secret_file(args: argparse.Namespace) -> Path:
    if args.secret_file:
        return Path(args.secret_file)
    return Path(args.db + ".secret") if "://" not in args.db else Path.home() / ".glmv" / "secret.key"


def _db_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", default=DEFAULT_DB,
                        help="SQLite file or SQLAlchemy URL (e.g. postgresql://...) holding API keys and usage "
                             "($GLMV_DB sets the default)")
    parser.add_argument("--secret-file", default=None,
                        help="file with the server secret that API-key secrets derive from (default: the SQLite "
                             "path + '.secret'); every replica serving the same database needs the same file")


def _serve(args: argparse.Namespace) -> int:
    from ..config import CheckpointError
    from ..engine.async_llm import AsyncLLM
    from ..engine.config import EngineConfig
    from ..inputs.media import MediaLimits
    from ..model.loader import model_or_bundled
    from .app import create_app, is_loopback
    from .config import Prices, ServerConfig

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        model = model_or_bundled(args.model)
    except CheckpointError as exc:
        print(f"glmv serve: {exc}", file=sys.stderr)
        return 2
    limits = MediaLimits(max_image_bytes=args.max_image_bytes, max_video_bytes=args.max_video_bytes,
                         max_image_pixels=args.max_image_pixels, max_images=args.max_images,
                         max_videos=args.max_videos, max_files=args.max_files, max_file_bytes=args.max_file_bytes,
                         max_file_pages=args.max_file_pages, fetch_timeout_s=args.fetch_timeout,
                         allow_private_urls=args.allow_private_urls, allow_local_files=False)
    engine = EngineConfig(dtype=args.dtype, device=args.device, kv_cache_memory=args.kv_cache_memory,
                          max_model_len=args.max_model_len, max_num_seqs=args.max_num_seqs,
                          max_num_batched_tokens=args.max_num_batched_tokens, limits=limits)
    cfg = ServerConfig(model, args.db, secret_file(args), engine, args.served_model_name, args.api_key,
                       Prices(args.price_input, args.price_output, args.cached_price_ratio),
                       args.max_concurrency_per_key, args.rpm_per_key, args.max_request_bytes)
    try:
        app = create_app(cfg)
    except ValueError as exc:
        print(f"glmv serve: {exc}", file=sys.stderr)
        return 2
    if app.state.glmv_open and not is_loopback(args.host) and not args.allow_unauthenticated:
        print(f"glmv serve: no API keys exist, so anyone reaching {args.host} could use the server. Create one "
              "with `glmv keys create`, pass --api-key, or add --allow-unauthenticated.", file=sys.stderr)
        return 2
    try:  # load before startup: a wrong or corrupt checkpoint is named here, not in uvicorn's traceback
        app.state.glmv["llm"] = AsyncLLM(model, engine)
    except (CheckpointError, OSError) as exc:
        print(f"glmv serve: cannot load {model}: {exc}", file=sys.stderr)
        return 2
    import uvicorn

    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, timeout_graceful_shutdown=30)
    return 0


def _keys(args: argparse.Namespace) -> int:
    from .store import Store, load_secret_key

    store = Store(args.db)
    if args.keys_command == "create":
        key = store.create_key(load_secret_key(secret_file(args), create=True), args.name, args.max_concurrency,
                               args.rpm)
        print(key)
        print("Keep this key: only its hash is stored.", file=sys.stderr)
    elif args.keys_command == "list":
        print(f"{'id':32}  {'name':20}  {'created (UTC)':19}  {'status':8}  concurrency  rpm")
        for k in store.keys():
            created = datetime.fromtimestamp(k.created_at, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
            print(f"{k.id:32}  {k.name[:20]:20}  {created:19}  {'revoked' if k.revoked_at else 'active':8}  "
                  f"{k.max_concurrency or '-':>11}  {k.rpm or '-'}")
    elif args.keys_command == "revoke":
        key_id = args.key.split(".")[0]
        if not store.revoke_key(key_id):
            print(f"glmv keys revoke: no active key {key_id}", file=sys.stderr)
            return 1
        print(f"revoked {key_id}")
    return 0


def _usage(args: argparse.Namespace) -> int:
    from .store import Store

    since = (datetime.now(timezone.utc) - timedelta(days=args.days - 1)).strftime("%Y-%m-%d")
    rows = Store(args.db).usage_by_key_and_day(since)
    print(f"{'day':10}  {'key':32}  {'requests':>8}  {'errors':>6}  {'prompt':>9}  {'cached':>9}  "
          f"{'completion':>10}  {'cost USD':>10}")
    for r in rows:
        print(f"{r['day']:10}  {r['key_id'] or '(no key)':32}  {r['requests']:>8}  {r['errors']:>6}  "
              f"{r['prompt_tokens']:>9}  {r['cached_tokens']:>9}  {r['completion_tokens']:>10}  {r['cost_usd']:>10.6f}")
    return 0


def add_commands(commands) -> None:
    from ..engine.config import EngineConfig
    from ..inputs.media import MediaLimits
    from .config import Prices, ServerConfig

    serve = commands.add_parser(
        "serve", help="serve the Z.AI and OpenAI chat APIs over HTTP",
        description="Serve a GLM-V model over HTTP with the Z.AI API (POST /api/paas/v4/chat/completions, async "
                    "variant at /api/paas/v4/async/chat/completions) and the OpenAI API (POST /v1/chat/completions, "
                    "GET /v1/models), plus GET /health and GET /metrics (Prometheus). The official zai-sdk, "
                    "zhipuai and openai clients work unchanged with base_url pointed here.")
    serve.add_argument("--model", help="checkpoint folder (Hugging Face layout); default: glmv-small, the small "
                                       "model glmv ships")
    engine, limits, prices = EngineConfig(), MediaLimits(), Prices()
    serve.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    serve.add_argument("--port", type=int, default=8000, help="port")
    serve.add_argument("--served-model-name", action="append", default=[],
                       help="model name clients must send (repeatable; default: glm-4.5v and the folder's name)")
    serve.add_argument("--api-key", action="append", default=[],
                       help="an extra <id>.<secret> key accepted for this run only (repeatable)")
    serve.add_argument("--allow-unauthenticated", action="store_true",
                       help="serve without any API key on a non-loopback interface")
    _db_options(serve)
    serve.add_argument("--allow-private-urls", action="store_true",
                       help="let media URLs reach loopback/private/link-local addresses (off: only public hosts)")
    serve.add_argument("--dtype", default=engine.dtype, choices=["float32", "bfloat16", "float16"],
                       help="weight dtype")
    serve.add_argument("--device", default=engine.device, help="cpu or cuda")
    serve.add_argument("--max-model-len", type=int, default=None,
                       help="context length, prompt + answer (default: the checkpoint's)")
    serve.add_argument("--kv-cache-memory", type=size_argument, default=None,
                       help="KV-cache size, e.g. 4GiB (default: a share of free memory)")
    serve.add_argument("--max-num-seqs", type=int, default=engine.max_num_seqs, help="sequences decoding together")
    serve.add_argument("--max-num-batched-tokens", type=int, default=engine.max_num_batched_tokens,
                       help="tokens per engine step")
    serve.add_argument("--max-concurrency-per-key", type=int, default=None,
                       help="requests one key may run at once, else error 1302 (default: no limit)")
    serve.add_argument("--rpm-per-key", type=int, default=None,
                       help="requests one key may start per minute, else error 1303 (default: no limit)")
    serve.add_argument("--price-input", type=float, default=prices.input, help="USD per million prompt tokens")
    serve.add_argument("--price-output", type=float, default=prices.output, help="USD per million output tokens")
    serve.add_argument("--cached-price-ratio", type=float, default=prices.cached_ratio,
                       help="price of a cached prompt token relative to the input price")
    serve.add_argument("--max-images", type=int, default=limits.max_images, help="images per request")
    serve.add_argument("--max-videos", type=int, default=limits.max_videos, help="videos per request")
    serve.add_argument("--max-files", type=int, default=limits.max_files, help="file_url parts per request")
    for kind in ("image", "video", "file"):
        serve.add_argument(f"--max-{kind}-bytes", type=size_argument,
                           default=format_bytes(getattr(limits, f"max_{kind}_bytes")), help=f"size of one {kind}")
    serve.add_argument("--max-image-pixels", type=int, default=limits.max_image_pixels,
                       help="pixels per image or video frame, checked before decoding")
    serve.add_argument("--max-file-pages", type=int, default=limits.max_file_pages, help="PDF pages read per request")
    serve.add_argument("--fetch-timeout", type=float, default=limits.fetch_timeout_s,
                       help="seconds to fetch one media URL")
    serve.add_argument("--max-request-bytes", type=size_argument,
                       default=format_bytes(ServerConfig.max_request_bytes), help="largest request body")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.set_defaults(func=_serve)

    keys = commands.add_parser("keys", help="create, list and revoke API keys",
                               description="Manage API keys (<id>.<secret>). Only a hash of each secret is stored.")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    create = key_commands.add_parser("create", help="make a key and print it (once)")
    create.add_argument("--name", default="", help="a label for the key")
    create.add_argument("--max-concurrency", type=int, default=None, help="this key's concurrent-request limit")
    create.add_argument("--rpm", type=int, default=None, help="this key's requests-per-minute limit")
    key_commands.add_parser("list", help="list keys (ids, names, status)")
    revoke = key_commands.add_parser("revoke", help="revoke a key; it stops working at once")
    revoke.add_argument("key", help="the key id (or the whole key)")
    for sub in (create, key_commands.choices["list"], revoke):
        _db_options(sub)
    keys.set_defaults(func=_keys)

    usage = commands.add_parser("usage", help="tokens, requests and cost per key and day",
                                description="Report usage per API key and day from the server's database.")
    usage.add_argument("--days", type=int, default=30, help="how many days back")
    _db_options(usage)
    usage.set_defaults(func=_usage)

