"""The harness end to end with the real engine: `HeavyRunner` over the 3-item HotpotQA fixture, a
scripted model, the fixture corpus indexed for real, every mode graded, traced and resumable."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from fakes import action, allowed_actions
from openheavy.config import Settings
from openheavy.errors import ConfigError
from openheavy.evals import ModeSpec, build_corpus, dataset_corpora, load_dataset, parse_modes, run_eval
from openheavy.evals.runner import HeavyRunner
from openheavy.evals.store import read_results
from openheavy.models.scripted import FunctionModel
from openheavy.modes import RunOptions
from openheavy.types import Message

FIXTURE_DATA = Path(__file__).parent / "fixtures" / "eval" / "data"

# question fragment -> (what an agent searches for, its answer (the gold), what the model says without tools)
KNOWN = {
    "Quill Gazette": ("Nora Vell grew up", "Ashby", "Marrow"),
    "Lake Dorn": ("Lake Dorn glacial", "Yes", "yes"),
    "Marrow river": ("Marrow river bridges", "3,000", "about 2,000"),
}


def about(messages: Sequence[Message]) -> tuple[str, str, str]:
    # the question (the first user message's first line), not the passages the agent was shown since
    text = next(m.content for m in messages if m.role == "user").splitlines()[0]
    for fragment, known in KNOWN.items():
        if fragment in text:
            return known
    raise AssertionError(f"unknown question in: {text[:200]}")


def respond(messages: Sequence[Message], schema: dict[str, Any] | None) -> str:
    system = messages[0].content
    query, gold, guess = about(messages)
    if "planner" in system:
        tasks = [
            {"task": f"find {query}", "queries": [query]},
            {"task": f"check {query}", "queries": ["check"]},
        ]
        return json.dumps({"answer_shape": "long", "facet": "", "values": [], "tasks": tasks})
    if "lead researcher" in system:
        return json.dumps(
            {"agreements": "all", "conflicts": "none", "short": "", "answer": f"{gold} [1]", "cite": [1]}
        )
    if "research agent" not in system:  # direct mode
        return guess
    turns = sum(m.role == "assistant" for m in messages)
    unread = re.search(r"you have not read about it yet: open \[(\d+)\]", messages[-1].content)
    if unread and "open" in allowed_actions(schema):  # a yes/no question's other name: read it too
        return action("open", ref=int(unread[1]))
    if allowed_actions(schema) == ["answer"] or turns >= 2:
        opened = [json.loads(m.content).get("ref") for m in messages if m.role == "assistant"]
        ref = next((r for r in reversed(opened) if r), 1)  # the passage it opened
        return action("answer", answer=f"{gold} [{ref}]", cite=[ref])
    if turns == 0 and " alone. Find out whether " in messages[1].content:  # one name of a yes/no question
        return action("search", query=messages[1].content.split("Search first for: ")[1].split('"')[1])
    if turns == 0:  # a heavy run's second agent words it differently: a team never repeats a search
        return action("search", query=f"{query} check" if f"check {query}" in messages[1].content else query)
    # the first result of its own search (the opening search's results, shown first, hold other numbers);
    # a result the search showed whole is read already: the agent answers from it
    first = int(re.findall(r"^\[(\d+)\]", messages[-1].content, re.M)[0])
    options = {o["properties"]["action"]["enum"][0]: o for o in (schema or {}).get("anyOf", [schema])}
    if first in options.get("open", {}).get("properties", {}).get("ref", {}).get("enum", []):
        return action("open", ref=first)
    return action("answer", answer=f"{gold} [{first}]", cite=[first])


def check_rows(rows: dict[tuple[str, str], Any], out: Path) -> None:
    """Every run links its trace, exported beside the results; researching modes searched, read and
    cited what they read."""
    for (item_id, mode), row in rows.items():
        assert row.run_id and row.trace_path == f"traces/{row.run_id}.jsonl.gz", (item_id, mode)
        assert (out / row.trace_path).is_file(), (item_id, mode)
        if mode == "direct":
            assert row.figures["searches"] == 0 and row.citations == []
            continue
        assert row.figures["searches"] >= 1 and row.figures["documents_read"] >= 1
        assert row.citations and row.citations[0]["title"], (item_id, mode)


async def test_every_mode_through_the_real_engine_is_graded_traced_and_resumable(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    items = load_dataset("hotpotqa", FIXTURE_DATA)
    for spec in dataset_corpora(items):
        build_corpus(spec, settings.index_dir)
    model = FunctionModel(respond)
    runner = HeavyRunner(model, settings, verifier="vote", max_steps=4)
    modes = parse_modes("direct,single,heavy:2,rank:2")
    out = tmp_path / "out"
    console = Console(file=io.StringIO(), force_terminal=False)

    summary = await run_eval(items, modes, runner, out, concurrency=2, dataset="hotpotqa", console=console)

    rows = {(row.item_id, row.mode): row for row in read_results(out)}
    assert len(rows) == 12 and all(row.error is None for row in rows.values())
    by_mode = {m.mode: m for m in summary.modes}
    # direct knows one answer of three; every researching mode reads the passage and gets all three
    assert by_mode["direct"].metrics["em"].value == 1 / 3
    for label in ("single", "heavy:2", "rank:2"):
        assert by_mode[label].metrics["em"].value == 1.0, label
    check_rows(rows, out)
    assert rows[("hp-1", "heavy:2")].figures["agents"] == 2
    assert rows[("hp-1", "single")].citations[0]["title"] == "Nora Vell"
    assert "| `heavy:2` | 3/3 | 0 | 1.000 [" in (out / "report.md").read_text()

    calls = len(model.calls)
    again = await run_eval(items, modes, runner, out, concurrency=2, dataset="hotpotqa", console=console)
    assert len(model.calls) == calls, "a rerun must not run finished items again"
    assert [m.mode for m in again.modes] == [m.label for m in modes]


def test_math_items_are_refused_for_modes_that_need_a_corpus(tmp_path: Path) -> None:
    runner = HeavyRunner(FunctionModel(respond), Settings(data_dir=tmp_path))
    item = load_dataset("gsm8k", FIXTURE_DATA, limit=1)[0]
    assert runner.options(item, ModeSpec("rank", 3), seed=5) == ("rank", RunOptions(seed=5, n=3))
    searchable = load_dataset("hotpotqa", FIXTURE_DATA, limit=1)[0]
    assert runner.options(searchable, ModeSpec("rank", 3), seed=5) == ("rank-tools", RunOptions(seed=5, n=3))
    assert runner.options(searchable, ModeSpec("heavy", 2), seed=5) == (
        "heavy",
        RunOptions(seed=5, agents=2, max_agents=2),
    )
    with pytest.raises(ConfigError, match="needs a corpus to search"):
        runner.options(item, ModeSpec("single"), seed=5)


@pytest.mark.parametrize(("dataset", "verifier"), [("gsm8k", "check:numeric"), ("hotpotqa", "vote")])
def test_the_eval_command_votes_with_the_datasets_own_verifier_by_default(
    dataset: str, verifier: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from openheavy.cli import app

    built: list[str] = []

    def runner(settings: Settings, *, verifier: str = "", max_steps: Any = None, **_: Any) -> Any:
        built.append(verifier)
        model = FunctionModel(lambda messages, schema: "Adding up.\nANSWER: 3")
        return HeavyRunner(model, settings, verifier=verifier, max_steps=max_steps)

    monkeypatch.setattr("openheavy.evals.runner.make_heavy_runner", runner)
    monkeypatch.setenv("OPENHEAVY_DATA_DIR", str(tmp_path / "data"))
    out = tmp_path / "out"
    args = ["eval", dataset, "--data-dir", str(FIXTURE_DATA), "--modes", "direct", "--limit", "1"]
    result = CliRunner().invoke(app, [*args, "--model", "local:fast", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert built == [verifier]
    explicit = CliRunner().invoke(app, [*args, "--verifier", "judge", "--out", str(tmp_path / "other")])
    assert explicit.exit_code == 0, explicit.output
    assert built == [verifier, "judge"]
