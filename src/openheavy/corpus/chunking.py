"""Splitting documents into passages for the index.

A passage is about `TARGET_CHARS` characters, cut on section and paragraph boundaries, so that one
search hit is one readable piece of text. Where the format has headings (Markdown, reStructuredText),
each passage's title carries its section ("Guide › Install › Linux") so that a hit says where it is.
Consecutive passages of one section overlap a little, so that a sentence cut at a boundary is found
whole in one of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

TextFormat = Literal["text", "markdown", "rst"]

TARGET_CHARS = 1200
OVERLAP_CHARS = 150
# A section shorter than this shares its passage with the next section instead of standing alone as a
# scrap that ranks well on one word and says nothing.
MERGE_BELOW_CHARS = 300
MAX_TITLE_CHARS = 200
SECTION_SEPARATOR = " › "


@dataclass(frozen=True)
class Section:
    """A run of text under one heading. `path` lists the headings from the outermost down; it is empty
    for text before the first heading."""

    path: tuple[str, ...]
    text: str


@dataclass(frozen=True)
class Chunk:
    """One passage: the document title with its section, and the text."""

    title: str
    text: str


# ------------------------------------------------------------------ sections

_ATX = re.compile(r" {0,3}(?P<marks>#{1,6})[ \t]+(?P<text>.*?)(?:[ \t]+#+)?[ \t]*")
_FENCE = re.compile(r" {0,3}(?P<fence>`{3,}|~{3,})")
_SETEXT = re.compile(r" {0,3}(?P<line>=+|-{3,})[ \t]*")
_LIST_OR_TABLE = re.compile(r"\s*([-*+>|]|\d+[.)])(\s|$)")
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_RST_PUNCTUATION = "=-`:'\"~^_*+#<>.!$%&(),/;?@[\\]{|}"


def split_sections(text: str, fmt: TextFormat) -> list[Section]:
    """The sections of `text` according to its format's headings; plain text is one section."""
    if fmt == "markdown":
        return _markdown_sections(text)
    if fmt == "rst":
        return _rst_sections(text)
    return [Section((), text)]


class _SectionCollector:
    """Accumulates lines into sections while headings open and close levels."""

    def __init__(self) -> None:
        self.sections: list[Section] = []
        self._stack: list[tuple[int, str]] = []
        self._lines: list[str] = []

    def line(self, line: str) -> None:
        self._lines.append(line)

    def pop_line(self) -> str:
        return self._lines.pop()

    def heading(self, level: int, text: str) -> None:
        self._flush()
        while self._stack and self._stack[-1][0] >= level:
            self._stack.pop()
        self._stack.append((level, _clean_heading(text)))

    def finish(self) -> list[Section]:
        self._flush()
        return self.sections

    def _flush(self) -> None:
        body = "\n".join(self._lines).strip("\n")
        path = tuple(text for _, text in self._stack)
        # A heading with no text of its own still names the sections under it, through their paths.
        if body.strip():
            self.sections.append(Section(path, body))
        self._lines = []


def _clean_heading(text: str) -> str:
    text = _LINK.sub(r"\1", text)
    return " ".join(text.replace("`", "").replace("**", "").split())


def _markdown_sections(text: str) -> list[Section]:
    collector = _SectionCollector()
    fence: str | None = None
    # The previous line when it could be the text of a setext heading: a one-line paragraph (after a
    # blank line or a heading) that is not indented, a list item or a table row. This keeps `---` under
    # a list, a table or a long paragraph from turning it into a title.
    candidate = ""
    after_break = True
    for line in text.splitlines():
        opened = _FENCE.match(line)
        if fence is not None:
            if opened and opened["fence"][0] == fence[0] and len(opened["fence"]) >= len(fence):
                fence = None
            collector.line(line)
            candidate, after_break = "", False
            continue
        if opened:
            fence = opened["fence"]
            collector.line(line)
            candidate, after_break = "", False
            continue
        atx = _ATX.fullmatch(line)
        if atx:
            collector.heading(len(atx["marks"]), atx["text"])
            candidate, after_break = "", True
            continue
        setext = _SETEXT.fullmatch(line)
        if setext and candidate:
            collector.pop_line()
            collector.heading(1 if setext["line"][0] == "=" else 2, candidate)
            candidate, after_break = "", True
            continue
        collector.line(line)
        blank = not line.strip()
        is_text = not blank and not line.startswith("    ") and not _LIST_OR_TABLE.match(line)
        candidate = line if is_text and after_break else ""
        after_break = blank
    return collector.finish()


def _rst_sections(text: str) -> list[Section]:
    collector = _SectionCollector()
    lines = text.splitlines()
    # reST has no fixed heading levels: the first underline style seen is level 1, the next new one 2...
    styles: list[tuple[str, bool]] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        title_at = _rst_title(lines, i)
        if title_at is not None:
            title, style, consumed = title_at
            if style not in styles:
                styles.append(style)
            collector.heading(styles.index(style) + 1, title)
            i += consumed
            continue
        collector.line(line)
        i += 1
    return collector.finish()


def _is_adornment(line: str) -> bool:
    stripped = line.rstrip()
    return len(stripped) >= 3 and stripped[0] in _RST_PUNCTUATION and stripped == stripped[0] * len(stripped)


def _rst_title(lines: list[str], i: int) -> tuple[str, tuple[str, bool], int] | None:
    """A section title starting at line `i`: (title, (char, overlined), lines consumed), or None."""
    line = lines[i]
    if _is_adornment(line) and i + 2 < len(lines):
        # Overline, title, underline of the same character.
        title, under = lines[i + 1], lines[i + 2]
        if title.strip() and _is_adornment(under) and under.rstrip()[0] == line.rstrip()[0]:
            return title.strip(), (line.rstrip()[0], True), 3
        return None
    if (
        line.strip()
        and not line[0].isspace()
        and not _is_adornment(line)
        and i + 1 < len(lines)
        and _is_adornment(lines[i + 1])
        and (i == 0 or not lines[i - 1].strip())
    ):
        return line.strip(), (lines[i + 1].rstrip()[0], False), 2
    return None


