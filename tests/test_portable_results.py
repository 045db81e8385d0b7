"""Portable results: eval folders reference runs by id and link traces exported beside them, so a folder
copied to another machine still reports with working links; older folders are upgraded; and no
committed file (the report writer's output, anything under docs/) names a path of the machine that
made it."""

from __future__ import annotations

import gzip
import json
import re
import shutil
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from fakes import PASSAGES, MemorySearch, action
from openheavy import cli
from openheavy.api import Heavy
from openheavy.config import Settings
from openheavy.evals import load_dataset, render_report, run_eval
from openheavy.evals.portable import exported_trace, make_portable
from openheavy.evals.store import EvalMeta, ResultRecord, read_results, write_meta
from openheavy.models.scripted import ScriptedModel
from test_eval_harness import FIXTURE_DATA, MODES, FakeRunner, quiet

REPO = Path(__file__).parent.parent
DOCS = REPO / "docs"
# An absolute path of some machine: a home, a temporary or a work folder, in any text. One in a Python
# string literal in single quotes is a documentation example a passage quotes (the tempfile docs'
# `(4, '/tmp/tmptpu9nin8')`); paths this project writes are JSON strings or markdown, never in those.
LOCAL_PATH = re.compile(r"(?<![\w.:/'])/(?:root|home|Users|tmp|var/folders|work|private|mnt)/[\w.@%+-]")
MARKDOWN_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def local_paths(text: str) -> list[str]:
    return [text[max(0, m.start() - 40) : m.end() + 40] for m in LOCAL_PATH.finditer(text)]


def broken_links(markdown: Path, root: Path = REPO) -> list[str]:
    """Relative links in a markdown file that do not resolve to a file inside `root`."""
    broken = []
    for target in MARKDOWN_LINK.findall(markdown.read_text(encoding="utf-8")):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue
        path = (markdown.parent / target.split("#")[0].replace("%20", " ")).resolve()
        if not path.is_relative_to(root.resolve()) or not path.exists():
            broken.append(target)
    return broken


def test_the_pattern_catches_local_paths() -> None:
    assert local_paths('"trace_path":"/root/.local/share/openheavy/runs/x.jsonl"')
    assert local_paths("[run](../../../../../home/ann/.local/share/x.jsonl)") == []  # relative: links test
    assert local_paths("see /tmp/pytest-of-root/x") and local_paths("/Users/ann/results")
    assert not local_paths("https://example.com/home/page and traces/x.jsonl.gz and a/b")
    assert not local_paths(">>> tempfile.mkstemp()\\n (4, '/tmp/tmptpu9nin8')")  # quoted from the docs
    assert local_paths('"/tmp/tmptpu9nin8"')


def test_no_committed_doc_names_a_local_path_or_links_nowhere() -> None:
    files = [p for p in DOCS.rglob("*") if p.is_file()]
    assert files, "docs/ is empty?"
    for path in files:
        if path.suffix in {".png", ".gz"}:
            continue
        text = path.read_text(encoding="utf-8")
        assert not local_paths(text), f"{path.relative_to(REPO)} names local paths: {local_paths(text)[:3]}"
        if path.suffix == ".md":
            assert broken_links(path) == [], f"{path.relative_to(REPO)} has dead links"
    for results in DOCS.rglob("results.jsonl"):
        for row in read_results(results.parent):
            assert row.trace_path is None or exported_trace(row, results.parent) is not None, row.run_id


async def run_fake_eval(tmp_path: Path) -> Path:
    out = tmp_path / "made-here" / "results"
    items = load_dataset("hotpotqa", FIXTURE_DATA)
    await run_eval(
        items, MODES, FakeRunner(tmp_path / "data" / "runs"), out, dataset="hotpotqa", console=quiet()
    )
    return out


async def test_a_results_folder_reports_with_working_links_on_another_machine(tmp_path: Path) -> None:
    out = await run_fake_eval(tmp_path)
    moved = tmp_path / "elsewhere" / "copy"
    shutil.copytree(out, moved)
    shutil.rmtree(tmp_path / "made-here")
    shutil.rmtree(tmp_path / "data")  # the runs and traces of the machine that made it are gone

    result = CliRunner().invoke(cli.app, ["eval", "--report", str(moved)])
    assert result.exit_code == 0, result.output
    report = (moved / "report.md").read_text()
    assert broken_links(moved / "report.md", root=moved) == []
    assert "[run-hp-2-rank](traces/run-hp-2-rank.jsonl.gz)" in report
    assert "run-hp-3-direct (trace not available)" in report
    for name in ("report.md", "results.jsonl", "summary.json", "eval.json"):
        text = (moved / name).read_text()
        assert str(tmp_path) not in text and not local_paths(text), name


