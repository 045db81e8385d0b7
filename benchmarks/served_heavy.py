"""Heavy mode as a service, end to end: start `openheavy serve` with a model, ask it one question through
the `openai` client with `model="heavy"` (once whole, once streamed), and print what came back: the
listed models, each answer with its footnoted sources, the chunk count, the run ids and the seconds.

    python benchmarks/served_heavy.py [--model local:tiny] [--question "..."] [--json out.json]

Exit status 1 when an answer comes back without a cited source, so the check can fail.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from openai import OpenAI

QUESTION = "How do I run a subprocess with a timeout and capture its output?"
FOOTNOTE = re.compile(r"^\[\^(\d+)\]: ", re.MULTILINE)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until_up(base_url: str, server: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"served_heavy: the server exited with status {server.returncode}")
        try:
            if httpx.get(f"{base_url}/models", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"served_heavy: the server did not answer within {timeout:.0f} s")


def ask(client: OpenAI, question: str, *, stream: bool) -> dict[str, Any]:
    started = time.perf_counter()
    messages: list[Any] = [{"role": "user", "content": question}]
    if stream:
        received = list(client.chat.completions.create(model="heavy", messages=messages, stream=True))
        parts = [c.choices[0].delta.content or "" for c in received if c.choices]
        answer, chunks, run_id = "".join(parts), len(received), ""
    else:
        reply = client.chat.completions.create(model="heavy", messages=messages)
        answer, chunks = reply.choices[0].message.content or "", 1
        run_id = str((reply.model_extra or {}).get("openheavy", {}).get("run_id", ""))
    return {
        "stream": stream,
        "seconds": round(time.perf_counter() - started, 1),
        "chunks": chunks,
        "run_id": run_id,
        "sources": len(FOOTNOTE.findall(answer)),
        "answer": answer,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="local:tiny")
    parser.add_argument("--question", default=QUESTION)
    parser.add_argument("--json", type=Path, default=None, help="also write the replies here")
    args = parser.parse_args()

    port = free_port()
    base_url = f"http://127.0.0.1:{port}/v1"
    command = [sys.executable, "-m", "openheavy", "serve", "--model", args.model, "--port", str(port)]
    print(f"starting: openheavy serve --model {args.model} --port {port}", flush=True)
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ)
    try:
        wait_until_up(base_url, server)
        client = OpenAI(base_url=base_url, api_key="unused-on-loopback", timeout=1800)
        models = [model.id for model in client.models.list().data]
        print("GET /v1/models:", ", ".join(models), flush=True)
        replies = []
        for stream in (False, True):
            print(f"asking model=heavy ({'streamed' if stream else 'whole'}) …", flush=True)
            reply = ask(client, args.question, stream=stream)
            replies.append(reply)
            print(f"--- {reply['seconds']} s, {reply['chunks']} chunks, {reply['sources']} sources cited")
            print(reply["answer"], flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    if args.json is not None:
        record = {"model": args.model, "question": args.question, "models": models, "replies": replies}
        args.json.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return 0 if all(reply["sources"] for reply in replies) else 1


if __name__ == "__main__":
    raise SystemExit(main())
