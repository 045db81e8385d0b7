"""Budgets on the command line: `--max-tokens`, `--max-seconds`, `--max-steps` (and `--max-agents`) on
`ask`, `compare` and `eval`, validated, reaching the run, and the output says which budget stopped what."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner, Result

from fakes import action, allowed_actions
from openheavy import api, cli
from openheavy.config import Settings
from openheavy.corpus import index_paths
from openheavy.display.render import render_budget_stops
from openheavy.models import registry
from openheavy.models.scripted import FunctionModel
from openheavy.trace import RunStore, read_trace, run_store_path
from openheavy.types import Message

FIXTURES = Path(__file__).parent / "fixtures"


def researcher(messages: Sequence[Message], schema: dict[str, Any] | None) -> str:
    """Searches, opens the first hit (unless the results showed it whole), then answers (citing it once
    it has seen it); plain text when no schema is sent (direct mode)."""
    if schema is None:
        return "Once a week."
    turns = sum(m.role == "assistant" for m in messages)
    allowed = allowed_actions(schema)
    if allowed == ["answer"] or turns >= 2 or (turns == 1 and "open" not in allowed):
        return action("answer", answer="Water them deeply once a week.", cite=[1] if turns >= 1 else [])
    if turns == 0:
        return action("search", query="tomatoes watered")
    return action("open", ref=1)


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data = tmp_path / "data"
    monkeypatch.setenv("OPENHEAVY_DATA_DIR", str(data))
    monkeypatch.setattr(cli, "out", Console(width=200))
    monkeypatch.setattr(cli, "err", Console(stderr=True, width=200))
    index_paths([FIXTURES / "corpus"], "fixture", Settings(data_dir=data).index_dir)

    def scripted(spec: str, settings: Settings, api_key: str | None = None) -> FunctionModel:
        return FunctionModel(researcher)

    monkeypatch.setattr(api, "resolve_model", scripted)
    monkeypatch.setattr(registry, "resolve_model", scripted)
    return data


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli.app, list(args))


def settings_of_last_run(data_dir: Path) -> dict[str, Any]:
    (row, *_) = RunStore(run_store_path(data_dir / "runs")).list(limit=1)
    started = read_trace(Path(row.trace_path or ""))[0]
    assert started.kind == "RunStarted"
    settings: dict[str, Any] = started.payload["settings"]
    return settings


@pytest.mark.parametrize("command", ["ask", "compare", "eval"])
def test_every_run_command_takes_the_budget_flags(command: str) -> None:
    result = CliRunner().invoke(cli.app, [command, "--help"], terminal_width=200)
    for flag in ("--max-tokens", "--max-seconds", "--max-steps"):
        assert flag in result.output, f"{command} has no {flag}"
    if command != "eval":  # eval's heavy:N sets the number of agents itself
        assert "--max-agents" in result.output


@pytest.mark.parametrize("command", [["ask", "q"], ["compare", "q"], ["eval", "gsm8k"]])
@pytest.mark.parametrize("bad", ["0", "-1", "nan", "inf", "-inf"])
def test_bad_seconds_are_refused_before_anything_runs(data_dir: Path, command: list[str], bad: str) -> None:
    result = invoke(*command, "--model", "local", "--max-seconds", bad)
    assert result.exit_code == 1, result.output
    assert f"--max-seconds must be a positive, finite number of seconds, got {float(bad)}" in result.output
    assert not (data_dir / "runs").exists()


@pytest.mark.parametrize("bad", ["0", "-5", "1.5", "1e20"])
def test_bad_token_budgets_are_refused(data_dir: Path, bad: str) -> None:
    result = invoke("ask", "q", "--max-tokens", bad)
    assert result.exit_code == 2 and "--max-tokens" in result.output
    assert not (data_dir / "runs").exists()


def test_ask_budgets_reach_the_run_and_the_answer_says_which_stopped_it(data_dir: Path) -> None:
    result = invoke(
        "ask", "How often should tomatoes be watered?", "--corpus", "fixture", "--max-steps", "1",
        "--max-tokens", "5000", "--max-seconds", "30",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "stopped by budget: steps (--max-steps 1): agent-1" in result.output
    recorded = settings_of_last_run(data_dir)
    assert (recorded["max_steps"], recorded["max_tokens"], recorded["max_seconds"]) == (1, 5000, 30.0)


def test_a_spent_token_budget_is_named_with_its_flag(data_dir: Path) -> None:
    # 6,000 tokens pay for the search (after the opening search's results) and one more call, not two:
    # that call must be the answer
    result = invoke(
        "ask", "How often should tomatoes be watered?", "--corpus", "fixture", "--max-tokens", "6000"
    )
    assert result.exit_code == 0, result.output
    assert "stopped by budget: tokens (--max-tokens 6,000): agent-1" in result.output
    (row, *_) = RunStore(run_store_path(data_dir / "runs")).list(limit=1)
    events = read_trace(Path(row.trace_path or ""))
    actions = [e.payload["action"] for e in events if e.kind == "ActionParsed"]
    assert actions == ["search", "answer"]


def test_a_token_budget_too_small_for_any_call_fails_the_run_naming_it(data_dir: Path) -> None:
    result = invoke(
        "ask", "How often should tomatoes be watered?", "--corpus", "fixture", "--max-tokens", "1"
    )
    assert result.exit_code == 1, result.output
    output = " ".join(result.output.split())
    assert "the token budget of 1 has 1 tokens left" in output and "raise --max-tokens" in output


def test_no_budget_line_when_no_budget_stopped_anything(data_dir: Path) -> None:
    result = invoke("ask", "How often should tomatoes be watered?", "--corpus", "fixture")
    assert result.exit_code == 0, result.output
    assert "stopped by budget" not in result.output


def test_compare_passes_the_budgets_to_every_mode_and_names_the_stops(data_dir: Path) -> None:
    result = invoke(
        "compare", "How often should tomatoes be watered?", "--modes", "direct,single", "--corpus", "fixture",
        "--max-steps", "1", "--max-seconds", "45",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "single: stopped by budget: steps (--max-steps 1): agent-1" in result.output
    assert "direct: stopped" not in result.output
    assert settings_of_last_run(data_dir)["max_seconds"] == 45.0


def test_eval_runs_every_item_under_the_budgets_and_counts_the_stops(data_dir: Path, tmp_path: Path) -> None:
    dataset = tmp_path / "set.jsonl"
    (tmp_path / "docs.jsonl").write_text(json.dumps({"title": "Tomatoes", "text": "Water tomatoes weekly."}))
    rows = [
        {"id": f"q{i}", "question": "How often are tomatoes watered?", "answer": "weekly"} for i in (1, 2)
    ]
    dataset.write_text("".join(json.dumps(r | {"corpus": "docs.jsonl"}) + "\n" for r in rows))
    out = tmp_path / "out"
    result = invoke(
        "eval", str(dataset), "--modes", "single", "--out", str(out), "--max-steps", "1",
        "--max-tokens", "4000", "--max-seconds", "60",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "stopped by budget: steps (--max-steps 1): single ×2" in result.output
    recorded = settings_of_last_run(data_dir)
    assert (recorded["max_steps"], recorded["max_tokens"], recorded["max_seconds"]) == (1, 4000, 60.0)


def test_the_budget_line_names_every_budget_and_what_it_stopped() -> None:
    agents = [
        {"agent": "agent-1", "stop_reason": "budget:tokens"},
        {"agent": "agent-2", "stop_reason": "answered"},
        {"agent": "agent-3", "stop_reason": "budget:tokens"},
        {"agent": "agent-4", "stop_reason": "budget:time"},
    ]
    limits = {"tokens": "--max-tokens 500", "time": "--max-seconds 5"}
    assert render_budget_stops("answered", agents, limits) == (
        "stopped by budget: tokens (--max-tokens 500): agent-1, agent-3 · time (--max-seconds 5): agent-4"
    )
    assert (
        render_budget_stops("budget:time", [], limits) == "stopped by budget: time (--max-seconds 5): the run"
    )
    assert render_budget_stops("answered", agents[1:2], limits) is None
