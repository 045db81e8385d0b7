"""The public API is pinned: a change to it shows up here."""

from __future__ import annotations

import inspect

import openheavy


def test_public_names_are_pinned() -> None:
    assert openheavy.__all__ == [
        "Heavy",
        "OpenHeavyError",
        "RunOptions",
        "RunResult",
        "Settings",
        "__version__",
        "load_settings",
    ]
    for name in openheavy.__all__:
        assert getattr(openheavy, name) is not None


def test_heavy_signatures() -> None:
    assert list(inspect.signature(openheavy.Heavy).parameters) == [
        "model",
        "corpus",
        "settings",
        "api_key",
        "progress",
    ]
    assert list(inspect.signature(openheavy.Heavy.run).parameters) == [
        "self",
        "question",
        "mode",
        "options",
        "sinks",
    ]
    assert set(openheavy.RunOptions.__dataclass_fields__) >= {"agents", "max_agents", "n", "verifier"}


def test_mode_names_are_pinned() -> None:
    from openheavy.modes import MODES

    assert list(MODES) == ["direct", "single", "heavy", "heavy-rank", "rank", "rank-tools"]
