"""LocalIndex: query construction, BM25 ranking, open, incremental building, schema, concurrency."""

from __future__ import annotations

import asyncio
import random
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from fakes import damage_sqlite_page
from openheavy.errors import CorpusError, DamagedIndexError, DocumentNotFoundError, SearchError
from openheavy.search.base import SearchBackend
from openheavy.search.local import (
    SCHEMA_VERSION,
    WHOLE_PASSAGE_CHARS,
    IndexedDocument,
    LocalIndex,
    Passage,
    SourceFingerprint,
    match_expression,
    query_terms,
)


def doc(id: str, title: str, *texts: str, url: str = "") -> IndexedDocument:
    return IndexedDocument(id, title, url, tuple(Passage(title, text) for text in texts))


@pytest.fixture
def index(tmp_path: Path) -> Iterator[LocalIndex]:
    with LocalIndex(tmp_path / "test.sqlite") as idx:
        idx.replace_source(
            "animals",
            [
                doc(
                    "otter", "Sea otters", "Sea otters hold hands while sleeping so they do not drift apart."
                ),
                doc(
                    "heron",
                    "Grey heron",
                    "The grey heron stands still in shallow water and spears fish.",
                    "Herons nest in colonies called heronries, high in trees.",
                    url="https://example.org/heron",
                ),
                doc(
                    "kelp",
                    "Kelp forests",
                    "Kelp forests shelter fish; sea otters eat the urchins that eat kelp.",
                ),
            ],
            SourceFingerprint(version="t"),
        )
        yield idx


# ------------------------------------------------------------------ query construction


def test_query_terms_drop_stopwords_and_punctuation() -> None:
    assert query_terms("How do I run a subprocess with a timeout?") == ["run", "subprocess", "timeout"]
    assert query_terms("The the THE") == []
    assert query_terms("") == []
    assert query_terms("otter otter Otter") == ["otter"]


@pytest.mark.parametrize(
    "query",
    [
        'say "hello',
        "cats AND dogs",
        "NOT this OR that",
        "-minus +plus",
        "wild*",
        "(unbalanced",
        "title:otter",
        "NEAR(a b, 3)",
        "^start",
        "a'b\"c",
        "ünïcödé 東京 café",
        "\\ / ; -- DROP TABLE chunks",
        "check_output()",
        "___",
    ],
)
async def test_any_user_string_is_a_valid_query(index: LocalIndex, query: str) -> None:
    expression = match_expression(query)
    # Every term is a quoted string: no operator, column filter or prefix star survives.
    for term in expression.split(" OR ") if expression else []:
        assert term.startswith('"') and term.endswith('"') and '"' not in term[1:-1]
    assert isinstance(await index.search(query), list)


async def test_random_strings_never_break_the_query(index: LocalIndex) -> None:
    alphabet = "abc XYZ\"'()*-+:^{}[]<>!?.,;_/\\|&#~`é東\u0301\t\n0123456789" + "ANDORNOTNEAR"
    rng = random.Random(7)
    for _ in range(300):
        query = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        index.search_sync(query)  # raises on an FTS5 syntax error


async def test_empty_and_stopword_queries_return_nothing(index: LocalIndex) -> None:
    assert await index.search("") == []
    assert await index.search("   ") == []
    assert await index.search("what is the and of it") == []
    assert await index.search("otter", k=0) == []


# ------------------------------------------------------------------ search and open


async def test_search_returns_chunk_hits_best_first(index: LocalIndex) -> None:
    hits = await index.search("Where do herons nest?")
    assert [hit.id for hit in hits] == ["heron#1", "heron#0"]
    best = hits[0]
    assert best.doc_id == "heron"
    assert best.title == "Grey heron"
    assert best.url == "https://example.org/heron"
    assert "heronries" in best.snippet
    assert best.score > hits[1].score > 0


async def test_any_word_matches_and_more_matching_words_rank_higher(index: LocalIndex) -> None:
    hits = await index.search("otters urchins")
    assert [hit.doc_id for hit in hits] == ["kelp", "otter"]  # kelp has both words, otter one


async def test_title_matches_outrank_body_matches(tmp_path: Path) -> None:
    filler = "Some words about other matters entirely, repeated for length. " * 3
    with LocalIndex(tmp_path / "t.sqlite") as idx:
        idx.replace_source(
            "s",
            [
                doc("body", "Notes", f"{filler} A lighthouse stands here. {filler}"),
                doc("title", "Lighthouse", f"{filler} It stands on a rock. {filler}"),
            ],
            SourceFingerprint(),
        )
        assert [hit.doc_id for hit in await idx.search("lighthouse")] == ["title", "body"]