# ------------------------------------------------------------------ passages

_BLANK_LINES = re.compile(r"\n[ \t]*(?:\n[ \t]*)+\n|\n[ \t]*\n")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def paragraphs(text: str) -> list[str]:
    """The paragraphs of `text`: runs of lines between blank (or whitespace-only) lines."""
    return [p.rstrip() for p in _BLANK_LINES.split(text.strip("\n")) if p.strip()]


def chunk_document(
    title: str,
    text: str,
    fmt: TextFormat = "text",
    *,
    target: int = TARGET_CHARS,
    overlap: int = OVERLAP_CHARS,
) -> list[Chunk]:
    """Split a document into passages of at most `target` characters on section and paragraph boundaries.

    Passages of one section overlap by up to `overlap` characters. Each passage's title is `title`
    followed by its section path. A document with no text has no passages.
    """
    builder = _ChunkBuilder(title, target, overlap)
    for section in split_sections(text, fmt):
        builder.add_section(section)
    return builder.finish()


def chunk_title(doc_title: str, path: tuple[str, ...]) -> str:
    """`doc_title › section › subsection`, without repeating a first heading that is the title itself."""
    if path and path[0].casefold() == doc_title.casefold():
        path = path[1:]
    title = SECTION_SEPARATOR.join((doc_title, *path)) if path else doc_title
    if len(title) > MAX_TITLE_CHARS:
        title = title[: MAX_TITLE_CHARS - 1].rstrip() + "…"
    return title


class _ChunkBuilder:
    def __init__(self, doc_title: str, target: int, overlap: int) -> None:
        self.doc_title = doc_title
        self.target = target
        self.overlap = overlap
        self.chunks: list[Chunk] = []
        self._path: tuple[str, ...] = ()
        self._parts: list[str] = []
        self._size = 0
        self._fresh = False  # holds text not already emitted in an earlier passage

    def add_section(self, section: Section) -> None:
        # Pieces of a split paragraph leave room for the overlap that starts the next passage.
        room = max(self.target - self.overlap, self.target // 2)
        pieces = [
            piece
            for para in paragraphs(section.text)
            for piece in ([para] if len(para) <= self.target else _split_long(para, room))
        ]
        if not pieces:
            return
        heading = section.path[-1] if section.path else ""
        merge = (
            self._fresh
            and self._size < MERGE_BELOW_CHARS
            and self._size + len(heading) + len(pieces[0]) + 4 <= self.target
        )
        if merge:
            # This section's heading goes into the text; the passage is titled by what the merged
            # sections share (their common heading path), so the title never names only one of them.
            if heading:
                self._append(heading)
            self._path = _common_prefix(self._path, section.path)
        else:
            self._emit()
            self._start(section.path, [])
        for piece in pieces:
            if self._fresh and self._size + len(piece) + 2 > self.target:
                tail = _overlap_tail(self._parts[-1], min(self.overlap, self.target - len(piece) - 2))
                self._emit()
                self._start(section.path, [tail] if tail else [])
            self._append(piece)
            self._fresh = True

    def finish(self) -> list[Chunk]:
        self._emit()
        return self.chunks

    def _start(self, path: tuple[str, ...], parts: list[str]) -> None:
        self._path = path
        self._parts = parts
        self._size = sum(len(p) + 2 for p in parts)
        self._fresh = False

    def _append(self, text: str) -> None:
        self._parts.append(text)
        self._size += len(text) + 2

    def _emit(self) -> None:
        if self._fresh:
            self.chunks.append(Chunk(chunk_title(self.doc_title, self._path), "\n\n".join(self._parts)))
        self._parts = []
        self._size = 0
        self._fresh = False


def _common_prefix(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
    shared = 0
    while shared < min(len(a), len(b)) and a[shared] == b[shared]:
        shared += 1
    return a[:shared]


def _overlap_tail(text: str, overlap: int) -> str:
    """The end of `text` to repeat at the start of the next passage: whole sentences or words."""
    if overlap <= 0:
        return ""
    if len(text) <= overlap:
        return text
    tail = text[-overlap:]
    sentence = _SENTENCE_END.search(tail)
    if sentence and sentence.end() < len(tail):
        return tail[sentence.end() :]
    space = re.search(r"\s", tail)
    return tail[space.end() :] if space else tail


def _split_long(text: str, target: int) -> list[str]:
    """Split a paragraph longer than `target` on lines, then sentences, then spaces, then anywhere."""
    if len(text) <= target:
        return [text]
    for splitter in (re.compile(r"\n"), _SENTENCE_END, re.compile(r"[ \t]+")):
        parts = [p for p in splitter.split(text) if p.strip()]
        if len(parts) > 1:
            joiner = "\n" if splitter.pattern == r"\n" else " "
            return [piece for packed in _pack(parts, joiner, target) for piece in _split_long(packed, target)]
    return [text[i : i + target] for i in range(0, len(text), target)]


def _pack(parts: list[str], joiner: str, target: int) -> list[str]:
    """Greedily join consecutive parts while they fit in `target`."""
    packed: list[str] = []
    current = ""
    for part in parts:
        if current and len(current) + len(joiner) + len(part) > target:
            packed.append(current)
            current = part
        else:
            current = f"{current}{joiner}{part}" if current else part
    if current:
        packed.append(current)
    return packed
