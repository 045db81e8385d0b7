"""Private by default: what openheavy writes under its data directory is the owner's alone whatever the
umask; secrets stay out of child processes and command lines; a question can come from a file or
standard input, and one that is not UTF-8 is refused by name before anything runs."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fakes import PASSAGES, ChatServer, MemorySearch, action, chat_server
from openheavy import cli
from openheavy.api import Heavy
from openheavy.config import Settings
from openheavy.corpus.catalog import index_paths
from openheavy.errors import ConfigError
from openheavy.models.scripted import ScriptedModel
from openheavy.private_files import child_environment, create_private_file, private_dir

FIXTURE_CORPUS = Path(__file__).parent / "fixtures" / "corpus"


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(params=[0o022, 0o000], ids=["umask-022", "umask-000"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    previous = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(previous)


async def test_a_run_writes_its_trace_and_run_store_owner_only(tmp_path: Path, umask: int) -> None:
    settings = Settings(data_dir=tmp_path / "new" / "data")
    script = [
        action("search", query="subprocess"),
        action("open", ref=1),
        action("answer", answer="Use run [1].", cite=[1]),
    ]
    heavy = Heavy(ScriptedModel(script), MemorySearch(dict(PASSAGES)), settings=settings)
    result = await heavy.arun("How do I run a command?", "single")
    for folder in (tmp_path / "new", settings.data_dir, settings.runs_dir):
        assert mode_of(folder) == 0o700, folder
    assert mode_of(result.trace_path) == 0o600
    assert mode_of(settings.runs_dir / "runs.db") == 0o600
    assert [p.name for p in settings.runs_dir.iterdir() if mode_of(p) & 0o077] == []


def test_an_index_is_written_owner_only(tmp_path: Path, umask: int) -> None:
    index_dir = tmp_path / "data" / "indexes"
    index_paths([FIXTURE_CORPUS], "notes", index_dir)
    assert mode_of(tmp_path / "data") == 0o700 and mode_of(index_dir) == 0o700
    assert mode_of(index_dir / "notes.sqlite") == 0o600


def test_an_existing_folder_keeps_its_mode(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    private_dir(shared / "runs")
    assert mode_of(shared) == 0o755 and mode_of(shared / "runs") == 0o700
    assert create_private_file(shared / "runs" / "x") and not create_private_file(shared / "runs" / "x")
    assert mode_of(shared / "runs" / "x") == 0o600


def test_child_processes_get_no_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENHEAVY_API_KEY", "sk-openheavy")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai")
    monkeypatch.setenv("VLLM_KEY", "sk-profile")
    monkeypatch.setenv("HF_TOKEN", "hf-token")
    monkeypatch.setenv("PATH", "/usr/bin")
    env = child_environment({"LLAMA_API_KEY": "per-run"})
    assert not {"OPENHEAVY_API_KEY", "OPENAI_API_KEY", "VLLM_KEY", "HF_TOKEN"} & set(env)
    assert env["PATH"] == "/usr/bin" and env["LLAMA_API_KEY"] == "per-run"


# ------------------------------------------------------------------ the command line


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ChatServer]:
    monkeypatch.setenv("OPENHEAVY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("OPENHEAVY_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.delenv("OPENHEAVY_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with chat_server("Fine.") as running:
        yield running


def ask(server: ChatServer, *args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    runner = CliRunner()
    result = runner.invoke(cli.app, ["ask", "--mode", "direct", "--model", server.url, *args], input=stdin)
    return result.exit_code, result.stdout, result.stderr


def sent_question(server: ChatServer) -> str:
    [(_, body)] = server.requests
    return str(body["messages"][-1]["content"])


def test_the_api_key_can_come_from_a_file(server: ChatServer, tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("sk-from-file\n")
    key_file.chmod(0o600)
    code, out, err = ask(server, "--api-key-file", str(key_file), "What?")
    assert code == 0 and "Fine." in out and "warning" not in err
    [(headers, _)] = server.requests
    assert headers["authorization"] == "Bearer sk-from-file"


def test_a_key_file_others_can_read_is_used_with_a_warning(server: ChatServer, tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("sk-from-file")
    key_file.chmod(0o644)
    code, _, err = ask(server, "--api-key-file", str(key_file), "What?")
    assert code == 0 and "other users can read" in err and "chmod 600" in err


def test_api_key_on_the_command_line_still_works_but_is_deprecated(server: ChatServer) -> None:
    code, _, err = ask(server, "--api-key", "sk-visible", "What?")
    assert code == 0 and "--api-key shows the key to every user" in " ".join(err.split())
    [(headers, _)] = server.requests
    assert headers["authorization"] == "Bearer sk-visible"


def test_the_question_can_come_from_standard_input(server: ChatServer) -> None:
    long_question = "Line one of a long question?\n" + "More context. " * 400
    code, out, _ = ask(server, "-", stdin=long_question.encode())
    assert code == 0 and "Fine." in out
    assert sent_question(server) == long_question.strip()


def test_the_question_can_come_from_a_file(server: ChatServer, tmp_path: Path) -> None:
    question = tmp_path / "q.txt"
    question.write_text("Qu'est-ce qu'un café ?\n", encoding="utf-8")
    code, _, _ = ask(server, "--question-file", str(question))
    assert code == 0 and sent_question(server) == "Qu'est-ce qu'un café ?"


def test_a_question_given_twice_or_not_at_all_is_a_usage_error(server: ChatServer, tmp_path: Path) -> None:
    question = tmp_path / "q.txt"
    question.write_text("What?")
    code, _, err = ask(server, "--question-file", str(question), "What else?")
    assert code == 1 and "give the question once" in err
    code, _, err = ask(server)
    assert code == 1 and "no question" in err
    assert server.requests == []


@pytest.mark.parametrize("source", ["file", "stdin", "argv"])
def test_a_question_that_is_not_utf8_is_refused_before_the_run(
    server: ChatServer, tmp_path: Path, source: str
) -> None:
    latin1 = "Qu'est-ce qu'un café ?".encode("latin-1")
    if source == "file":
        (tmp_path / "q.txt").write_bytes(latin1)
        code, _, err = ask(server, "--question-file", str(tmp_path / "q.txt"))
    elif source == "stdin":
        code, _, err = ask(server, "-", stdin=latin1)
    else:  # how Python hands over command-line bytes that are not UTF-8
        code, _, err = ask(server, latin1.decode("utf-8", errors="surrogateescape"))
    message = " ".join(err.split())
    assert code == 1 and "the question is not valid UTF-8: character 20 (byte 0xe9)" in message
    assert "blamed" not in message and "Traceback" not in message
    assert server.requests == []  # never reached the server
    runs = tmp_path / "data" / "runs"
    assert not runs.exists() or not list(runs.glob("*.jsonl"))  # no empty trace


async def test_the_library_refuses_a_question_that_is_not_text(tmp_path: Path) -> None:
    heavy = Heavy(ScriptedModel([]), MemorySearch(dict(PASSAGES)), settings=Settings(data_dir=tmp_path))
    with pytest.raises(ConfigError, match=r"not valid UTF-8: character 4 \(byte 0xff\)"):
        await heavy.arun("abc\udcff", "direct")
    assert not (tmp_path / "runs").exists()
