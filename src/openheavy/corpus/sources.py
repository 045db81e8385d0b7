"""Reading files into documents: Markdown, reStructuredText, text, HTML, PDF and JSONL.

Every file becomes one `SourceDoc`, except JSONL, where every line is one. A document's text keeps the
structure the chunker needs (headings) and drops what a reader would not see (markup, scripts).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from openheavy.corpus.chunking import TextFormat, split_sections
from openheavy.errors import CorpusError
from openheavy.pdf import read_pdf


@dataclass(frozen=True)
class SourceDoc:
    """A document to index. `format` says how to find its headings when it is split into passages."""

    id: str
    title: str
    text: str
    url: str = ""
    format: TextFormat = "text"


# Directories that hold tooling, caches or dependencies, never a user's documents.
SKIPPED_DIRS = frozenset({"node_modules", "__pycache__", "site-packages"})

_JSONL_HINT = (
    'each line must be a JSON object like {"id": "...", "title": "...", "text": "...", "url": "..."}'
)


def supported_suffixes() -> tuple[str, ...]:
    """The file name endings `read_file` understands."""
    return tuple(sorted(_READERS))


def discover_files(root: Path) -> list[Path]:
    """The indexable files at `root` (a file or a folder, searched recursively), sorted.

    Hidden files and folders (".git", ".venv") and dependency caches are skipped. A file named
    explicitly must have a supported type; in a folder, other files are ignored.
    """
    if root.is_file():
        if root.suffix.lower() not in _READERS:
            raise CorpusError(
                f"cannot index {root}: unsupported file type {root.suffix or '(none)'!r}"
                f" — supported: {', '.join(supported_suffixes())}"
            )
        return [root]
    found: list[Path] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIPPED_DIRS)
        for name in sorted(files):
            path = Path(folder, name)
            if not name.startswith(".") and path.suffix.lower() in _READERS:
                found.append(path)
    return found


def read_file(path: Path, data: bytes, doc_id: str) -> list[SourceDoc]:
    """The documents in one file, given its bytes. `doc_id` names the document of a single-document
    file; JSONL lines carry their own ids. Raises `CorpusError` naming the file (and line) on bad input.
    """
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise CorpusError(f"cannot index {path}: unsupported file type {path.suffix!r}")
    return reader(path, data, doc_id)


# ------------------------------------------------------------------ text formats


def decode_text(data: bytes) -> str:
    """Bytes to text: UTF-8 (with or without BOM); undecodable bytes become U+FFFD instead of failing."""
    return data.decode("utf-8-sig", errors="replace").replace("\r\n", "\n").replace("\r", "\n")


def _first_heading(text: str, fmt: TextFormat) -> str:
    for section in split_sections(text, fmt):
        if section.path:
            return section.path[0]
    return ""


def _read_markup(fmt: TextFormat) -> Callable[[Path, bytes, str], list[SourceDoc]]:
    def read(path: Path, data: bytes, doc_id: str) -> list[SourceDoc]:
        text = decode_text(data)
        title = _first_heading(text, fmt) or path.name
        return [SourceDoc(doc_id, title, text, str(path), fmt)]

    return read


def _read_text(path: Path, data: bytes, doc_id: str) -> list[SourceDoc]:
    return [SourceDoc(doc_id, path.name, decode_text(data), str(path), "text")]


# ------------------------------------------------------------------ HTML

# Tags that end a paragraph. (`li` starts a "- " line instead.)
_BLOCK_TAGS = frozenset(
    {
        *("address", "article", "aside", "blockquote", "dd", "details", "div", "dl", "dt", "fieldset"),
        *("figcaption", "figure", "form", "header", "hr", "main", "ol", "p", "pre", "section"),
        *("summary", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "ul"),
    }
)
# Tags whose text a reader does not see as content: code, styling, and site navigation boilerplate.
_HIDDEN_TAGS = frozenset(
    {"script", "style", "noscript", "template", "svg", "head", "iframe", "object", "canvas", "nav", "footer"}
)
_HEADINGS = {f"h{level}": level for level in range(1, 7)}
_HEADING_MARK = "\x00h"


class _HTMLText(HTMLParser):
    """Collects the visible text of a page as Markdown-like text: headings as `#` lines (so the
    chunker finds sections), blocks as paragraphs, `<pre>` verbatim."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title = ""
        self.out: list[str] = []
        self._hidden = 0
        self._pre = 0
        self._in_title = False
        self._heading: list[str] | None = None
        self._heading_level = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HIDDEN_TAGS:
            self._hidden += 1
        elif tag == "title":
            self._in_title = True
        elif tag in _HEADINGS:
            self._heading = []
            self._heading_level = _HEADINGS[tag]
        elif tag == "pre":
            self._pre += 1
            self.out.append("\n\n")
        elif tag == "br":
            self.out.append("\n")
        elif tag == "li":
            self.out.append("\n- ")
        elif tag in _BLOCK_TAGS:
            self.out.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN_TAGS:
            self._hidden = max(0, self._hidden - 1)
        elif tag == "title":
            self._in_title = False
        elif tag in _HEADINGS and self._heading is not None:
            heading = " ".join("".join(self._heading).split())
            if heading:
                # A marker, not "#", so that `text()` can tell real headings from text starting with "#".
                self.out.append(f"\n\n{_HEADING_MARK}{self._heading_level} {heading}\n\n")
            self._heading = None
        elif tag == "pre":
            self._pre = max(0, self._pre - 1)
            self.out.append("\n\n")
        elif tag in _BLOCK_TAGS:
            self.out.append("\n\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        elif self._hidden:
            return
        elif self._heading is not None:
            self._heading.append(data)
        elif self._pre:
            self.out.append(data)
        else:
            self.out.append(re.sub(r"\s+", " ", data))

    def text(self) -> str:
        # Collapsed whitespace leaves at most one space at a line start; more is `<pre>` indentation.
        lines = [_drop_one_space(line.rstrip()) for line in "".join(self.out).split("\n")]
        # Only `<h1>`..`<h6>` are headings; page text that looks like Markdown headings is escaped.
        body = _escape_markdown_headings("\n".join(lines))
        body = re.sub(f"{_HEADING_MARK}([1-6]) ", lambda m: "#" * int(m[1]) + " ", body)
        return re.sub(r"\n{3,}", "\n\n", body).strip()


def _drop_one_space(line: str) -> str:
    return line[1:] if line.startswith(" ") and not line.startswith("  ") else line


def html_to_text(html: str) -> tuple[str, str]:
    """The `<title>` and the visible text (Markdown-style headings) of an HTML page."""
    parser = _HTMLText()
    parser.feed(html)
    parser.close()
    return " ".join(parser.title.split()), parser.text()


def _read_html(path: Path, data: bytes, doc_id: str) -> list[SourceDoc]:
    title, text = html_to_text(decode_text(data))
    title = title or _first_heading(text, "markdown") or path.name
    return [SourceDoc(doc_id, title, text, str(path), "markdown")]


# ------------------------------------------------------------------ PDF


def _read_pdf(path: Path, data: bytes, doc_id: str) -> list[SourceDoc]:
    try:
        pdf = read_pdf(data)
    except ValueError as exc:
        raise CorpusError(f"cannot read PDF {path}: {exc}") from exc
    # Each page becomes a section, so a hit says which page it is on.
    parts: list[str] = []
    for number, page in enumerate(pdf.pages, start=1):
        body = _escape_markdown_headings(page.strip())
        if body:
            parts.append(f"# Page {number}\n\n{body}")
    return [SourceDoc(doc_id, pdf.title or path.name, "\n\n".join(parts), str(path), "markdown")]


def _escape_markdown_headings(text: str) -> str:
    """Keep extracted lines from reading as Markdown headings (`# x`, or `===` / `---` under text)."""
    return _HEADING_LIKE.sub(r"\1\\\2", text)


_HEADING_LIKE = re.compile(r"(?m)^( {0,3})(#{1,6}(?:[ \t]|$)|=+[ \t]*$|-{3,}[ \t]*$)")


# ------------------------------------------------------------------ JSONL


def _read_jsonl(path: Path, data: bytes, doc_id: str) -> list[SourceDoc]:
    docs: list[SourceDoc] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(decode_text(data).split("\n"), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CorpusError(f"{where}: not valid JSON ({exc.msg}) — {_JSONL_HINT}") from None
        if not isinstance(record, dict):
            raise CorpusError(f"{where}: expected a JSON object, got {type(record).__name__} — {_JSONL_HINT}")
        missing = [key for key in ("id", "title", "text") if key not in record]
        if missing:
            raise CorpusError(f"{where}: missing {', '.join(missing)} — {_JSONL_HINT}")
        raw_id, title, text, url = record["id"], record["title"], record["text"], record.get("url", "")
        if isinstance(raw_id, bool) or not isinstance(raw_id, str | int) or not str(raw_id).strip():
            raise CorpusError(f"{where}: 'id' must be a non-empty string or an integer — {_JSONL_HINT}")
        for key, value in (("title", title), ("text", text), ("url", url)):
            if not isinstance(value, str):
                raise CorpusError(f"{where}: {key!r} must be a string, got {type(value).__name__}")
        line_id = str(raw_id)
        if line_id in seen:
            raise CorpusError(
                f"{where}: id {line_id!r} is already used on line {seen[line_id]} — ids must be unique"
            )
        seen[line_id] = number
        docs.append(SourceDoc(line_id, title, text, url or str(path), "text"))
    return docs


_READERS: dict[str, Callable[[Path, bytes, str], list[SourceDoc]]] = {
    ".md": _read_markup("markdown"),
    ".markdown": _read_markup("markdown"),
    ".rst": _read_markup("rst"),
    ".txt": _read_text,
    ".html": _read_html,
    ".htm": _read_html,
    ".pdf": _read_pdf,
    ".jsonl": _read_jsonl,
}
