"""Loopback web servers for tests: a fixture site and a SearXNG-protocol search engine.

Both are real HTTP servers on 127.0.0.1 (ephemeral ports), in threads, so the page reader, the SSRF
guard and the search backends are tested over real sockets without the internet.

Fixture site routes (pages under tests/fixtures/web are served as files):
    /kestrel.html, /injected.html, /injected.pdf, /login.html, /empty.html   files, 200
    /antibot.html            the anti-bot wall, with HTTP 403 (as Cloudflare sends it)
    /hop/N                   redirects N times, then to /kestrel.html
    /loop                    redirects to itself forever
    /to/PORT/PATH            redirects to http://127.0.0.1:PORT/PATH (a non-allow-listed port, say)
    /big                     a 50 MB HTML body, streamed; `big_bytes_sent` counts what went out
    /slow                    headers at once, then nothing for a long time
    /image.png               an image (a content type the reader refuses)
    /echo-host               a page that quotes the Host header it received
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

FIXTURES = Path(__file__).parent / "fixtures" / "web"
BIG_BYTES = 50 * 1024 * 1024
_TYPES = {".html": "text/html; charset=utf-8", ".pdf": "application/pdf", ".md": "text/markdown"}
_FILLER = b"<p>" + b"The quick brown fox jumps over the lazy dog. " * 20 + b"</p>\n"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False


class LoopbackServer:
    """A threaded HTTP server on 127.0.0.1; subclasses implement `respond(handler)`."""

    def __init__(self) -> None:
        outer = self
        self.stopping = threading.Event()
        self.requests: list[tuple[str, str, dict[str, str]]] = []  # method, path, headers
        self.bodies: list[bytes] = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests.append((self.command, self.path, dict(self.headers.items())))
                # The client may stop reading (what the byte cap does): not an error here.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    outer.respond(self)

            def do_POST(self) -> None:
                outer.bodies.append(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
                self.do_GET()

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = _Server(("127.0.0.1", 0), Handler)
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def start(self) -> LoopbackServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def respond(self, handler: BaseHTTPRequestHandler) -> None:  # pragma: no cover - interface
        raise NotImplementedError


def send(
    handler: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str, **headers: str
) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    for name, value in headers.items():
        handler.send_header(name.replace("_", "-"), value)
    handler.end_headers()
    handler.wfile.write(body)


def redirect(handler: BaseHTTPRequestHandler, location: str, status: int = 302) -> None:
    send(handler, status, b"", "text/plain", Location=location)


class FixtureSite(LoopbackServer):
    """The fixture site (routes in the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.big_bytes_sent = 0

    def respond(self, handler: BaseHTTPRequestHandler) -> None:
        path = urlsplit(handler.path).path
        parts = path.strip("/").split("/")
        if path == "/antibot.html":
            send(handler, 403, (FIXTURES / "antibot.html").read_bytes(), _TYPES[".html"])
        elif parts[0] == "hop" and len(parts) == 2:
            left = int(parts[1])
            redirect(handler, f"/hop/{left - 1}" if left > 1 else "/kestrel.html", 301 if left % 2 else 307)
        elif path == "/loop":
            redirect(handler, "/loop")
        elif parts[0] == "to" and len(parts) >= 2:
            redirect(handler, f"http://127.0.0.1:{parts[1]}/{'/'.join(parts[2:])}")
        elif path == "/big":
            self._big(handler)
        elif path == "/slow":
            handler.send_response(200)
            handler.send_header("Content-Type", "text/html")
            handler.send_header("Content-Length", "100000")
            handler.end_headers()
            handler.wfile.flush()
            self.stopping.wait(30)
        elif path == "/image.png":
            send(handler, 200, b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "image/png")
        elif path == "/echo-host":
            host = handler.headers.get("Host", "")
            body = f"<html><body><article><h1>Echo</h1><p>{_FILLER.decode()}</p><p>Host header: {host}</p>"
            send(handler, 200, (body + "</article></body></html>").encode(), _TYPES[".html"])
        elif (FIXTURES / path.lstrip("/")).is_file() and ".." not in path:
            file = FIXTURES / path.lstrip("/")
            send(handler, 200, file.read_bytes(), _TYPES.get(file.suffix, "application/octet-stream"))
        else:
            send(handler, 404, b"<html><body>not found</body></html>", _TYPES[".html"])

    def _big(self, handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/html")
        handler.send_header("Content-Length", str(BIG_BYTES))
        handler.end_headers()
        head = b"<html><body><article><h1>A very long page</h1>\n"
        handler.wfile.write(head)
        self.big_bytes_sent = len(head)
        chunk = _FILLER * 64
        while self.big_bytes_sent < BIG_BYTES and not self.stopping.is_set():
            piece = chunk[: BIG_BYTES - self.big_bytes_sent]
            handler.wfile.write(piece)
            self.big_bytes_sent += len(piece)


Results = Callable[[str], list[dict[str, str]]]


class FakeSearxng(LoopbackServer):
    """A SearXNG-protocol engine: `GET /search?q=...&format=json` answers `results(q)`.

    `json_enabled=False` answers 403 to format=json as a stock instance does; `limited=N` answers 429
    (the bot limiter) to the first N requests, with Retry-After: 0.
    """

    def __init__(self, results: Results, *, json_enabled: bool = True, limited: int = 0) -> None:
        super().__init__()
        self.results = results
        self.json_enabled = json_enabled
        self.limited = limited

    def respond(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        query = parse_qs(parts.query)
        if parts.path != "/search":
            send(handler, 404, b"not found", "text/plain")
        elif self.limited > 0:
            self.limited -= 1
            send(handler, 429, b"Too Many Requests", "text/plain", Retry_After="0")
        elif query.get("format") != ["json"] or not self.json_enabled:
            send(handler, 403, b"Forbidden", "text/html")
        else:
            q = query.get("q", [""])[0]
            answer = {
                "query": q,
                "number_of_results": 0,
                "results": self.results(q),
                "unresponsive_engines": [],
            }
            send(handler, 200, json.dumps(answer).encode(), "application/json")


class JsonApi(LoopbackServer):
    """A search API stand-in (Brave, Tavily): `answer(handler)` gives (status, JSON body)."""

    def __init__(self, answer: Callable[[BaseHTTPRequestHandler], tuple[int, Any]]) -> None:
        super().__init__()
        self.answer = answer

    def respond(self, handler: BaseHTTPRequestHandler) -> None:
        status, body = self.answer(handler)
        send(handler, status, json.dumps(body).encode(), "application/json")


@contextmanager
def serving(server: LoopbackServer) -> Iterator[Any]:
    server.start()
    try:
        yield server
    finally:
        server.stop()
