"""Private by default: the folders and files openheavy writes under its data directory are the owner's
alone, and the secrets in its environment stay out of the processes it starts.

Traces, the run store, indexes and server logs hold every question, prompt and document a user worked
with, so folders are created 0700 and files 0600 whatever the umask. Folders that already exist keep
their mode (a user may share a data directory on purpose); files created from now on are still private.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from openheavy.errors import ConfigError

__all__ = [
    "child_environment",
    "create_private_file",
    "looks_secret",
    "open_private",
    "private_dir",
    "write_private",
]

DIR_MODE = 0o700
FILE_MODE = 0o600

# Names of variables and settings that may hold a credential: a part that is a key, token or auth
# (OPENAI_API_KEY, HF_TOKEN, not MAX_TOKENS), or a secret or password anywhere (PGPASSWORD).
_SECRET_NAME = re.compile(
    r"(^|_)(API_?KEY|KEY|TOKEN|AUTH|CREDENTIALS?)(_|$)|SECRET|PASSWORD|PASSWD", re.IGNORECASE
)


def private_dir(path: Path, *, exclusive: bool = False) -> Path:
    """`path` as a folder, creating it and any missing parents owner-only (0700). Returns `path`.

    `exclusive`: the folder must be ours alone even if it existed (state that other processes trust,
    possibly under a shared temporary directory): it is made 0700, and one that belongs to another user
    raises `ConfigError`, for another user could have made it first to read or forge what is in it."""
    missing: list[Path] = []
    current = path
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, DIR_MODE)
        except FileExistsError:  # another process made it first: theirs, made the same way
            continue
        os.chmod(folder, DIR_MODE)  # mkdir's mode passes through the umask
    if not path.is_dir():
        raise NotADirectoryError(f"{path} exists and is not a folder")
    if exclusive:
        if hasattr(os, "getuid") and path.stat().st_uid != os.getuid():
            raise ConfigError(
                f"{path} belongs to another user — set OPENHEAVY_RUNTIME_DIR (or OPENHEAVY_DATA_DIR) to a "
                "folder of your own"
            )
        os.chmod(path, DIR_MODE)
    return path


def create_private_file(path: Path) -> bool:
    """Create `path` empty and owner-only (0600) if it does not exist; True if this call created it.
    Its folder is created with `private_dir`."""
    private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return False
    try:
        os.fchmod(fd, FILE_MODE)  # the umask may have taken bits off even 0600
    finally:
        os.close(fd)
    return True


def open_private(path: Path, mode: str = "a", encoding: str | None = "utf-8") -> IO[str]:
    """`path` opened for writing text (`"a"` appends, `"w"` truncates); created owner-only if new."""
    if mode not in ("a", "w"):
        raise ValueError(f"open_private writes: mode 'a' or 'w', not {mode!r}")
    create_private_file(path)
    return path.open(mode, encoding=encoding)


def write_private(path: Path, text: str) -> None:
    """Replace `path` with `text` atomically (a reader never sees half a file); owner-only (0600) from
    its first byte, in a folder that is ours alone (`private_dir(exclusive=True)`)."""
    private_dir(path.parent, exclusive=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def looks_secret(name: str) -> bool:
    """Whether a variable or setting called `name` may hold a credential (an API key, a token, a
    password): its value is then never passed on, printed or echoed in an error."""
    return _SECRET_NAME.search(name) is not None


def child_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without the variables whose names say they hold a secret
    (OPENHEAVY_API_KEY, OPENAI_API_KEY, a profile's api_key_env, tokens, passwords), plus `extra`:
    what a child process such as llama-server gets."""
    env = {name: value for name, value in os.environ.items() if not looks_secret(name)}
    env.update(extra or {})
    return env
