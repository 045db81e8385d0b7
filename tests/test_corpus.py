"""Corpora: chunking, reading files, incremental indexing, the catalog API and the pydocs corpus."""

from __future__ import annotations

import itertools
import json
import os
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fakes import damage_sqlite_page, make_pdf
from openheavy.corpus import (
    SourceDoc,
    index_documents,
    index_paths,
    list_corpora,
    open_corpus,
)
from openheavy.corpus.catalog import ensure_pydocs, validate_name
from openheavy.corpus.chunking import (
    OVERLAP_CHARS,
    TARGET_CHARS,
    Section,
    chunk_document,
    split_sections,
)
from openheavy.corpus.pydocs import module_names, pydoc_to_markdown, render_modules, summary_line
from openheavy.corpus.sources import discover_files, html_to_text, read_file
from openheavy.errors import CorpusError, DamagedIndexError, EmptyIndexError, UnknownCorpusError
from openheavy.search.local import LocalIndex

FIXTURES = Path(__file__).parent / "fixtures" / "corpus"


@pytest.fixture
def corpus_dir(tmp_path: Path) -> Path:
    """A copy of the fixture folder that tests may edit."""
    target = tmp_path / "notes"
    shutil.copytree(FIXTURES, target)
    return target


# ------------------------------------------------------------------ chunking


def test_markdown_sections_follow_heading_levels() -> None:
    text = (FIXTURES / "guide.md").read_text()
    paths = [section.path for section in split_sections(text, "markdown")]
    assert paths == [
        ("Gardening Guide",),
        ("Gardening Guide", "Watering"),
        ("Gardening Guide", "Soil"),
        ("Gardening Guide", "Soil", "Fertilizer"),
    ]
    watering = split_sections(text, "markdown")[1]
    assert "# this comment is code, not a heading" in watering.text  # fenced code is not a heading


def test_markdown_setext_headings_but_not_rules_under_lists() -> None:
    text = "Title\n=====\n\nintro\n\nPart\n----\n\nbody\n\n- item\n---\n\nafter"
    sections = split_sections(text, "markdown")
    assert [s.path for s in sections] == [("Title",), ("Title", "Part")]
    assert sections[1].text.endswith("- item\n---\n\nafter")


def test_rst_heading_styles_are_levels_in_order_of_appearance() -> None:
    sections = split_sections((FIXTURES / "reference.rst").read_text(), "rst")
    assert [s.path for s in sections] == [
        ("Telescope Manual", "Assembly"),
        ("Telescope Manual", "Assembly", "Collimation"),
    ]


def test_plain_text_is_one_section() -> None:
    assert split_sections("# not a heading\n\ntext", "text") == [Section((), "# not a heading\n\ntext")]


def test_chunk_titles_carry_the_section() -> None:
    chunks = chunk_document("Telescope Manual", (FIXTURES / "reference.rst").read_text(), "rst")
    # The two sections are short, so they share one passage titled by what they have in common.
    assert [c.title for c in chunks] == ["Telescope Manual › Assembly"]
    assert "Collimation" in chunks[0].text and "equatorial mount" in chunks[0].text


def test_long_sections_split_near_target_with_overlap() -> None:
    paragraphs = [f"Paragraph {i} says something about topic {i}. " * 6 for i in range(20)]
    text = "# Doc\n\n## Part\n\n" + "\n\n".join(paragraphs)
    chunks = chunk_document("Doc", text, "markdown")
    assert len(chunks) >= 4
    assert all(c.title == "Doc › Part" for c in chunks)
    assert all(len(c.text) <= TARGET_CHARS for c in chunks)
    for previous, current in itertools.pairwise(chunks):
        first_paragraph = current.text.split("\n\n")[0]
        assert first_paragraph in previous.text  # the overlap repeats the end of the previous passage
        assert len(first_paragraph) <= OVERLAP_CHARS
    joined = "\n\n".join(c.text for c in chunks)
    assert all(p.strip() in joined for p in paragraphs)  # nothing lost


def test_a_paragraph_longer_than_a_passage_is_split_on_sentences() -> None:
    text = " ".join(f"Sentence number {i} is here." for i in range(200))
    chunks = chunk_document("T", text)
    assert len(chunks) > 3
    assert all(len(c.text) <= TARGET_CHARS for c in chunks)
    assert all(c.text.rstrip().endswith(".") for c in chunks)  # cut between sentences
    assert chunks[1].text.startswith("Sentence number")  # the overlap is whole sentences too


