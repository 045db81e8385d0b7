"""The one JSON extractor for model output: code fences, prose around the object, braces before it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from openheavy.json_output import close_cut_json, first_json_object


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"action": "search", "query": "bm25"}', {"action": "search", "query": "bm25"}),
        ('  \n{"a": 1}\n', {"a": 1}),
        ('```json\n{"a": 1}\n```', {"a": 1}),
        ('Sure! Here it is:\n```\n{"a": {"b": [1, 2]}}\n```\nHope this helps.', {"a": {"b": [1, 2]}}),
        # the first whole object wins; a second one, or a stray brace after it, is ignored
        ('{"a": 1} and then {"a": 2}', {"a": 1}),
        ('{"score": 7}} trailing brace', {"score": 7}),
        # braces in prose before the object are skipped: "{search}" is not JSON
        ('I will use {search} now: {"action": "search", "query": "x"}', {"action": "search", "query": "x"}),
        ('{"text": "a } inside a string {"}', {"text": "a } inside a string {"}),
        ("{}", {}),
    ],
)
def test_finds_the_first_json_object(text: str, expected: dict[str, Any]) -> None:
    assert first_json_object(text) == expected


def test_an_object_inside_a_list_is_still_found() -> None:
    assert first_json_object('[{"a": 1}]') == {"a": 1}


@pytest.mark.parametrize("text", ["", "no json here", "[1, 2, 3]", '"just a string"'])
def test_no_object_says_so(text: str) -> None:
    with pytest.raises(ValueError, match=r"^no JSON object found$"):
        first_json_object(text)


def test_invalid_json_reports_the_first_error_and_where() -> None:
    with pytest.raises(ValueError, match=r"^invalid JSON \(Expecting ',' delimiter at char 8\)$"):
        first_json_object('{"a": 1 "b": 2}')


def test_a_truncated_object_is_invalid() -> None:
    with pytest.raises(ValueError, match="invalid JSON"):
        first_json_object('{"answer": "cut off in the mid')


def test_a_reply_cut_inside_a_string_value_is_closed() -> None:
    closed = close_cut_json('{"action": "answer", "answer": "Use run.\\nThen \\"x')
    assert closed is not None and json.loads(closed) == {"action": "answer", "answer": 'Use run.\nThen "x'}
    # cut between a backslash and what it escapes, or inside a \\u escape
    assert json.loads(close_cut_json('{"a": ["x\\') or "") == {"a": ["x"]}
    assert json.loads(close_cut_json('{"a": "x\\u00') or "") == {"a": "x"}


def test_a_reply_cut_anywhere_else_is_not_guessed() -> None:
    assert close_cut_json('{"a": [1, 2') is None  # not inside a string
    assert close_cut_json('{"answ') is None  # inside a key
    assert close_cut_json('{"a": "done"}') is None  # complete
    assert close_cut_json("no json") is None
