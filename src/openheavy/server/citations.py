"""An answer's citations as the server shows them: markdown footnotes for chat clients, links for the web
view. Titles and URLs come from documents, so they are untrusted: only http(s) URLs become links, and
everything else is shown as text."""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote, urlsplit

from markupsafe import Markup

from openheavy.citations import replace_markers

__all__ = ["answer_html", "answer_markdown", "link_target"]


def link_target(url: str) -> str | None:
    """`url` if it is safe to link to (http or https), else None: a `javascript:` URL in a document must
    never become a clickable link."""
    try:
        scheme = urlsplit(url.strip()).scheme.lower()
    except ValueError:
        return None
    return url.strip() if scheme in ("http", "https") else None


def _numbers(citations: Sequence[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {int(c.get("number", position)): c for position, c in enumerate(citations, start=1)}


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]()<>|])")


def _markdown_text(text: str) -> str:
    return _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(text.split()))


def answer_markdown(answer: str, citations: Sequence[dict[str, Any]]) -> str:
    """The answer with `[n]` markers as markdown footnotes (`[^n]`) and one footnote per citation:
    `[^1]: [title](url)`, or the title and its location as text when that is not a web URL."""
    by_number = _numbers(citations)

    def footnotes(numbers: list[int]) -> str:
        return "".join(f"[^{n}]" if n in by_number else f"[{n}]" for n in numbers)

    text = replace_markers(answer.strip(), footnotes)
    if not by_number:
        return text
    lines = []
    for number, citation in sorted(by_number.items()):
        title = _markdown_text(str(citation.get("title") or citation.get("id") or f"source {number}"))
        url = str(citation.get("url") or "")
        target = link_target(url)
        if target:
            lines.append(f"[^{number}]: [{title}](<{quote(target, safe=':/?#[]@!$&*+,;=%~')}>)")
        elif url:
            lines.append(f"[^{number}]: {title} — {_markdown_text(url)}")
        else:
            lines.append(f"[^{number}]: {title}")
    return text + "\n\n" + "\n".join(lines)


def answer_html(answer: str, citations: Sequence[dict[str, Any]]) -> Markup:
    """The answer as escaped HTML whose `[n]` markers link to the citation list (`#cite-n`)."""
    by_number = _numbers(citations)

    def links(numbers: list[int]) -> str:
        parts = [f'<a class="cite" href="#cite-{n}">{n}</a>' if n in by_number else str(n) for n in numbers]
        return "[" + ", ".join(parts) + "]"

    # Escaping leaves the markers ("[3]") as they are, so they can be found in the escaped text.
    return Markup(replace_markers(html.escape(answer.strip()), links))