async def test_snippet_is_a_short_window_around_the_match(tmp_path: Path) -> None:
    text = " ".join(f"word{i}" for i in range(400)) + " albatross " + " ".join(f"tail{i}" for i in range(400))
    with LocalIndex(tmp_path / "t.sqlite") as idx:
        idx.replace_source("s", [doc("long", "Long", text)], SourceFingerprint())
        (hit,) = await idx.search("albatross")
    assert "albatross" in hit.snippet
    assert 150 <= len(hit.snippet) <= 450
    assert "\n" not in hit.snippet


async def test_a_short_passage_comes_whole_with_its_hit_and_a_long_one_does_not(tmp_path: Path) -> None:
    short = "The  albatross glides\nfor hours on long wings."
    long = "The albatross nests on remote islands. " + " ".join(
        f"word{i}" for i in range(WHOLE_PASSAGE_CHARS)
    )
    with LocalIndex(tmp_path / "t.sqlite") as idx:
        idx.replace_source(
            "s", [doc("short", "Short", short), doc("long", "Long", long)], SourceFingerprint()
        )
        hits = {hit.doc_id: hit for hit in await idx.search("albatross")}
        opened = await idx.open(hits["short"].id)
    assert hits["short"].text == "The albatross glides for hours on long wings."
    assert hits["short"].text == " ".join(opened.text.split())  # what `open` would have shown
    assert hits["long"].text is None and "albatross" in hits["long"].snippet


async def test_open_a_chunk_or_a_document(index: LocalIndex) -> None:
    chunk = await index.open("heron#1")
    assert (chunk.id, chunk.doc_id, chunk.url) == ("heron#1", "heron", "https://example.org/heron")
    assert chunk.text == "Herons nest in colonies called heronries, high in trees."
    first = await index.open("heron")
    assert first.id == "heron#0"
    assert first.text.startswith("The grey heron")


async def test_open_unknown_id_says_what_to_do(index: LocalIndex) -> None:
    with pytest.raises(DocumentNotFoundError, match=r"no passage 'heron#7' in corpus 'test'.*search result"):
        await index.open("heron#7")
    with pytest.raises(DocumentNotFoundError):
        await index.open("")


async def test_document_ids_may_contain_hashes(tmp_path: Path) -> None:
    with LocalIndex(tmp_path / "t.sqlite") as idx:
        idx.replace_source(
            "s",
            [doc("page#intro", "Intro", "first"), doc("a#1", "A one", "alpha", "beta")],
            SourceFingerprint(),
        )
        assert (await idx.open("page#intro")).id == "page#intro#0"
        assert (await idx.open("a#1")).text == "alpha"  # no document "a": the whole id is a document id
        assert (await idx.open("a#1#1")).text == "beta"


def test_local_index_is_a_search_backend(index: LocalIndex) -> None:
    assert isinstance(index, SearchBackend)
    assert index.name == "test"


# ------------------------------------------------------------------ building


def test_replace_source_swaps_its_documents(index: LocalIndex) -> None:
    result = index.replace_source("animals", [doc("owl", "Owls", "Owls hunt at night.")], SourceFingerprint())
    assert (result.documents, result.chunks, result.changed) == (1, 1, True)
    assert [hit.doc_id for hit in index.search_sync("owls heron otter")] == ["owl"]
    assert index.stats().documents == 1


def test_replacing_with_identical_content_changes_nothing(index: LocalIndex) -> None:
    docs = [doc("owl", "Owls", "Owls hunt at night.")]
    index.replace_source("birds", docs, SourceFingerprint(size=1))
    before = index.stats()
    result = index.replace_source("birds", iter(docs), SourceFingerprint(size=2))
    assert not result.changed
    assert (result.documents, result.chunks) == (1, 1)
    assert index.sources()["birds"].size == 2  # the new fingerprint is recorded
    assert index.stats() == before  # updated_at included: the content did not change


def test_sources_are_independent(index: LocalIndex) -> None:
    index.replace_source("birds", [doc("owl", "Owls", "Owls hunt at night.")], SourceFingerprint())
    assert index.delete_source("animals") == 3
    assert index.delete_source("animals") == 0
    assert [hit.doc_id for hit in index.search_sync("owls otters")] == ["owl"]
    assert set(index.sources()) == {"birds"}
    stats = index.stats()
    assert (stats.documents, stats.chunks, stats.sources) == (1, 1, 1)


def test_documents_without_text_are_not_stored(index: LocalIndex) -> None:
    result = index.replace_source("empty", [doc("blank", "Blank")], SourceFingerprint())
    assert (result.documents, result.chunks) == (0, 0)
    assert index.document_source("blank") is None