def test_unbroken_text_is_still_cut() -> None:
    chunks = chunk_document("T", "x" * 5000)
    assert len(chunks) == 5
    assert all(len(c.text) <= TARGET_CHARS for c in chunks)


def test_empty_documents_have_no_chunks() -> None:
    assert chunk_document("T", "") == []
    assert chunk_document("T", "# Only\n\n## Headings\n", "markdown") == []


# ------------------------------------------------------------------ reading files


def test_discover_files_skips_hidden_and_unsupported() -> None:
    found = [path.relative_to(FIXTURES).as_posix() for path in discover_files(FIXTURES)]
    assert found == ["guide.md", "notes.txt", "page.html", "records.jsonl", "reference.rst", "sub/deeper.md"]


def test_an_unsupported_file_named_explicitly_is_an_error() -> None:
    with pytest.raises(CorpusError, match=r"unsupported file type '.csv' — supported: .htm, .html"):
        discover_files(FIXTURES / "ignored.csv")


def test_html_keeps_visible_text_and_headings() -> None:
    title, text = html_to_text((FIXTURES / "page.html").read_text())
    assert title == "Bread Baking Basics"
    assert text.startswith("# Sourdough\n\nA sourdough starter")
    assert "## Proofing" in text
    assert "zzyzx" not in text and "color" not in text and "Recipes" not in text


def test_html_text_that_looks_like_a_heading_is_not_one() -> None:
    _, text = html_to_text("<h1>Real</h1><p># fake heading</p><pre>code\n    indented</pre>")
    assert [s.path for s in split_sections(text, "markdown")] == [("Real",)]
    assert "code\n    indented" in text


def test_markdown_title_is_the_first_heading() -> None:
    path = FIXTURES / "guide.md"
    (document,) = read_file(path, path.read_bytes(), "notes/guide.md")
    assert (document.id, document.title, document.url) == ("notes/guide.md", "Gardening Guide", str(path))
    assert document.format == "markdown"


def test_jsonl_lines_are_documents() -> None:
    path = FIXTURES / "records.jsonl"
    docs = read_file(path, path.read_bytes(), "ignored")
    assert [(d.id, d.title) for d in docs] == [("r1", "Volcanoes of Iceland"), ("r2", "Glaciers")]
    assert docs[0].url == "https://example.org/volcanoes"
    assert docs[1].url == str(path)  # no url given: the file


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('{"id": "a", "title": "t"', r"data\.jsonl:2: not valid JSON"),
        ('["a", "b"]', r"data\.jsonl:2: expected a JSON object, got list"),
        ('{"id": "b", "title": "t"}', r"data\.jsonl:2: missing text"),
        ('{"id": "b", "title": 3, "text": "x"}', r"data\.jsonl:2: 'title' must be a string, got int"),
        ('{"id": null, "title": "t", "text": "x"}', r"data\.jsonl:2: 'id' must be a non-empty string"),
        ('{"id": "a", "title": "t", "text": "x"}', r"data\.jsonl:2: id 'a' is already used on line 1"),
    ],
)
def test_bad_jsonl_lines_name_file_and_line(tmp_path: Path, line: str, problem: str) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text('{"id": "a", "title": "t", "text": "x"}\n' + line + "\n")
    with pytest.raises(CorpusError, match=problem):
        read_file(path, path.read_bytes(), "data.jsonl")


def test_pdf_pages_become_sections(tmp_path: Path) -> None:
    path = tmp_path / "report.pdf"
    first = "Quarterly revenue grew strongly in every region. " * 8
    path.write_bytes(make_pdf([first, "# Costs fell in the north."]))
    (document,) = read_file(path, path.read_bytes(), "report.pdf")
    assert document.title == "report.pdf"
    chunks = chunk_document(document.title, document.text, document.format)
    assert [c.title for c in chunks] == ["report.pdf › Page 1", "report.pdf › Page 2"]
    assert chunks[0].text.startswith("Quarterly revenue grew")
    assert chunks[1].text == "\\# Costs fell in the north."  # page text never reads as a heading


