"""Small deterministic stand-ins for tests: an in-memory search backend and helpers."""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
import threading
import zlib
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openheavy.aggregation import lead_sentence
from openheavy.errors import DocumentNotFoundError
from openheavy.types import Document, Event, EventSink, Hit


@dataclass
class MemorySearch:
    """A `SearchBackend` over a few passages: a hit when any query word is in the title or text."""

    passages: dict[str, tuple[str, str]]  # id -> (title, text)
    name: str = "memory"
    latency: float = 0.0
    searches: list[str] = field(default_factory=list)
    opens: list[str] = field(default_factory=list)
    # Passages of at most this many characters come whole with their hit (`Hit.text`), as a local
    # index sends short ones; 0: never.
    whole: int = 0

    async def search(self, query: str, k: int = 5) -> list[Hit]:
        self.searches.append(query)
        await asyncio.sleep(self.latency)
        words = {w for w in query.casefold().split() if len(w) > 2}
        hits = []
        for pid, (title, text) in self.passages.items():
            score = sum(w in (title + " " + text).casefold() for w in words)
            if score:
                whole = text if len(text) <= self.whole else None
                hits.append(
                    Hit(pid, pid.split("#")[0], title, f"file:{pid}", text[:80], float(score), text=whole)
                )
        hits.sort(key=lambda h: (-h.score, h.id))
        return hits[:k]

    async def open(self, id: str) -> Document:
        self.opens.append(id)
        await asyncio.sleep(self.latency)
        if id not in self.passages:
            # a document's id opens its first passage, as the local index does
            id = next((pid for pid in self.passages if pid.split("#")[0] == id), id)
        if id not in self.passages:
            raise DocumentNotFoundError(f"no passage {id}")
        title, text = self.passages[id]
        return Document(id, id.split("#")[0], title, f"file:{id}", text)


class ListSink(EventSink):
    def __init__(self) -> None:
        self.events: list[Event] = []

    def handle(self, event: Event) -> None:
        self.events.append(event)

    def of(self, kind: str) -> list[Any]:
        return [e for e in self.events if e.kind == kind]


def action(name: str, *, missing: str = "", **args: Any) -> str:
    """An agent action as a constrained decoder writes it: "missing" first, then the action and its args.
    An answer without a `short` one gets its first sentence (which then leads the answer already)."""
    if name == "answer" and "short" not in args:
        args = {"short": lead_sentence(str(args.get("answer", "")))[:80] or "-", **args}
    return json.dumps({"missing": missing, "action": name, **args})


def action_calls(model: Any) -> list[Any]:
    """A scripted model's calls that asked for a JSON action (not the python tool's free-text script)."""
    return [call for call in model.calls if call.json_schema is not None]


def python_turns(code: list[str] | str, *, missing: str = "", before: str = "") -> list[str]:
    """The python tool's two replies, as a model writes them: the action that picks it, then the script
    in a fenced block (after `before`, the reasoning a model may write first)."""
    script = code if isinstance(code, str) else "\n".join(code)
    return [action("python", missing=missing), f"{before}```python\n{script}\n```"]


def plan_reply(
    tasks: list[str],
    *,
    shape: str = "long",
    facet: str = "",
    values: Sequence[str] = (),
    queries: Sequence[Sequence[str]] | None = None,
) -> dict[str, Any]:
    """A planner's reply, as its JSON schema asks for it: each task with its first queries (by default
    the task's last word: "find shlex" searches "shlex")."""
    planned = queries if queries is not None else [[task.split()[-1]] for task in tasks]
    return {
        "answer_shape": shape,
        "facet": facet,
        "values": list(values),
        "tasks": [{"task": task, "queries": list(qs)} for task, qs in zip(tasks, planned, strict=True)],
    }


PASSAGES = {
    "subprocess#1": (
        "subprocess — run",
        "subprocess.run(args, capture_output=True, timeout=5) runs a command, waits, and returns a "
        "CompletedProcess; TimeoutExpired is raised when the timeout expires.",
    ),
    "subprocess#2": (
        "subprocess — check_output",
        "check_output runs a command and returns its output; it also accepts timeout.",
    ),
    "shlex#1": ("shlex — split", "shlex.split splits a command line string like a shell would."),
}


def allowed_actions(schema: dict[str, Any] | None) -> list[str]:
    """The action names an agent's JSON schema allows (what a constrained decoder could produce)."""
    if schema is None:
        return []
    return [option["properties"]["action"]["enum"][0] for option in schema.get("anyOf", [schema])]


def make_pdf(pages: list[str]) -> bytes:
    """A minimal valid PDF with one line of Helvetica text per page."""
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b""]
    kids = []
    for text in pages:
        stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
        content_number = len(objects) + 2
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {content_number} 0 R"
            f" /Resources << /Font << /F1 {len(objects) + 3} 0 R >> >> >>".encode()
        )
        kids.append(f"{len(objects)} 0 R")
        compressed = zlib.compress(stream)
        objects.append(
            b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(compressed) + compressed + b"\nendstream"
        )
        objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    objects[1] = f"<< /Type /Pages /Kids [{' '.join(kids)}] /Count {len(pages)} >>".encode()
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def damage_sqlite_page(path: Path, btree: str) -> None:
    """Overwrite the root page of one b-tree (a table or an index, by name) of an SQLite file with
    garbage, as a bad disk sector would."""
    with closing(sqlite3.connect(path)) as conn:
        (root,) = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (btree,)).fetchone()
        (page_size,) = conn.execute("PRAGMA page_size").fetchone()
    with path.open("r+b") as file:
        file.seek((root - 1) * page_size)
        file.write(b"\xa5" * page_size)


@contextmanager
def silent_server() -> Iterator[str]:
    """A loopback model server that accepts connections, reads the requests and never answers: a hung
    llama-server. Yields its URL with a model name, so nothing asks it for /models first."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.settimeout(0.1)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1#m"
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        listener.close()


@dataclass
class ChatServer:
    """What `chat_server` received: each request's headers and JSON body."""

    url: str
    requests: list[tuple[dict[str, str], dict[str, Any]]] = field(default_factory=list)


@contextmanager
def chat_server(reply: str = "Fine.") -> Iterator[ChatServer]:
    """A loopback OpenAI-compatible server answering every chat completion with `reply`, recording what
    it received. Yields it with its URL (model name included)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    received: list[tuple[dict[str, str], dict[str, Any]]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
            received.append(({k.lower(): v for k, v in self.headers.items()}, body))
            choice = {"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}
            data = json.dumps(
                {
                    "id": "c1",
                    "object": "chat.completion",
                    "created": 0,
                    "model": "m",
                    "choices": [choice],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12},
                }
            ).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield ChatServer(f"http://127.0.0.1:{server.server_address[1]}/v1#m", received)
    finally:
        server.shutdown()
        server.server_close()
