"""The `index`, `corpora` and `ask --corpus` commands with bad files and damaged indexes: warnings and
one-line errors that say what to do, never a traceback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner, Result

from fakes import damage_sqlite_page
from openheavy import cli
from openheavy.corpus import SourceDoc, catalog

FIXTURES = Path(__file__).parent / "fixtures" / "corpus"


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("OPENHEAVY_DATA_DIR", str(tmp_path / "data"))
    # Wide consoles, so that no message is wrapped.
    monkeypatch.setattr(cli, "out", Console(width=400))
    monkeypatch.setattr(cli, "err", Console(stderr=True, width=400))
    return tmp_path / "data"


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli.app, list(args))


def test_index_skips_bad_files_with_warnings_and_counts_them(data_dir: Path, tmp_path: Path) -> None:
    docs = tmp_path / "notes"
    shutil.copytree(FIXTURES, docs)
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4\nnot really")
    (docs / "program.md").write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)))
    (docs / "old.txt").write_bytes("Café crème brûlée, served at the théâtre.\n".encode("latin-1"))
    result = invoke("index", str(docs), "--name", "notes")
    assert result.exit_code == 0, result.output
    assert result.exception is None
    assert f"warning: skipped: cannot read PDF {docs / 'broken.pdf'}: " in result.stderr
    assert (
        f"warning: skipped: cannot index {docs / 'program.md'}: it looks like a binary file" in result.stderr
    )
    assert f"warning: {docs / 'old.txt'}: not UTF-8, read as cp1252 (detected)" in result.stderr
    assert "corpus notes: 8 documents, " in result.stdout
    assert "7 files indexed, 0 unchanged, 0 removed, 2 skipped · " in result.stdout


def test_the_terminal_shows_warnings_only(tmp_path: Path) -> None:
    """A real process, where nothing captures logging: the PDF library's own complaints about a broken
    file stay out of the terminal; the warning that names the file says enough."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4\nnot really")
    (docs / "fine.md").write_text("# Fine\n\nA good file.\n")
    env = {**os.environ, "OPENHEAVY_DATA_DIR": str(tmp_path / "data"), "COLUMNS": "400"}
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    run = subprocess.run(
        [sys.executable, "-m", "openheavy", "index", str(docs), "--name", "docs"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    (line,) = [line for line in run.stderr.splitlines() if line.strip()]
    assert line.startswith(f"warning: skipped: cannot read PDF {docs / 'broken.pdf'}: ")
    assert line.endswith(" — is the file complete?")


def test_index_of_an_empty_folder_fails_and_registers_nothing(data_dir: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = invoke("index", str(empty), "--name", "hollow")
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.stderr.strip().splitlines() == [
        f"error: nothing indexed: no supported files (.htm .html .jsonl .markdown .md .pdf .rst .txt) in"
        f" {empty} — corpus 'hollow' was not created"
    ]
    listing = invoke("corpora")
    assert listing.exit_code == 0
    assert "no corpora yet" in listing.stdout


def damage_header(index: Path) -> None:
    with index.open("r+b") as file:
        file.write(b"\xa5" * 100)


def test_corpora_lists_a_damaged_index_with_its_fix_beside_the_others(data_dir: Path, tmp_path: Path) -> None:
    for name in ("good", "header", "page"):
        assert invoke("index", str(FIXTURES), "--name", name).exit_code == 0
    header, page = data_dir / "indexes" / "header.sqlite", data_dir / "indexes" / "page.sqlite"
    damage_header(header)
    damage_sqlite_page(page, "sqlite_autoindex_sources_1")  # read when counting: this crashed `corpora`
    result = invoke("corpora")
    assert result.exit_code == 0, result.output
    assert result.exception is None
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["name", "documents", "chunks"]
    rows = {line.split()[0]: line for line in lines[1:] if not line.startswith("in ")}
    assert set(rows) == {"good", "header", "page"}
    assert rows["good"].split()[1] == "7"
    assert "unusable" in rows["header"] and "unusable" in rows["page"]
    warnings = result.stderr.strip().splitlines()
    assert warnings[0] == (
        f"warning: corpus 'header' is damaged (file is not a database) — move it aside (mv {header}"
        f" {header}.damaged) and rebuild it: openheavy index PATH --name header"
    )
    assert warnings[1].startswith("warning: corpus 'page' is damaged (")
    assert warnings[1].endswith(
        f" — move it aside (mv {page} {page}.damaged) and rebuild it: openheavy index PATH --name page"
    )
    assert len(warnings) == 2


def test_ask_on_a_damaged_corpus_is_a_one_line_error_with_the_fix(data_dir: Path) -> None:
    assert invoke("index", str(FIXTURES / "guide.md"), "--name", "broken").exit_code == 0
    broken = data_dir / "indexes" / "broken.sqlite"
    damage_sqlite_page(broken, "sqlite_autoindex_sources_1")
    # Nothing listens on port 9: the corpus is opened, and refused, before any model call.
    result = invoke("ask", "--corpus", "broken", "--model", "http://127.0.0.1:9/v1", "--quiet", "What?")
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert errors[0].startswith("error: corpus 'broken' is damaged (")
    assert errors[0].endswith(
        f" — move it aside (mv {broken} {broken}.damaged) and rebuild it: openheavy index PATH --name broken"
    )


def test_ctrl_c_while_indexing_says_what_was_kept(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for name in ("a", "b"):
        (docs / f"{name}.md").write_text(f"# {name}\n\nText of {name}.\n")
    real_read_file = catalog.read_file

    def interrupt_at_b(path: Path, data: bytes, doc_id: str) -> list[SourceDoc]:
        if path.name == "b.md":
            raise KeyboardInterrupt
        return real_read_file(path, data, doc_id)

    monkeypatch.setattr(catalog, "read_file", interrupt_at_b)
    result = invoke("index", str(docs), "--name", "docs")
    assert result.exit_code == 130
    assert (
        result.stderr.strip()
        == "cancelled: files indexed so far stay indexed; run the command again to finish."
    )
    monkeypatch.setattr(catalog, "read_file", real_read_file)
    again = invoke("index", str(docs), "--name", "docs")
    assert again.exit_code == 0, again.output
    assert "1 files indexed, 1 unchanged" in again.stdout