def test_a_broken_pdf_is_an_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "broken.pdf"
    path.write_bytes(b"%PDF-1.4\nnot really")
    with pytest.raises(CorpusError, match=r"cannot read PDF .*broken\.pdf"):
        read_file(path, path.read_bytes(), "broken.pdf")


# ------------------------------------------------------------------ index_paths


async def test_index_a_folder_and_search_it(corpus_dir: Path, tmp_path: Path) -> None:
    progress: list[tuple[int, int, str]] = []
    report = index_paths([corpus_dir], "notes", tmp_path / "indexes", progress=lambda *a: progress.append(a))
    assert (report.files_seen, report.files_indexed, report.files_unchanged, report.files_removed) == (
        6,
        6,
        0,
        0,
    )
    assert report.documents == 7  # five files and two JSONL lines
    assert report.path == tmp_path / "indexes" / "notes.sqlite"
    assert progress[0] == (0, 6, "notes/guide.md")
    assert progress[-1] == (6, 6, "done")

    with open_corpus("notes", tmp_path / "indexes") as index:
        (hit, *_) = await index.search("when should tomatoes be watered?")
        assert hit.doc_id == "notes/guide.md"
        assert hit.title == "Gardening Guide"  # the short introduction shares the Watering passage
        assert hit.url == str(corpus_dir / "guide.md")
        (hit, *_) = await index.search("seaweed fertilizer")
        assert (hit.id, hit.title) == ("notes/guide.md#1", "Gardening Guide › Soil")
        assert "\n\nFertilizer\n\nFeed every two weeks" in (await index.open(hit.id)).text
        assert (await index.search("Which glacier is largest?"))[0].doc_id == "r2"
        assert (await index.search("honey colony"))[0].doc_id == "notes/sub/deeper.md"
        assert (await index.search("sourdough proofing"))[0].title.startswith("Bread Baking Basics")
        assert await index.search("quokka") == []  # hidden folder
        assert await index.search("zzyzx") == []  # script in HTML


def test_reindexing_skips_unchanged_and_follows_changes(corpus_dir: Path, tmp_path: Path) -> None:
    indexes = tmp_path / "indexes"
    index_paths([corpus_dir], "notes", indexes)

    again = index_paths([corpus_dir], "notes", indexes)
    assert (again.files_indexed, again.files_unchanged, again.files_removed) == (0, 6, 0)

    # Touched but not edited: the bytes are the same, so nothing is re-indexed.
    notes = corpus_dir / "notes.txt"
    os.utime(notes, ns=(time.time_ns(), time.time_ns() + 5_000_000_000))
    touched = index_paths([corpus_dir], "notes", indexes)
    assert (touched.files_indexed, touched.files_unchanged) == (0, 6)

    notes.write_text("The harbour festival is cancelled; a kite contest replaces it.\n")
    (corpus_dir / "sub" / "deeper.md").unlink()
    (corpus_dir / "new.md").write_text("# Kites\n\nKites fly best in steady wind.\n")
    changed = index_paths([corpus_dir], "notes", indexes)
    assert (changed.files_seen, changed.files_indexed, changed.files_unchanged, changed.files_removed) == (
        6,
        2,
        4,
        1,
    )
    assert changed.documents == 7
    with open_corpus("notes", indexes) as index:
        assert [hit.doc_id for hit in index.search_sync("kite")] == ["notes/new.md", "notes/notes.txt"]
        assert index.search_sync("festival June weekend")[0].snippet.startswith("The harbour festival is")
        assert index.search_sync("honey bees") == []


def test_indexing_a_second_folder_keeps_the_first(corpus_dir: Path, tmp_path: Path) -> None:
    other = tmp_path / "other" / "notes"  # same folder name: ids would collide
    other.mkdir(parents=True)
    (other / "guide.md").write_text("# Chess\n\nThe Sicilian defence answers e4 with c5.\n")
    indexes = tmp_path / "indexes"
    index_paths([corpus_dir], "mixed", indexes)
    report = index_paths([other], "mixed", indexes)
    assert (report.files_indexed, report.files_removed, report.documents) == (1, 0, 8)
    with open_corpus("mixed", indexes) as index:
        (chess,) = index.search_sync("sicilian defence")
        assert chess.doc_id == (other / "guide.md").as_posix()  # the short id was taken
        assert index.search_sync("tomatoes")[0].doc_id == "notes/guide.md"


