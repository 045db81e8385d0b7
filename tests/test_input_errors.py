"""Bad input gets a clear one-line error, never a traceback: eval datasets that are not UTF-8 or hold no
questions, and `runs --limit` out of range."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from openheavy import cli
from openheavy.evals import load_dataset
from openheavy.evals.datasets import DatasetError


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("OPENHEAVY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("OPENHEAVY_CONFIG", str(tmp_path / "none.toml"))
    return tmp_path


def latin1_dataset(folder: Path) -> Path:
    path = folder / "latin1.jsonl"
    lines = [
        json.dumps({"question": "Where?", "answer": "Paris"}),
        json.dumps({"question": "Qu'est-ce qu'un café ?", "answer": "coffee"}, ensure_ascii=False),
    ]
    path.write_bytes("\n".join(lines).encode("latin-1"))
    return path


def test_a_dataset_that_is_not_utf8_names_the_line_and_the_conversion(tmp_path: Path) -> None:
    path = latin1_dataset(tmp_path)
    with pytest.raises(DatasetError) as error:
        load_dataset(str(path))
    message = str(error.value)
    assert message.startswith(f"{path}:2: not UTF-8")
    assert (
        "JSON Lines files must be UTF-8; convert it: iconv -f" in message and "latin1.utf8.jsonl" in message
    )


def test_a_dataset_corpus_that_is_not_utf8_is_refused_when_indexed(tmp_path: Path) -> None:
    (tmp_path / "docs.json").write_bytes(
        json.dumps([{"title": "Café", "text": "Un café noir."}], ensure_ascii=False).encode("latin-1")
    )
    dataset = tmp_path / "with-corpus.jsonl"
    dataset.write_text(json.dumps({"question": "q", "answer": "a", "corpus": "docs.json"}) + "\n")
    [item] = load_dataset(str(dataset))
    assert item.corpus is not None
    with pytest.raises(DatasetError, match=r"docs.json:1: not UTF-8 .* JSON files must be UTF-8"):
        list(item.corpus.documents())


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_an_empty_dataset_is_an_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text(content)
    with pytest.raises(DatasetError, match="holds no questions"):
        load_dataset(str(path))


@pytest.mark.parametrize("kind", ["latin1", "empty"])
def test_eval_reports_a_bad_dataset_in_one_line(env: Path, kind: str) -> None:
    if kind == "latin1":
        path = latin1_dataset(env)
    else:
        path = env / "empty.jsonl"
        path.write_text("")
    result = CliRunner().invoke(cli.app, ["eval", str(path), "--modes", "direct", "--out", str(env / "out")])
    output = " ".join(result.output.split())
    assert result.exit_code == 1 and "Traceback" not in output
    assert ("not UTF-8" if kind == "latin1" else "holds no questions") in output
    assert not (env / "out").exists()


def test_runs_limit_that_is_not_a_whole_number_is_a_usage_error(env: Path) -> None:
    result = CliRunner().invoke(cli.app, ["runs", "--limit", "1e20"])
    assert (result.exit_code == 2 and result.exception is None) or isinstance(result.exception, SystemExit)
    assert "--limit" in result.output and "integer" in result.output


def test_runs_limit_beyond_what_sqlite_counts_lists_every_run(env: Path) -> None:
    result = CliRunner().invoke(cli.app, ["runs", "--limit", str(10**20)])
    assert result.exit_code == 0, result.output
    assert result.exception is None
