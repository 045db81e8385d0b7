"""Other processes, as the shared-server bookkeeping sees them: is a pid alive, is it still the process we
recorded (pids are reused), what command is it running. Linux reads `/proc`; elsewhere a signal probe
answers "alive" and identity checks are skipped."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

__all__ = [
    "pid_alive",
    "process_command",
    "process_start",
    "same_process",
    "terminate_and_wait",
    "usable_cores",
]


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ")".
    return text.rsplit(")", 1)[1].split()


def pid_alive(pid: int) -> bool:
    """True while `pid` is a live process; a zombie (dead, not yet reaped) counts as gone."""
    if pid <= 0:
        return False
    fields = _stat_fields(pid)
    if fields is not None:
        return fields[0] != "Z"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def process_start(pid: int) -> int | None:
    """When `pid` started, in clock ticks since boot (Linux); None where that cannot be read.

    Recorded beside a pid, it tells the process we saw from a later one that got the same pid."""
    fields = _stat_fields(pid)
    if fields is None or len(fields) < 20:
        return None
    try:
        return int(fields[19])  # field 22 of /proc/PID/stat; fields[0] is field 3
    except ValueError:
        return None


def same_process(pid: int, start: int | None) -> bool:
    """`pid` is alive and is the process that had start time `start` (when both are known)."""
    if not pid_alive(pid):
        return False
    if start is None:
        return True
    now = process_start(pid)
    return now is None or now == start


def process_command(pid: int) -> list[str] | None:
    """The argv of `pid` (Linux), or None where it cannot be read."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]


def terminate_and_wait(pid: int, grace: float) -> bool:
    """SIGTERM `pid`, wait up to `grace` seconds, then SIGKILL it; True once it is gone.

    For processes that are not our children (their parent reaps them): we only watch them go."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                return True
            time.sleep(0.02)
    return not pid_alive(pid)