def test_single_files_are_indexed_by_name(corpus_dir: Path, tmp_path: Path) -> None:
    report = index_paths([corpus_dir / "notes.txt"], "one", tmp_path)
    assert (report.files_seen, report.documents) == (1, 1)
    with open_corpus("one", tmp_path) as index:
        assert index.search_sync("harbour")[0].doc_id == "notes.txt"


def test_missing_paths_and_bad_names_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match=r"no such file or folder: .*nowhere — check the path"):
        index_paths([tmp_path / "nowhere"], "notes", tmp_path)
    for name in ["", "../up", "a/b", ".hidden", "has space", "x" * 65, "n.sqlite"]:
        with pytest.raises(CorpusError, match="invalid corpus name"):
            validate_name(name)
    assert validate_name("my-notes_2.v1") == "my-notes_2.v1"
    assert not list(tmp_path.iterdir())  # nothing was created


def test_a_malformed_file_is_skipped_with_its_name_and_the_rest_indexed(
    corpus_dir: Path, tmp_path: Path
) -> None:
    (corpus_dir / "records.jsonl").write_text('{"id": "x"}\n')
    (corpus_dir / "broken.pdf").write_bytes(b"%PDF-1.4\nnot really")
    warnings: list[str] = []
    report = index_paths([corpus_dir], "notes", tmp_path, warn=warnings.append)
    assert (report.files_seen, report.files_indexed, len(report.skipped)) == (7, 5, 2)
    assert report.documents == 5  # the five good files; the JSONL's lines are not half-indexed
    reasons = {s.path.name: s.reason for s in report.skipped}
    assert re.search(r"records\.jsonl:1: missing title, text", reasons["records.jsonl"])
    assert re.search(r"cannot read PDF .*broken\.pdf: .* — is the file complete\?", reasons["broken.pdf"])
    assert warnings == [f"skipped: {reasons['broken.pdf']}", f"skipped: {reasons['records.jsonl']}"]
    with open_corpus("notes", tmp_path) as index:
        assert index.search_sync("tomatoes watered")[0].doc_id == "notes/guide.md"


def test_an_unreadable_file_is_skipped(
    corpus_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tests run as root, for whom chmod 000 changes nothing: a dangling link and a failing read stand in.
    (corpus_dir / "gone.md").symlink_to(tmp_path / "nowhere.md")
    locked = corpus_dir / "locked.md"
    locked.write_text("# Locked\n\nSecret walrus.\n")
    read_bytes = Path.read_bytes

    def refuse(path: Path) -> bytes:
        if path.name == "locked.md":
            raise PermissionError(13, "Permission denied", str(path))
        return read_bytes(path)

    monkeypatch.setattr(Path, "read_bytes", refuse)
    report = index_paths([corpus_dir], "notes", tmp_path)
    assert report.files_indexed == 6
    assert sorted(s.reason for s in report.skipped) == [
        f"{corpus_dir / 'gone.md'}: cannot read it (No such file or directory)",
        f"{locked}: cannot read it (Permission denied)",
    ]


def test_a_folder_that_cannot_be_listed_is_skipped(
    corpus_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scandir = os.scandir

    def refuse(path: str) -> object:
        if Path(path).name == "sub":
            raise PermissionError(13, "Permission denied", path)
        return scandir(path)

    monkeypatch.setattr(os, "scandir", refuse)
    report = index_paths([corpus_dir], "notes", tmp_path)
    assert report.files_indexed == 5  # all but sub/deeper.md
    (skipped,) = report.skipped
    assert (
        skipped.reason
        == f"{corpus_dir / 'sub'}: cannot list this folder (Permission denied) — check its permissions"
    )


def test_a_file_that_breaks_keeps_its_previous_version(corpus_dir: Path, tmp_path: Path) -> None:
    index_paths([corpus_dir], "notes", tmp_path)
    (corpus_dir / "guide.md").write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 4)
    report = index_paths([corpus_dir], "notes", tmp_path)
    (skipped,) = report.skipped
    assert skipped.reason.endswith("(its previously indexed version stays)")
    with open_corpus("notes", tmp_path) as index:
        assert index.search_sync("tomatoes watered")[0].doc_id == "notes/guide.md"


def test_binary_files_are_skipped_not_indexed_as_text(corpus_dir: Path, tmp_path: Path) -> None:
    (corpus_dir / "program.md").write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 8)
    (corpus_dir / "noise.txt").write_bytes(random.Random(0).randbytes(4096))
    # No NUL byte, not UTF-8, and no encoding makes sense of it.
    rng = random.Random(1)
    (corpus_dir / "static.txt").write_bytes(bytes(rng.randrange(128, 256) for _ in range(600)))
    report = index_paths([corpus_dir], "notes", tmp_path)
    reasons = {s.path.name: s.reason for s in report.skipped}
    assert set(reasons) == {"program.md", "noise.txt", "static.txt"}
    assert "looks like a binary file, not .md (it contains NUL bytes)" in reasons["program.md"]
    assert "looks like a binary file" in reasons["noise.txt"]
    assert "not UTF-8 and its encoding could not be detected" in reasons["static.txt"]
    assert report.documents == 7


