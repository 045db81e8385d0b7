"""Short text for people, shared by the live view and the renderers: one-line clipping, durations,
counts, token figures."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["code_outcome", "compact_json", "duration", "one_line", "plural", "tokens_in_out"]


def one_line(text: str, limit: int = 160) -> str:
    """`text` on one line (white space folded), cut to `limit` characters with an ellipsis."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def duration(value: float) -> str:
    """Seconds as people read them: `250 ms`, `41.2 s`, `12.5 min`."""
    if value < 1:
        return f"{value * 1000:.0f} ms"
    return f"{value:.1f} s" if value < 600 else f"{value / 60:.1f} min"


def plural(number: int, noun: str) -> str:
    """`1 hit`, `3 hits`, `1,204 documents`."""
    return f"{number:,} {noun}" if number == 1 else f"{number:,} {noun}s"


def tokens_in_out(prompt: int, completion: int) -> str:
    """Prompt and completion tokens: `1,234 in / 210 out`."""
    return f"{prompt:,} in / {completion:,} out"


def code_outcome(limit: str | None, exit_status: int) -> str:
    """How a run of the python tool ended: `exit status 1`, `stopped by the cpu limit`."""
    return f"stopped by the {limit} limit" if limit else f"exit status {exit_status}"


def compact_json(value: Any) -> str:
    """`value` as one line of JSON, non-ASCII kept as it is; anything else as its `str`."""
    return json.dumps(value, ensure_ascii=False, default=str)
