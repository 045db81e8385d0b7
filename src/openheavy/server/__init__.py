"""openheavy as a service: an OpenAI-compatible endpoint, an MCP server and a web view of runs.

`openheavy serve` runs one ASGI app with three faces: `/v1/chat/completions`, `/v1/models` and
`/v1/runs/{id}` for any OpenAI client; `/mcp` for MCP clients (streamable HTTP; `openheavy mcp` serves
the same tools over stdio); and `/` for people. Every face starts runs through one `RunHub` (the
concurrency limit, live events) and one `EnginePool`, and every engine call goes through
`server/engine.py`.

Why FastAPI on uvicorn: the MCP SDK's HTTP transport is a Starlette app, so a Starlette-based framework
mounts it in the same process, behind the same guards, with no second server. FastAPI adds what the
OpenAI surface needs on top of bare Starlette: request bodies validated by pydantic models (the project's
boundary rule) with clear 422 errors, and an OpenAPI schema for free. uvicorn is the ASGI server the MCP
SDK itself uses; it streams server-sent events and tells the app when a client disconnects, which is what
cancels an abandoned run.

Imports of the heavy dependencies are deferred: `import openheavy.server` works without the `server`
extra, and using it says how to install it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["ServerConfig", "create_app", "load_server_key", "run_stdio", "serve"]

_LAZY = {
    "ServerConfig": "openheavy.server.config",
    "load_server_key": "openheavy.server.config",
    "create_app": "openheavy.server.app",
    "serve": "openheavy.server.app",
    "run_stdio": "openheavy.server.mcp_tools",
}
INSTALL_HINT = "the server needs its extra: pip install 'openheavy[server]' (fastapi, uvicorn, mcp, jinja2)"

if TYPE_CHECKING:
    from openheavy.server.app import create_app, serve
    from openheavy.server.config import ServerConfig, load_server_key
    from openheavy.server.mcp_tools import run_stdio


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        from openheavy.errors import ConfigError

        try:
            module = importlib.import_module(_LAZY[name])
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.split(".")[0] in ("fastapi", "uvicorn", "mcp", "jinja2", "starlette"):
                raise ConfigError(INSTALL_HINT) from exc
            raise
        return getattr(module, name)
    raise AttributeError(f"module 'openheavy.server' has no attribute {name!r}")
