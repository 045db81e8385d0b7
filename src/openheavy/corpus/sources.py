"""Reading files into documents: Markdown, reStructuredText, text, HTML, PDF and JSONL.

Every file becomes one `SourceDoc`, except JSONL, where every line is one. A document's text keeps the
structure the chunker needs (headings) and drops what a reader would not see (markup, scripts). Text
that is not UTF-8 is decoded with the encoding charset-normalizer detects; binary content and text whose
encoding cannot be told are refused with a `CorpusError` naming the file.
"""

from __future__ import annotations

import json
import os
import re
from codecs import BOM_UTF16_BE, BOM_UTF16_LE, BOM_UTF32_BE, BOM_UTF32_LE
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
    encoding: str = "utf-8"  # the encoding its file was read with; any other than UTF-8 was detected


# Directories that hold tooling, caches or dependencies, never a user's documents.
SKIPPED_DIRS = frozenset({"node_modules", "__pycache__", "site-packages"})

_JSONL_HINT = (
    'each line must be a JSON object like {"id": "...", "title": "...", "text": "...", "url": "..."}'
)


def supported_suffixes() -> tuple[str, ...]:
    """The file name endings `read_file` understands."""
    return tuple(sorted(_READERS))


def discover_files(root: Path, on_error: Callable[[OSError], None] | None = None) -> list[Path]:
    """The indexable files at `root` (a file or a folder, searched recursively), sorted.

    Hidden files and folders (".git", ".venv") and dependency caches are skipped. A file named
    explicitly must have a supported type; in a folder, other files are ignored. A folder that cannot
    be listed is passed to `on_error` (its `filename` names it) and left out.
    """
    if root.is_file():
        if root.suffix.lower() not in _READERS:
            raise CorpusError(
                f"cannot index {root}: unsupported file type {root.suffix or '(none)'!r}"
                f" — supported: {', '.join(supported_suffixes())}"
            )
        return [root]
    found: list[Path] = []
    for folder, dirs, files in os.walk(root, onerror=on_error):
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


# A NUL byte within the first 8 KiB marks a file as binary: the test git and GNU grep use. Text in UTF-16
# or UTF-32 has NULs too, but starts with a byte-order mark, which is checked first.
BINARY_SNIFF_BYTES = 8192
_BOMS = (
    (BOM_UTF32_LE, "utf-32"),  # before UTF-16: its BOM starts with UTF-16-LE's
    (BOM_UTF32_BE, "utf-32"),
    (BOM_UTF16_LE, "utf-16"),
    (BOM_UTF16_BE, "utf-16"),
)


@dataclass(frozen=True)
class DecodedText:
    """A file's text, with the encoding it was read with."""

    text: str
    encoding: str


def decode_text(data: bytes, path: Path) -> DecodedText:
    """A text file's bytes as text with "\n" line ends: UTF-8 (with or without BOM), UTF-16/32 with a
    BOM, or else the encoding charset-normalizer detects. Raises `CorpusError` naming `path` when the
    bytes look binary or no encoding fits: guessed text full of replacement characters is worse than none.
    """
    text, encoding = _decode(data, path)
    return DecodedText(text.replace("\r\n", "\n").replace("\r", "\n"), encoding)


def _decode(data: bytes, path: Path) -> tuple[str, str]:
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(encoding), encoding
            except UnicodeDecodeError as exc:
                raise CorpusError(
                    f"cannot index {path}: it starts like {encoding.upper()} text but is not valid"
                    f" {encoding.upper()} ({exc.reason} at byte {exc.start}) — save it again as UTF-8"
                ) from None
    if b"\0" in data[:BINARY_SNIFF_BYTES]:
        raise CorpusError(
            f"cannot index {path}: it looks like a binary file, not {path.suffix or 'text'} (it contains NUL"
            " bytes) — leave it out, or save it as UTF-8 text if it is text"
        )
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        pass
    detected = detect_encoding(data)
    if detected is None:
        raise CorpusError(
            f"cannot index {path}: it is not UTF-8 and its encoding could not be detected (it may be"
            " binary) — convert it to UTF-8, e.g. iconv -f ENCODING -t UTF-8"
        )
    return data.decode(detected), detected


def detect_encoding(data: bytes) -> str | None:
    """The encoding charset-normalizer finds for bytes that are not UTF-8, or None when none fits
    (binary data, most often)."""
    from charset_normalizer import from_bytes  # 16 ms to import; only files that are not UTF-8 need it

    matches = list(from_bytes(data))
    if not matches:
        return None
    best = matches[0]
    # Short Western text fits several single-byte code pages equally well ("Café" is the same bytes in
    # cp1250, cp1252 and cp1257) and charset-normalizer then picks one in name order. Windows-1252
    # (Latin-1's letters plus typographic marks) is the most common of them, and what browsers assume
    # for unlabelled legacy pages, so it wins a tie, and is named when it reads the bytes as the winner.
    tied = {m.encoding for m in matches if (m.chaos, m.coherence) == (best.chaos, best.coherence)}
    if "cp1252" in tied or _reads_as(data, "cp1252", str(best)):
        return "cp1252"
    return str(best.encoding)


def _reads_as(data: bytes, encoding: str, text: str) -> bool:
    try:
        return data.decode(encoding) == text
    except UnicodeDecodeError:
        return False


def _first_heading(text: str, fmt: TextFormat) -> str:
    for section in split_sections(text, fmt):
        if section.path:
            return section.path[0]
    return ""


def _read_markup(fmt: TextFormat) -> Callable[[Path, bytes, str], list[SourceDoc]]:
    def read(path: Path, data: bytes, doc_id: str) -> list[SourceDoc]:
        decoded = decode_text(data, path)
        title = _first_heading(decoded.text, fmt) or path.name
        return [SourceDoc(doc_id, title, decoded.text, str(path), fmt, decoded.encoding)]

    return read


def _read_text(path: Path, data: bytes, doc_id: str) -> list[SourceDoc]:
    decoded = decode_text(data, path)
    return [SourceDoc(doc_id, path.name, decoded.text, str(path), "text", decoded.encoding)]


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
    decoded = decode_text(data, path)
    title, text = html_to_text(decoded.text)
    title = title or _first_heading(text, "markdown") or path.name
    return [SourceDoc(doc_id, title, text, str(path), "markdown", decoded.encoding)]


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
    for number, line in enumerate(jsonl_text(path, data).split("\n"), start=1):
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


def jsonl_text(path: Path, data: bytes) -> str:
    """The text of a JSON or JSONL file (`data`, read from `path`). JSON text must be UTF-8 (RFC 8259),
    and ids in a guessed encoding would be silently wrong, so other encodings are refused with the line
    and a conversion command (`CorpusError`). Corpus files and eval datasets both read through it."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        guess = None if b"\0" in data[:BINARY_SNIFF_BYTES] else detect_encoding(data)
        source = _iconv_name(guess) if guess else "ENCODING"
        looks = f" (it looks like {guess})" if guess else ""
        kind = "JSON Lines" if path.suffix == ".jsonl" else "JSON"
        raise CorpusError(
            f"{path}:{line}: not UTF-8{looks} — {kind} files must be UTF-8; convert it:"
            f" iconv -f {source} -t UTF-8 {path.name} > {path.stem}.utf8{path.suffix}"
        ) from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _iconv_name(encoding: str) -> str:
    """A Python codec name as iconv spells it: "koi8_r" -> "koi8-r", "iso8859_10" -> "iso-8859-10"."""
    name = encoding.replace("_", "-").replace("iso8859-", "iso-8859-")
    return re.sub(r"-(be|le)$", r"\1", name)


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