def old_row(item_id: str, run_id: str, trace: str | None) -> ResultRecord:
    return ResultRecord(
        item_id=item_id,
        mode="direct",
        mode_name="direct",
        mode_n=1,
        seed=1,
        kind="qa",
        question="q?",
        answers=["a"],
        answer="a",
        run_id=run_id,
        trace_path=trace,
        metrics={"em": 1.0, "f1": 1.0},
    )


def test_an_old_results_folder_is_made_portable(tmp_path: Path) -> None:
    out = tmp_path / "old"
    out.mkdir()
    runs = tmp_path / "data" / "runs"
    runs.mkdir(parents=True)
    (runs / "r-here.jsonl").write_text('{"line": 1}\n')
    (runs / "r-by-id.jsonl").write_text('{"line": 2}\n')
    rows = [
        old_row("i1", "r-here", str(runs / "r-here.jsonl")),  # absolute, still on this machine
        old_row("i2", "r-gone", "/root/.local/share/openheavy/runs/r-gone.jsonl"),  # another machine's
        old_row("i3", "r-by-id", None),  # no path, but the run store has it
    ]
    write_meta(out, EvalMeta(dataset="x", item_ids=["i1", "i2", "i3"]))
    (out / "results.jsonl").write_text("".join(r.model_dump_json() + "\n" for r in rows))

    done = make_portable(out, runs)
    assert (done.exported, done.present, done.missing, done.rewritten) == (2, 0, 1, True)
    by_id = {r.run_id: r for r in read_results(out)}
    assert by_id["r-here"].trace_path == "traces/r-here.jsonl.gz"
    assert gzip.decompress((out / "traces" / "r-here.jsonl.gz").read_bytes()) == b'{"line": 1}\n'
    assert by_id["r-gone"].trace_path is None
    assert by_id["r-by-id"].trace_path == "traces/r-by-id.jsonl.gz"
    again = make_portable(out, runs)  # idempotent
    assert (again.exported, again.present, again.rewritten) == (0, 2, False)

    render_report(out, plots=False)
    report = (out / "report.md").read_text()
    assert "[r-here](traces/r-here.jsonl.gz)" in report and "r-gone (trace not available)" in report
    assert "/root/" not in report and str(tmp_path) not in report


def test_a_path_that_leaves_the_folder_is_never_followed(tmp_path: Path) -> None:
    (tmp_path / "secret.jsonl.gz").write_bytes(b"x")
    row = old_row("i", "r", "../secret.jsonl.gz")
    assert exported_trace(row, tmp_path / "out") is None


@pytest.fixture
def cli_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("OPENHEAVY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setattr(cli, "out", Console(width=120))
    return Settings(data_dir=tmp_path / "data")


async def test_an_exported_trace_can_be_read_by_openheavy_trace(tmp_path: Path, cli_data: Settings) -> None:
    model = ScriptedModel(
        [
            action("search", query="subprocess"),
            action("open", ref=1),
            action("answer", answer="Use run [1].", cite=[1]),
        ]
    )
    heavy = Heavy(model, MemorySearch(dict(PASSAGES)), settings=cli_data)
    result = await heavy.arun("How do I run a subprocess?", "single")
    exported = tmp_path / "RUN.jsonl.gz"
    exported.write_bytes(gzip.compress(result.trace_path.read_bytes()))
    shown = CliRunner().invoke(cli.app, ["trace", str(exported)])
    assert shown.exit_code == 0, shown.output
    assert "How do I run a subprocess?" in shown.output and "subprocess" in shown.output
    exported.write_bytes(b"not gzip at all")
    damaged = CliRunner().invoke(cli.app, ["trace", str(exported)])
    assert damaged.exit_code == 1 and "is damaged" in " ".join(damaged.output.split())


def test_summary_names_no_absolute_folder(tmp_path: Path) -> None:
    out = tmp_path / "abs"
    out.mkdir()
    write_meta(out, EvalMeta(dataset="x", item_ids=["i1"]))
    (out / "results.jsonl").write_text(old_row("i1", "r", None).model_dump_json() + "\n")
    render_report(out, plots=False)
    assert json.loads((out / "summary.json").read_text())["out_dir"] == "abs"
