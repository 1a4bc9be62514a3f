"""The HTTP server: Z.AI routes (/api/paas/v4/...) and OpenAI routes (/v1/...) over one engine."""
from __future__ import annotations

import ipaddress
import logging
import socket
from contextlib import asynccontextmanager
from importlib.resources import files

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..engine.async_llm import AsyncLLM
from .auth import Authenticator
from .chat import ChatService, Settings
from .config import ServerConfig
from .errors import NOT_FOUND, APIError
from .metrics import Metrics
from .rate_limit import KeyLimiter
from .store import Store, load_secret_key

log = logging.getLogger("glmv.server")

WEB_FILES = {"index.html": "text/html", "app.js": "text/javascript", "style.css": "text/css"}
ZAI = "/api/paas/v4"
CODING = "/api/coding/paas/v4"
OPENAI = "/v1"


def is_loopback(host: str) -> bool:
    try:
        return all(ipaddress.ip_address(info[4][0]).is_loopback for info in socket.getaddrinfo(host, None))
    except (socket.gaierror, ValueError):
        return False


def create_app(cfg: ServerConfig) -> FastAPI:
    """The app; the model loads when the app starts (so /health answers only once it is loaded),
    unless an engine was put in app.state.glmv["llm"] before (as `glmv serve` does)."""
    store = Store(cfg.db)
    auth = Authenticator(store, load_secret_key(cfg.secret_file, create=False), cfg.api_keys)
    state: dict = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        llm = state.get("llm") or AsyncLLM(cfg.model, cfg.engine)
        state["llm"], state["metrics"] = llm, Metrics(llm.engine)
        state["chat"] = ChatService(llm, Settings(cfg.model_names, cfg.prices, max_request_bytes=cfg.max_request_bytes),
                                    store, auth, KeyLimiter(cfg.max_concurrency_per_key, cfg.rpm_per_key),
                                    state["metrics"])
        log.info("serving %s as %s", cfg.model, ", ".join(cfg.model_names))
        yield
        await state["chat"].drain()
        await llm.idle()
        llm.shutdown()

    app = FastAPI(title="glmv", description="GLM-V chat completions, Z.AI and OpenAI compatible", lifespan=lifespan)

    for prefix in (ZAI, CODING, OPENAI):
        app.add_api_route(f"{prefix}/chat/completions", _completions(state, prefix), methods=["POST"],
                          include_in_schema=prefix != CODING)

    @app.post(f"{ZAI}/async/chat/completions")
    async def async_submit(request: Request):
        return await state["chat"].submit(request)

    @app.get(f"{ZAI}/async-result/{{task_id}}")
    async def async_result(request: Request, task_id: str):
        return await state["chat"].result(request, task_id)

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": name, "object": "model", "created": 0, "owned_by": "glmv"}
                                           for name in cfg.model_names]}

    @app.get("/health")
    async def health():
        """Also what the web chat needs to know: the models, whether a key is needed, the prices."""
        prices = {"input": cfg.prices.input, "output": cfg.prices.output, "cached_ratio": cfg.prices.cached_ratio}
        return {"status": "ok", "models": cfg.model_names, "auth_required": not auth.open(), "prices": prices}

    @app.get("/", include_in_schema=False)
    async def web_chat():
        return web_file("index.html")

    @app.get("/web/{name}", include_in_schema=False)
    async def web_asset(name: str):
        if name not in WEB_FILES:
            return APIError(NOT_FOUND, f"no web file {name!r}").response()
        return web_file(name)

    @app.get("/metrics")
    async def metrics():
        return Response(generate_latest(state["metrics"].registry), media_type=CONTENT_TYPE_LATEST)

    @app.exception_handler(404)
    async def not_found(request: Request, exc):
        return APIError(NOT_FOUND, f"no route {request.method} {request.url.path}").response()

    @app.exception_handler(405)
    async def wrong_method(request: Request, exc):
        return JSONResponse({"error": {"code": "405", "message": f"{request.method} is not allowed on "
                                                                 f"{request.url.path}"}}, status_code=405)

    app.state.glmv = state
    app.state.glmv_open = auth.open()
    return app


def web_file(name: str) -> Response:
    """A file of the web chat, served from the package (no CDN: it works offline)."""
    body = files("glmv").joinpath("assets/web", name).read_bytes()
    return Response(body, media_type=WEB_FILES[name], headers={"Cache-Control": "no-cache"})


def _completions(state: dict, prefix: str):
    async def completions(request: Request):
        return await state["chat"].complete(request, f"{prefix}/chat/completions")
    return completions
