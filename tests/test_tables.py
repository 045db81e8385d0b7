"""Readable tables at any width: `runs`, `corpora`, `compare` (and `model status`) render one line per row
at 80 columns (fewer columns, cut questions, never a cell wrapped into fragments), and `--json` for
scripts."""

from __future__ import annotations

import asyncio
import json
from io import StringIO
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner, Result

from fakes import PASSAGES, MemorySearch
from openheavy import api, cli
from openheavy.api import Heavy
from openheavy.config import Settings
from openheavy.corpus import index_paths
from openheavy.display.render import render_runs
from openheavy.display.tables import Column, one_line_table
from openheavy.models.scripted import FunctionModel, ScriptedModel
from openheavy.trace import RunStore, run_store_path
from test_cli_budgets import researcher

FIXTURES = Path(__file__).parent / "fixtures" / "corpus"
LONG_QUESTION = "How do I run a subprocess with a timeout, capture its output and its errors, " * 3
LONG_MODEL = "http://a-very-long-host-name.example.internal:8000/v1#Qwen/Qwen2.5-72B-Instruct-GPTQ-Int4"


def rendered(width: int, draw: object) -> list[str]:
    console = Console(file=StringIO(), width=width, force_terminal=False, color_system=None)
    assert callable(draw)
    draw(console)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert isinstance(text, str)
    return text.rstrip("\n").splitlines()


def test_columns_are_left_out_by_rank_and_the_flexible_one_is_cut() -> None:
    columns = [
        Column("id", keep=9),
        Column("extra", keep=1),
        Column("text", keep=5, flexible=True),
        Column("n", keep=8, justify="right"),
    ]
    rows = [["run-1", "some extra detail", "a long text " * 10, "1,234"], ["run-2", "x", "short", "5"]]
    wide = rendered(200, lambda c: c.print(one_line_table(columns, rows, c.width)))
    assert wide[0].split() == ["id", "extra", "text", "n"] and "a long text a long text" in wide[1]
    narrow = rendered(40, lambda c: c.print(one_line_table(columns, rows, c.width)))
    assert len(narrow) == 3 and all(len(line) <= 40 for line in narrow)
    assert narrow[0].split() == ["id", "text", "n"]  # the least needed column went first
    assert narrow[1].startswith("run-1") and narrow[1].endswith("1,234") and "…" in narrow[1]
    tiny = rendered(20, lambda c: c.print(one_line_table(columns, rows, c.width)))
    assert tiny[0].split() == ["id", "n"] and len(tiny) == 3


def runs_with_long_cells(settings: Settings) -> list[object]:
    async def make() -> None:
        for question in (LONG_QUESTION, "short one?"):
            heavy = Heavy(ScriptedModel(["An answer."]), MemorySearch(dict(PASSAGES)), settings=settings)
            heavy._model_spec = LONG_MODEL  # what the run store records as the model
            await heavy.arun(question, "direct")

    asyncio.run(make())
    return list(RunStore(run_store_path(settings.runs_dir)).list())


@pytest.mark.parametrize("width", [60, 80, 100, 120, 200])
def test_runs_fit_any_width_one_line_per_run(tmp_path: Path, width: int) -> None:
    rows = runs_with_long_cells(Settings(data_dir=tmp_path))
    lines = rendered(width, lambda c: render_runs(rows, c))  # type: ignore[arg-type]
    assert len(lines) == 1 + len(rows), "\n".join(lines)  # a header, then one line per run
    assert all(len(line) <= width for line in lines)
    for line, row in zip(lines[1:], rows, strict=True):
        assert line.startswith(row.run_id) and " ok " in f"{line} "  # type: ignore[attr-defined]
    header = lines[0].split()
    assert {"run", "status", "question", "tokens", "time"} <= set(header)
    if width <= 80:  # the start time and the model give way to the question
        assert "started" not in header and "model" not in header
    if width >= 200:
        assert header == ["run", "started", "mode", "model", "status", "question", "tokens", "time"]


@pytest.fixture
def cli_at_80(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("OPENHEAVY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setattr(cli, "out", Console(width=80))
    monkeypatch.setattr(cli, "err", Console(stderr=True, width=80))
    return Settings(data_dir=tmp_path / "data")


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli.app, list(args))


def test_runs_command_at_80_columns_and_as_json(cli_at_80: Settings) -> None:
    rows = runs_with_long_cells(cli_at_80)
    shown = invoke("runs")
    assert shown.exit_code == 0, shown.output
    lines = shown.stdout.rstrip("\n").splitlines()
    assert len(lines) == 1 + len(rows) and all(len(line) <= 80 for line in lines)
    listed = json.loads(invoke("runs", "--json").stdout)
    assert [r["run_id"] for r in listed] == [r.run_id for r in rows]  # type: ignore[attr-defined]
    assert listed[1]["question"] == LONG_QUESTION and listed[1]["model"] == LONG_MODEL


def test_corpora_at_80_columns_and_as_json(cli_at_80: Settings) -> None:
    long_name = "a-corpus-with-a-rather-long-name-that-goes-on-and-on-and-on-xx"
    for name in ("notes", long_name):
        index_paths([FIXTURES], name, cli_at_80.index_dir)
    shown = invoke("corpora")
    assert shown.exit_code == 0, shown.output
    lines = shown.stdout.rstrip("\n").splitlines()
    assert len(lines) == 1 + 2 + 1 and all(len(line) <= 80 for line in lines)  # header, rows, "in DIR"
    assert lines[0].split() == ["name", "documents", "chunks", "updated"]
    assert any(line.startswith("notes ") for line in lines)
    listed = json.loads(invoke("corpora", "--json").stdout)
    assert {c["name"] for c in listed} == {"notes", long_name}
    assert all(c["documents"] > 0 and c["problem"] is None for c in listed)


def test_compare_at_80_columns(cli_at_80: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    index_paths([FIXTURES], "fixture", cli_at_80.index_dir)
    monkeypatch.setattr(api, "resolve_model", lambda spec, settings, api_key=None: FunctionModel(researcher))
    shown = invoke("compare", LONG_QUESTION, "--modes", "direct,single", "--corpus", "fixture")
    assert shown.exit_code == 0, shown.output
    lines = shown.stdout.rstrip("\n").splitlines()  # the live view of each run goes to stderr
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["mode", "answer"])
    table = lines[header : header + 3]
    assert [line.split()[0] for line in table[1:]] == ["direct", "single"]
    assert all(len(line) <= 80 for line in lines)
    assert len(lines) == header + 3  # nothing after the two rows: no wrapped fragments
    assert "Water them deeply once a week." in shown.output  # each answer in full above the table
    runs = json.loads(invoke("compare", "q?", "--modes", "direct", "--json").stdout)
    assert runs[0]["mode"] == "direct" and runs[0]["answer"]
