"""How a server is set up: where it listens, its key, and its limits; checked before it starts."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from openheavy.errors import ConfigError

__all__ = ["KEY_ENV", "ServerConfig", "is_loopback", "load_server_key"]

KEY_ENV = "OPENHEAVY_SERVER_KEY"


def is_loopback(host: str) -> bool:
    """Whether `host` (an address or `localhost`) is reachable from this machine only."""
    if host.strip("[]") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name other than localhost may resolve anywhere
        return False


def load_server_key(key_file: Path | None) -> str | None:
    """The key clients must present: the first line of `key_file`, else `$OPENHEAVY_SERVER_KEY`, else
    None. Never a command-line value, which any user of the machine can read with `ps`."""
    if key_file is not None:
        try:
            key = key_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"cannot read the API key file {key_file}: {exc.strerror}") from None
        if not key:
            raise ConfigError(f"the API key file {key_file} is empty — write the key on its first line")
        return key
    return os.environ.get(KEY_ENV) or None


@dataclass(frozen=True)
class ServerConfig:
    """Where the server listens and what it allows. Bound to anything but loopback it must have a key."""

    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    max_concurrent: int = 4  # runs at once; more get 429
    retry_after: float = 5.0  # seconds, in the 429's Retry-After
    max_body_bytes: int = 1_000_000  # a request body beyond this gets 413
    max_question_chars: int = 20_000  # the question with its conversation context; beyond: 422
    ping_seconds: float = 15.0  # at most this much silence on an event stream before a `: ping`

    def __post_init__(self) -> None:
        if not is_loopback(self.host) and not self.api_key:
            raise ConfigError(
                f"refusing to serve on {self.host} without an API key: anyone who can reach it could run "
                f"questions and read every trace — pass --api-key-file FILE or set {KEY_ENV}, or bind to "
                "127.0.0.1"
            )
        if self.max_concurrent < 1:
            raise ConfigError(f"--max-concurrent must be at least 1, got {self.max_concurrent}")
        if self.ping_seconds <= 0 or self.max_body_bytes < 1 or self.max_question_chars < 1:
            raise ConfigError("server limits must be positive")

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)
