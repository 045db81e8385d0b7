"""Comma-separated option values: the one home of splitting `a, b,,c` (or a repeated option's several
such values) into its items."""

from __future__ import annotations

from collections.abc import Iterable


def split_commas(values: str | Iterable[str] | None) -> list[str]:
    """The non-blank items of a comma-separated value, or of several, stripped, in order (duplicates
    kept: each caller decides what a repeat means). None gives no items."""
    if values is None:
        return []
    texts = [values] if isinstance(values, str) else values
    return [item.strip() for text in texts for item in text.split(",") if item.strip()]