def test_duplicate_ids_are_refused_with_their_sources(index: LocalIndex) -> None:
    with pytest.raises(CorpusError, match=r"'otter' from birds is already indexed from animals"):
        index.replace_source("birds", [doc("otter", "Otter", "again")], SourceFingerprint())
    with pytest.raises(CorpusError, match=r"'owl' appears twice in birds"):
        index.replace_source("birds", [doc("owl", "O", "one"), doc("owl", "O", "two")], SourceFingerprint())
    # A failed replacement leaves the index as it was.
    assert index.stats().documents == 3
    assert "birds" not in index.sources()


def test_fingerprints_round_trip(index: LocalIndex) -> None:
    fingerprint = SourceFingerprint(size=10, mtime_ns=123, sha256="ab" * 32, version="v9")
    index.replace_source("f", [doc("x", "X", "x ray")], fingerprint)
    assert index.sources()["f"] == fingerprint
    index.update_fingerprint("f", SourceFingerprint(size=11, mtime_ns=124, sha256="cd", version="v9"))
    assert index.sources()["f"].mtime_ns == 124
    assert index.document_source("x") == "f"


# ------------------------------------------------------------------ schema and files


def test_schema_version_and_timestamps(index: LocalIndex) -> None:
    stats = index.stats()
    assert stats.schema_version == SCHEMA_VERSION
    assert stats.created_at <= stats.updated_at
    with sqlite3.connect(index.path) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("1",)


def test_reopening_keeps_the_content(tmp_path: Path) -> None:
    path = tmp_path / "keep.sqlite"
    with LocalIndex(path) as idx:
        idx.replace_source("s", [doc("d", "Dune", "Spice must flow.")], SourceFingerprint())
    with LocalIndex(path, create=False) as idx:
        assert [hit.id for hit in idx.search_sync("spice")] == ["d#0"]


def test_an_empty_sqlite_file_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    sqlite3.connect(path).close()  # version 0: no tables yet
    with LocalIndex(path) as idx:
        assert idx.stats().schema_version == SCHEMA_VERSION


def test_another_applications_database_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "theirs.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE orders (id INTEGER)")
    conn.close()
    with pytest.raises(SearchError, match="not an openheavy index"):
        LocalIndex(path)
    with sqlite3.connect(path) as conn:
        assert [row[0] for row in conn.execute("SELECT name FROM sqlite_master")] == ["orders"]
    conn.close()


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.sqlite"
    LocalIndex(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.close()
    with pytest.raises(SearchError, match="newer openheavy"):
        LocalIndex(path)


def test_a_file_that_is_not_an_index_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "junk.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(SearchError, match="not a usable openheavy index"):
        LocalIndex(path)
    with pytest.raises(SearchError, match="no index file"):
        LocalIndex(tmp_path / "absent.sqlite", create=False)


async def test_a_closed_index_says_so(tmp_path: Path) -> None:
    idx = LocalIndex(tmp_path / "c.sqlite")
    idx.close()
    with pytest.raises(SearchError, match="closed"):
        await idx.search("anything")


async def test_damage_is_found_by_the_quick_check_and_named_when_reading(index: LocalIndex) -> None:
    assert index.integrity_problems() == []
    index.close()
    # The passages' text: opening a passage reads it, a search's snippet too.
    damage_sqlite_page(index.path, "chunks_fts_content")
    with LocalIndex(index.path, create=False) as damaged:
        assert damaged.integrity_problems() == ["database disk image is malformed"]
        for action, read in (
            ("opening 'heron#1'", lambda: damaged.open("heron#1")),
            ("search", lambda: damaged.search("heron")),
        ):
            with pytest.raises(DamagedIndexError) as caught:
                await read()
            assert str(caught.value) == (
                f"{action} in corpus 'test' failed: {index.path} is damaged"
                " (database disk image is malformed) — move it aside and rebuild it:"
                " openheavy index PATH --name test"
            )


# ------------------------------------------------------------------ concurrency


async def test_concurrent_searches_from_many_tasks(index: LocalIndex) -> None:
    queries = ["otters", "heron nest", "kelp urchins", "fish", "sleeping", "trees"] * 8
    expected = [index.search_sync(query) for query in queries]
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(index.search(query)) for query in queries]
    assert [task.result() for task in tasks] == expected


async def test_searches_run_while_a_writer_replaces_a_source(index: LocalIndex) -> None:
    stop = threading.Event()

    def write() -> None:
        n = 0
        while not stop.is_set():
            index.replace_source("churn", [doc("c", "Churn", f"temporary text {n}")], SourceFingerprint())
            n += 1

    writer = threading.Thread(target=write)
    writer.start()
    try:
        for _ in range(20):
            results = await asyncio.gather(*(index.search("heron otters") for _ in range(4)))
            assert all({hit.doc_id for hit in hits} == {"heron", "otter", "kelp"} for hits in results)
    finally:
        stop.set()
        writer.join()