LATIN1 = "Café crème brûlée à la française: the façade of the théâtre was illuminée.\n"


@pytest.mark.parametrize(
    ("data", "encoding", "text"),
    [
        (LATIN1.encode("latin-1"), "cp1252", LATIN1),  # short: cp1250 would fit as well, and be wrong
        # cp1250 reads these bytes the same, and is named first; cp1252 is the one to name.
        ("“Smart quotes” — and a euro sign: 5 €.\n".encode("cp1252"), "cp1252", None),
        ("Привет, как дела? Это тестовый текст на русском языке.\n".encode("cp1251"), "cp1251", None),
        ("Grüße aus München\r\n".encode("utf-16"), "utf-16", "Grüße aus München\n"),
        ("\ufeffplain UTF-8 with a BOM\n".encode(), "utf-8", "plain UTF-8 with a BOM\n"),
    ],
)
def test_text_that_is_not_utf8_is_decoded_with_its_encoding(
    tmp_path: Path, data: bytes, encoding: str, text: str | None
) -> None:
    path = tmp_path / "letter.txt"
    path.write_bytes(data)
    (doc,) = read_file(path, data, "letter.txt")
    assert doc.encoding == encoding
    assert doc.text == (text if text is not None else data.decode(encoding).replace("\r\n", "\n"))
    assert "\ufffd" not in doc.text


def test_indexing_notes_a_detected_encoding(tmp_path: Path) -> None:
    folder = tmp_path / "letters"
    folder.mkdir()
    (folder / "old.txt").write_bytes(LATIN1.encode("latin-1"))
    warnings: list[str] = []
    report = index_paths([folder], "letters", tmp_path, warn=warnings.append)
    assert report.notes == (f"{folder / 'old.txt'}: not UTF-8, read as cp1252 (detected)",)
    assert warnings == list(report.notes)
    with open_corpus("letters", tmp_path) as index:
        assert index.search_sync("crème brûlée")[0].doc_id == "letters/old.txt"


