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


def close_cut_json(text: str) -> str | None:
    """`text` completed as JSON when a reply was cut off (at `max_tokens`) inside a string value:
    the string and every open array and object are closed. None when the cut is anywhere else.

    Why: a long answer is written JSON-escaped (`\\n`, `\\"`), so it can run past a token bound that
    counts its characters once; the text written so far is still the model's answer, and the caller
    ends it at its last full sentence rather than losing it.
    """
    start = text.find("{")
    if start < 0:
        return None
    closers: list[str] = []
    in_string = escaped = False
    string_is_key = False
    last_structural = ""
    for char in text[start:]:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
            continue
        if char == '"':
            in_string = True
            # a string right after "{" or "," inside an object is a key, not a value
            string_is_key = bool(closers) and closers[-1] == "}" and last_structural in ("{", ",")
        elif char in "{[":
            closers.append("}" if char == "{" else "]")
        elif char in "}]":
            if not closers:
                return None
            closers.pop()
        if not char.isspace() and char != '"':
            last_structural = char
        if not closers:
            return None  # the object was complete: the problem is elsewhere
    if not in_string or string_is_key:
        return None
    body = text[start:]
    if escaped:  # cut between a backslash and what it escapes
        body = body[:-1]
    body = _drop_partial_unicode_escape(body)
    return body + '"' + "".join(reversed(closers))


def _drop_partial_unicode_escape(body: str) -> str:
    """Remove a `\\uXY` cut before its four hex digits, which would not decode."""
    tail = body[-5:]
    cut = tail.rfind("\\u")
    if cut >= 0 and len(tail) - cut < 6:
        return body[: len(body) - (len(tail) - cut)]
    return body
