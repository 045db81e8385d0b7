"""benchmarks/heavy_report.py: each agent's own answer graded, beside the merged answer's grade."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

from openheavy.trace.jsonl import JsonlTraceSink
from openheavy.types import AgentFinished

ROOT = Path(__file__).resolve().parents[1]


def load_report() -> ModuleType:
    path = ROOT / "benchmarks" / "heavy_report.py"
    spec = importlib.util.spec_from_file_location("heavy_report", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["heavy_report"] = module
    spec.loader.exec_module(module)
    return module


report = load_report()


def trace(path: Path, answers: dict[str, tuple[str, str]]) -> Path:
    sink = JsonlTraceSink(path)
    for agent, (short, answer) in answers.items():
        sink.handle(
            AgentFinished(
                run_id="r",
                agent=agent,
                answer=answer,
                citations=[],
                stop_reason="answered",
                short_answer=short,
            )
        )
    sink.handle(
        AgentFinished(run_id="r", agent="synthesizer", answer="Paris", citations=[], stop_reason="answered")
    )
    sink.close()
    return path


def test_each_agents_short_answer_is_graded_and_the_best_one_per_run_is_the_merges_ceiling(
    tmp_path: Path,
) -> None:
    first = report.run_facts(
        str(
            trace(
                tmp_path / "a.jsonl", {"agent-1": ("Paris", "Paris [1]."), "agent-2": ("Lyon", "Lyon [2].")}
            )
        )
    )
    # an agent that left no short answer is graded on its answer; the synthesizer is not an agent
    second = report.run_facts(
        str(trace(tmp_path / "b.jsonl", {"agent-1": ("", "in Rome then"), "agent-2": ("Milan", "Milan.")}))
    )
    assert first["agents' answers"] == ["Paris", "Lyon"]
    assert second["agents' answers"] == ["in Rome then", "Milan"]
    scores = report.agent_scores(
        [
            (SimpleNamespace(kind="qa", answers=["Paris"]), first),
            (SimpleNamespace(kind="qa", answers=["Rome"]), second),
        ]
    )
    assert scores["agents' mean f1"] == (1 + 0 + 0.5 + 0) / 4  # "in Rome then" against "Rome": F1 0.5
    assert scores["best agent's f1 (the merge's ceiling)"] == (1 + 0.5) / 2


def test_no_agent_scores_for_one_agent_or_for_list_tasks(tmp_path: Path) -> None:
    one = report.run_facts(str(trace(tmp_path / "a.jsonl", {"agent-1": ("Paris", "Paris.")})))
    two = report.run_facts(str(trace(tmp_path / "b.jsonl", {"agent-1": ("a", "a"), "agent-2": ("b", "b")})))
    assert report.agent_scores([(SimpleNamespace(kind="qa", answers=["Paris"]), one)]) == {}
    assert report.agent_scores([(SimpleNamespace(kind="wide", answers=["a"]), two)]) == {}