def test_non_utf8_jsonl_is_refused_with_its_line_and_a_fix(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_bytes(
        b'{"id": "a", "title": "t", "text": "plain"}\n'
        + json.dumps({"id": "b", "title": "Caf\u00e9", "text": LATIN1}, ensure_ascii=False).encode("latin-1")
        + b"\n"
    )
    with pytest.raises(CorpusError) as caught:
        read_file(path, path.read_bytes(), "data.jsonl")
    assert str(caught.value) == (
        f"{path}:2: not UTF-8 (it looks like cp1252) — JSON Lines files must be UTF-8; convert it:"
        " iconv -f cp1252 -t UTF-8 data.jsonl > data.utf8.jsonl"
    )


def test_the_conversion_command_for_jsonl_names_the_encoding_as_iconv_does(tmp_path: Path) -> None:
    path = tmp_path / "ru.jsonl"
    text = (
        "Это тестовый текст на русском языке. Москва - столица России, а Волга - самая длинная река Европы."
    )
    record = {"id": "r", "title": "Привет", "text": text}
    path.write_bytes(json.dumps(record, ensure_ascii=False).encode("koi8_r") + b"\n")
    with pytest.raises(CorpusError, match=r"\(it looks like koi8_r\) .* iconv -f koi8-r -t UTF-8 ru\.jsonl"):
        read_file(path, path.read_bytes(), "ru.jsonl")


def test_an_empty_folder_is_an_error_and_creates_no_corpus(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "table.csv").write_text("a,b\n")
    indexes = tmp_path / "indexes"
    with pytest.raises(CorpusError) as caught:
        index_paths([empty], "hollow", indexes)
    assert str(caught.value) == (
        f"nothing indexed: no supported files (.htm .html .jsonl .markdown .md .pdf .rst .txt) in {empty}"
        " — corpus 'hollow' was not created"
    )
    assert list_corpora(indexes) == []
    assert not indexes.exists() or not list(indexes.iterdir())


def test_files_without_text_create_no_corpus(tmp_path: Path) -> None:
    folder = tmp_path / "blank"
    folder.mkdir()
    (folder / "a.md").write_text("\n\n")
    with pytest.raises(CorpusError, match=r"hold no text to search — corpus 'blank' was not created"):
        index_paths([folder], "blank", tmp_path / "indexes")
    assert list_corpora(tmp_path / "indexes") == []


def test_a_run_where_every_file_is_skipped_creates_no_corpus(tmp_path: Path) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "a.pdf").write_bytes(b"%PDF-1.4\ntruncated")
    (folder / "b.md").write_bytes(b"\x00\x01\x02")
    warnings: list[str] = []
    with pytest.raises(CorpusError) as caught:
        index_paths([folder], "bad", tmp_path / "indexes", warn=warnings.append)
    assert str(caught.value) == (
        f"nothing indexed: all 2 files in {folder} were skipped (see the warnings)"
        " — corpus 'bad' was not created"
    )
    assert [w.split(":")[1] for w in warnings] == [
        f" cannot read PDF {folder / 'a.pdf'}",
        f" cannot index {folder / 'b.md'}",
    ]
    assert list_corpora(tmp_path / "indexes") == []


