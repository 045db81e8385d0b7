"""Corpora: chunking, reading files, incremental indexing, the catalog API and the pydocs corpus."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import time
from pathlib import Path

import pytest

from fakes import make_pdf
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
from openheavy.errors import CorpusError, EmptyIndexError, UnknownCorpusError

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


def test_a_malformed_file_stops_indexing_with_its_name(corpus_dir: Path, tmp_path: Path) -> None:
    (corpus_dir / "records.jsonl").write_text('{"id": "x"}\n')
    with pytest.raises(CorpusError, match=r"records\.jsonl:1: missing title, text"):
        index_paths([corpus_dir], "notes", tmp_path)


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
    (tmp_path / "junk.sqlite").write_bytes(b"not a database" * 50)
    infos = list_corpora(tmp_path)
    assert [(i.name, i.documents, i.chunks) for i in infos] == [("alpha", 2, 2), ("beta", 1, 1)]
    assert infos[0].path == tmp_path / "alpha.sqlite"
    assert infos[0].updated_at.tzinfo is not None


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
