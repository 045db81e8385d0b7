"""The server application: routes, guards, error handling and lifecycle, and `serve` to run it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.routing import Route

import openheavy
from openheavy.config import Settings
from openheavy.errors import (
    ConfigError,
    OpenHeavyError,
    RunNotFoundError,
    SearchError,
    ServerBusyError,
)
from openheavy.models.base import ChatModel
from openheavy.search.base import SearchBackend
from openheavy.server import chat, web
from openheavy.server.config import ServerConfig
from openheavy.server.engine import EnginePool
from openheavy.server.mcp_tools import build_mcp_server
from openheavy.server.options import OPTION_NAMES
from openheavy.server.runs import RunHub
from openheavy.server.security import BodyLimit, HostGuard, KeyGuard, error_body
from openheavy.server.state import ServerState

__all__ = ["create_app", "serve"]


def _validation_message(exc: RequestValidationError) -> str:
    problems = []
    unknown = False
    for error in exc.errors():
        where = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
        problems.append(f"{where or 'body'}: {error.get('msg', 'invalid')}")
        unknown = unknown or error.get("type") == "extra_forbidden"
    message = "invalid request — " + "; ".join(problems)
    if unknown:
        message += f" (openheavy's options: {', '.join(OPTION_NAMES)})"
    return message


def _error(status: int, message: str, kind: str, code: str | None = None, **headers: str) -> JSONResponse:
    return JSONResponse(error_body(message, kind, code), status_code=status, headers=headers)


def _install_error_handlers(app: FastAPI) -> None:
    async def invalid(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return _error(422, _validation_message(exc), "invalid_request_error", "invalid_request")

    async def openheavy_error(request: Request, exc: Exception) -> JSONResponse:
        # Most specific first: ServerBusyError and RequestRejectedError are also OpenHeavyErrors.
        if isinstance(exc, ServerBusyError):
            seconds = str(max(1, round(exc.retry_after)))
            return _error(429, str(exc), "rate_limit_error", "server_busy", **{"Retry-After": seconds})
        if isinstance(exc, chat.RequestRejectedError):
            return _error(exc.status, str(exc), "invalid_request_error", exc.code)
        if isinstance(exc, RunNotFoundError):
            return _error(404, str(exc), "invalid_request_error", "run_not_found")
        if isinstance(exc, ConfigError | SearchError):
            return _error(400, str(exc), "invalid_request_error", "bad_option")
        return _error(500, str(exc), "server_error", "openheavy_error")

    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(OpenHeavyError, openheavy_error)


def create_app(
    config: ServerConfig,
    settings: Settings,
    *,
    model: str | ChatModel | None = None,
    corpus: str | SearchBackend | None = None,
) -> FastAPI:
    """The whole server as one ASGI app: `/v1` (OpenAI-compatible), `/mcp` (MCP over streamable HTTP)
    and the web view at `/`. `model` and `corpus` default to the settings' (tests pass objects)."""
    pool = EnginePool(settings, model, corpus)
    hub = RunHub(pool, config.max_concurrent, config.retry_after)
    state = ServerState(config, pool, hub)
    mcp_server = build_mcp_server(state)
    mcp_app = mcp_server.streamable_http_app(streamable_http_path="/mcp", host=config.host)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with mcp_server.session_manager.run():
            try:
                yield
            finally:
                await hub.aclose()  # cancel what is still running, so the store records it
                await pool.aclose()

    app = FastAPI(
        title="openheavy",
        version=openheavy.__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url="/v1/openapi.json",
    )
    app.state.openheavy = state
    _install_error_handlers(app)
    app.include_router(chat.router)
    app.include_router(web.router)
    # The MCP transport's own route, inside this app so that the same guards stand in front of it.
    app.router.routes.extend(route for route in mcp_app.routes if isinstance(route, Route))
    app.mount("/static", StaticFiles(directory=Path(web.__file__).parent / "static"), name="static")
    # Outermost last: the Host check runs first, then the key, then the body limit.
    app.add_middleware(BodyLimit, max_bytes=config.max_body_bytes)
    if config.api_key:
        app.add_middleware(KeyGuard, key=config.api_key)
    app.add_middleware(HostGuard, loopback=config.loopback)
    return app


def serve(
    config: ServerConfig,
    settings: Settings,
    *,
    model: str | ChatModel | None = None,
    corpus: str | SearchBackend | None = None,
    **uvicorn_options: Any,
) -> None:
    """Run the server with uvicorn until interrupted (Ctrl-C cancels runs in flight, recorded as such)."""
    import uvicorn

    app = create_app(config, settings, model=model, corpus=corpus)
    uvicorn.run(
        app,
        host=config.host,
        port=config.port,
        log_level="info",
        timeout_graceful_shutdown=5,
        server_header=False,
        **uvicorn_options,
    )