def test_a_run_that_fails_while_creating_a_corpus_leaves_none(
    corpus_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(LocalIndex, "replace_source", interrupted)
    indexes = tmp_path / "indexes"
    with pytest.raises(KeyboardInterrupt):
        index_paths([corpus_dir], "notes", indexes)
    assert list(indexes.iterdir()) == []
    monkeypatch.undo()
    assert index_paths([corpus_dir], "notes", indexes).documents == 7


def test_concurrent_indexers_of_one_new_corpus_agree(corpus_dir: Path, tmp_path: Path) -> None:
    script = (
        "import sys; from pathlib import Path; from openheavy.corpus import index_paths;"
        " print(index_paths([Path(sys.argv[1])], 'notes', Path(sys.argv[2])).documents)"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    indexers = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(corpus_dir), str(tmp_path / "indexes")],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    for indexer in indexers:
        stdout, stderr = indexer.communicate(timeout=120)
        assert indexer.returncode == 0, stderr
        assert stdout.strip() == "7"
    with sqlite3.connect(tmp_path / "indexes" / "notes.sqlite") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    conn.close()
    with open_corpus("notes", tmp_path / "indexes") as index:
        assert index.stats().documents == 7
        assert index.search_sync("glacier")[0].doc_id == "r2"


# ------------------------------------------------------------------ index_documents, listing, opening


def test_index_documents_is_idempotent_and_replaces(tmp_path: Path) -> None:
    docs = [SourceDoc("p1", "Paris", "Paris is the capital of France."), SourceDoc("p2", "Rome", "Rome.")]
    first = index_documents(docs, "wiki", tmp_path)
    assert (first.files_indexed, first.documents, first.chunks) == (1, 2, 2)
    same = index_documents(iter(docs), "wiki", tmp_path)
    assert (same.files_indexed, same.files_unchanged, same.documents) == (0, 1, 2)
    replaced = index_documents([SourceDoc("b1", "Berlin", "Berlin is in Germany.")], "wiki", tmp_path)
    assert (replaced.files_indexed, replaced.documents) == (1, 1)
    with open_corpus("wiki", tmp_path) as index:
        assert [hit.doc_id for hit in index.search_sync("capital Paris Berlin")] == ["b1"]


def test_index_documents_reports_progress(tmp_path: Path) -> None:
    calls: list[tuple[int, int, str]] = []
    docs = [SourceDoc(f"d{i}", f"Doc {i}", f"text {i}") for i in range(250)]
    index_documents(docs, "many", tmp_path, progress=lambda *a: calls.append(a))
    assert calls == [
        (0, 250, "index d0"),
        (100, 250, "index d100"),
        (200, 250, "index d200"),
        (250, 250, "done"),
    ]


def test_repeated_ids_in_documents_are_an_error(tmp_path: Path) -> None:
    docs = [SourceDoc("same", "A", "a"), SourceDoc("same", "B", "b")]
    with pytest.raises(CorpusError, match="'same' appears twice"):
        index_documents(docs, "dupes", tmp_path)


def test_list_corpora(tmp_path: Path) -> None:
    assert list_corpora(tmp_path / "absent") == []
    index_documents([SourceDoc("a", "A", "alpha")], "beta", tmp_path)
    index_documents([SourceDoc("b", "B", "bravo"), SourceDoc("c", "C", "charlie")], "alpha", tmp_path)
    (tmp_path / "notes.txt").write_text("not an index")
    (tmp_path / "bad name!.sqlite").write_text("not a corpus name")
    infos = list_corpora(tmp_path)
    assert [(i.name, i.documents, i.chunks, i.problem) for i in infos] == [
        ("alpha", 2, 2, None),
        ("beta", 1, 1, None),
    ]
    assert infos[0].path == tmp_path / "alpha.sqlite"
    assert infos[0].updated_at.tzinfo is not None


def make_damaged_corpora(index_dir: Path) -> None:
    for name in ("alpha", "header", "middle", "zulu"):
        index_documents([SourceDoc(f"{name}-1", name.title(), f"{name} text")], name, index_dir)
    with (index_dir / "header.sqlite").open("r+b") as file:
        file.write(b"\xa5" * 100)  # garbage over the SQLite header
    # The sources table's index is what counting the corpus's sources reads: this used to crash listing.
    damage_sqlite_page(index_dir / "middle.sqlite", "sqlite_autoindex_sources_1")


def test_damaged_indexes_are_listed_as_such_and_never_hide_the_others(tmp_path: Path) -> None:
    make_damaged_corpora(tmp_path)
    (tmp_path / "junk.sqlite").write_bytes(b"not a database" * 50)
    infos = {info.name: info for info in list_corpora(tmp_path)}
    assert sorted(infos) == ["alpha", "header", "junk", "middle", "zulu"]
    assert (infos["alpha"].documents, infos["alpha"].problem) == (1, None)
    assert (infos["zulu"].documents, infos["zulu"].problem) == (1, None)
    for name in ("header", "junk", "middle"):
        path = tmp_path / f"{name}.sqlite"
        problem = infos[name].problem
        assert problem is not None and problem.startswith(f"corpus {name!r} is damaged (")
        assert problem.endswith(
            f" — move it aside (mv {path} {path}.damaged) and rebuild it: openheavy index PATH --name {name}"
        )
        assert infos[name].documents == 0
    assert "file is not a database" in str(infos["header"].problem)
    assert "btreeInitPage() returns error code 11" in str(infos["middle"].problem)


@pytest.mark.parametrize("name", ["header", "middle"])
def test_opening_or_indexing_a_damaged_corpus_says_how_to_rebuild_it(
    corpus_dir: Path, tmp_path: Path, name: str
) -> None:
    make_damaged_corpora(tmp_path)
    with pytest.raises(DamagedIndexError, match=rf"corpus '{name}' is damaged .* move it aside"):
        open_corpus(name, tmp_path)
    with pytest.raises(DamagedIndexError, match=rf"corpus '{name}' is damaged .* move it aside"):
        index_paths([corpus_dir], name, tmp_path)
    # The fix works: moved aside, the corpus is rebuilt from scratch.
    path = tmp_path / f"{name}.sqlite"
    path.rename(path.with_name(f"{name}.sqlite.damaged"))
    assert index_paths([corpus_dir], name, tmp_path).documents == 7


def test_open_unknown_corpus_lists_the_available_ones(tmp_path: Path) -> None:
    index_documents([SourceDoc("a", "A", "alpha")], "notes", tmp_path)
    with pytest.raises(UnknownCorpusError) as caught:
        open_corpus("papers", tmp_path)
    message = str(caught.value)
    assert "no corpus named 'papers'" in message
    assert "(available: notes)" in message
    assert "run: openheavy index PATH --name papers" in message
    with pytest.raises(UnknownCorpusError, match=r"available: none yet"):
        open_corpus("papers", tmp_path / "empty")


def test_open_empty_corpus_says_how_to_fill_it(tmp_path: Path) -> None:
    index_documents([], "hollow", tmp_path)
    with pytest.raises(
        EmptyIndexError, match=r"'hollow' .* holds no documents — .*openheavy index PATH --name hollow"
    ):
        open_corpus("hollow", tmp_path)


# ------------------------------------------------------------------ pydocs


def test_pydoc_text_becomes_sections() -> None:
    text = (
        "Python Library Documentation: module demo\n\nNAME\n    demo - Demo.\n\nMODULE REFERENCE\n"
        "    https://docs.python.org/3/library/demo.html\n\nDESCRIPTION\n    Demo module.\n\n"
        "CLASSES\n    class Thing(builtins.object)\n     |  A thing.\n     |  \n     |  Methods:\n\n"
        "FUNCTIONS\n    run(cmd, timeout=None)\n        Run it.\n\nFILE\n    /usr/lib/demo.py\n"
    )
    markdown = pydoc_to_markdown(text)
    assert [s.path for s in split_sections(markdown, "markdown")] == [
        ("Description",),
        ("Classes", "class Thing"),
        ("Functions", "run()"),
    ]
    assert "/usr/lib" not in markdown and "docs.python.org" not in markdown
    assert "     |  A thing.\n\n     |  Methods:" in markdown  # class-body blank lines break paragraphs


def test_summary_line() -> None:
    assert summary_line("Subprocesses with I/O streams") == "Subprocesses with I/O streams"
    assert summary_line("First sentence. Second one.") == "First sentence."
    assert summary_line("word " * 40).endswith("word…")


def test_module_names_are_public_and_safe() -> None:
    names = module_names()
    expected = {"subprocess", "json", "concurrent.futures", "urllib.request", "xml.etree.ElementTree"}
    assert expected <= set(names)
    assert not [n for n in names if any(part.startswith("_") for part in n.split("."))]
    unsafe = {"antigravity", "this", "tkinter", "idlelib", "turtle", "test"}
    assert not unsafe & {n.split(".")[0] for n in names}
    assert not [n for n in names if n.startswith("asyncio.")]


def test_rendering_survives_printing_failing_and_slow_modules() -> None:
    # `this` prints the Zen of Python on import: the worker keeps it out of its JSON lines.
    rendered, skipped = render_modules(["this", "no_such_module_xyz", "json"], workers=2, batch_size=2)
    assert [m.name for m in rendered] == ["this", "json"]
    assert skipped == ["no_such_module_xyz"]
    assert rendered[1].summary.startswith("JSON (JavaScript Object Notation)")
    assert rendered[1].url.endswith("/library/json.html")
    # A child that runs out of time costs only its modules.
    started = time.perf_counter()
    rendered, skipped = render_modules(["json", "csv"], timeout=0.001)
    assert (rendered, skipped) == ([], ["csv", "json"])
    assert time.perf_counter() - started < 10


async def test_pydocs_is_built_on_first_use_and_answers_python_questions(tmp_path: Path) -> None:
    progress: list[tuple[int, int, str]] = []
    with open_corpus("pydocs", tmp_path, progress=lambda *a: progress.append(a)) as index:
        assert progress and progress[-1][0] == progress[-1][1]
        hits = await index.search("How do I run a subprocess with a timeout and capture its output?", k=5)
        subprocess_hits = [hit for hit in hits if hit.doc_id == "module:subprocess"]
        assert subprocess_hits, [hit.id for hit in hits]
        assert hits[0].doc_id == "module:subprocess"
        texts = [(await index.open(hit.id)).text for hit in subprocess_hits]
        assert any("run(" in text and "capture_output" in text and "timeout" in text for text in texts)
        assert any("check_output" in text for text in texts)
        assert hits[0].url.endswith("/library/subprocess.html")
        assert (await index.search("assert statement"))[0].doc_id == "topic:assert"
    assert [info.name for info in list_corpora(tmp_path)] == ["pydocs"]
    assert ensure_pydocs(tmp_path) is False  # built once, then reused


def test_jsonl_fixture_is_valid_json() -> None:
    for line in (FIXTURES / "records.jsonl").read_text().splitlines():
        if line.strip():
            assert set(json.loads(line)) >= {"id", "title", "text"}
