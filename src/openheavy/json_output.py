"""Pulling the JSON object out of a model's reply: the one extractor every caller uses.

With constrained decoding the reply is exactly one object. Backends without it wrap the object in a code
fence or prose ("Sure! Here it is: {...}"), sometimes with braces of their own before it, so the first
`{` that starts a whole JSON object wins, and whatever follows that object is ignored.
"""

from __future__ import annotations

import json
from typing import Any

_DECODER = json.JSONDecoder()


def first_json_object(text: str) -> dict[str, Any]:
    """The first complete JSON object in `text`.

    Raises `ValueError` with a message meant to be shown back to the model: "no JSON object found" when
    `text` has no `{`, else "invalid JSON (<what> at char <n>)" for the first candidate's error.
    """
    first_error: json.JSONDecodeError | None = None
    start = text.find("{")
    if start < 0:
        raise ValueError("no JSON object found")
    while start >= 0:
        try:
            value, _ = _DECODER.raw_decode(text, start)
        except json.JSONDecodeError as exc:
            first_error = first_error or exc
        else:
            if isinstance(value, dict):  # always, as it starts at "{"; checked for the type checker
                return value
        start = text.find("{", start + 1)
    assert first_error is not None
    raise ValueError(f"invalid JSON ({first_error.msg} at char {first_error.pos})") from first_error
