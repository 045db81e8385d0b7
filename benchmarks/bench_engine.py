"""Engine benchmarks with a scripted model (no real model, no network).

1. Wall time of heavy mode (4 agents) against single mode when every model call takes a fixed latency
   (default 200 ms): with agents running concurrently, heavy should cost little more than the planner and
   synthesis calls on top of one agent's trajectory (goal: <= 1.3x single).
2. Engine throughput against a zero-latency model: agent steps per second through the real agent loop,
   tools, search cache and event stream (with metrics and a JSONL trace), goal >= 5,000 steps/s.

    python benchmarks/bench_engine.py [--latency 0.2] [--steps 6] [--out bench-engine.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from openheavy.agent import ResearchAgent
from openheavy.heavy import Orchestrator
from openheavy.models.scripted import FunctionModel
from openheavy.search.cache import CachedSearch
from openheavy.trace import JsonlTraceSink, MetricsSink
from openheavy.types import Document, EventStream, Hit, Message

sys.path.insert(0, str(Path(__file__).parent))

WORDS = ["subprocess", "timeout", "output", "shell", "pipe", "signal", "thread", "socket"]


class InstantSearch:
    """A zero-latency corpus of 64 passages."""

    name = "bench"

    def __init__(self) -> None:
        self.passages = {
            f"doc{i}#1": (f"Document {i} about {WORDS[i % 8]}", f"{WORDS[i % 8]} text " * 40)
            for i in range(64)
        }

    async def search(self, query: str, k: int = 5) -> list[Hit]:
        base = sum(map(ord, query)) % 60
        return [
            Hit(f"doc{j}#1", f"doc{j}", self.passages[f"doc{j}#1"][0], "", "snippet", 1.0)
            for j in range(base, base + k)
        ]

    async def open(self, id: str) -> Document:
        title, text = self.passages[id]
        return Document(id, id.split("#")[0], title, "", text)


def trajectory(steps: int) -> Any:
    """Each agent: search, open, search, open ... then answer at its last step."""

    def respond(messages: Sequence[Message], schema: dict[str, Any] | None) -> str:
        system = messages[0].content
        if "planner" in system:
            return json.dumps({"kind": "multi-part", "tasks": [f"part {i}" for i in range(4)]})
        if "lead researcher" in system:
            return json.dumps({"agreements": "", "conflicts": "", "answer": "merged [1]", "cite": [1]})
        turn = sum(m.role == "assistant" for m in messages)
        options = (schema or {}).get("anyOf", [schema])
        if turn >= steps - 1 or [o["properties"]["action"]["enum"] for o in options] == [["answer"]]:
            return json.dumps(
                {"missing": "", "action": "answer", "short": "done", "answer": "done [1]", "cite": []}
            )
        if turn % 2 == 0:
            query = f"{messages[1].content[-8:]} {turn}"
            return json.dumps({"missing": "", "action": "search", "query": query})
        ref = max(int(s) for s in _refs(messages[-1].content)) if _refs(messages[-1].content) else 1
        return json.dumps({"missing": "", "action": "open", "ref": ref})

    return respond


def _refs(text: str) -> list[str]:
    import re

    return re.findall(r"^\[(\d+)\]", text, flags=re.M)


async def single(model: FunctionModel, steps: int, stream: EventStream) -> None:
    agent = ResearchAgent(
        model, CachedSearch(InstantSearch()), stream=stream, run_id="bench", max_steps=steps
    )
    result = await agent.run("question")
    assert result.ok, result.error


async def heavy(model: FunctionModel, steps: int, stream: EventStream) -> None:
    orchestrator = Orchestrator(
        model, CachedSearch(InstantSearch()), stream=stream, run_id="bench", agents=4, max_steps=steps
    )
    result = await orchestrator.run("question")
    assert not result.failures, result.failures


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--steps", type=int, default=6, help="actions per agent trajectory")
    parser.add_argument("--runs", type=int, default=200, help="heavy runs for the throughput test")
    parser.add_argument("--out", type=Path, default=Path("bench-engine.json"))
    args = parser.parse_args()

    rows: dict[str, Any] = {}
    for steps in sorted({args.steps, 8}):
        timings = {}
        for name, fn in (("single", single), ("heavy-4", heavy)):
            model = FunctionModel(trajectory(steps), latency=args.latency)
            started = time.perf_counter()
            await fn(model, steps, EventStream([MetricsSink()]))
            timings[name] = (time.perf_counter() - started, len(model.calls))
        ratio = timings["heavy-4"][0] / timings["single"][0]
        rows[f"latency_{steps}_steps"] = {
            "steps_per_agent": steps,
            "latency_s": args.latency,
            "single_s": round(timings["single"][0], 3),
            "single_calls": timings["single"][1],
            "heavy4_s": round(timings["heavy-4"][0], 3),
            "heavy4_calls": timings["heavy-4"][1],
            "ratio": round(ratio, 3),
            # planner + agents + synthesis are three sequential phases: the floor is (steps + 2) / steps
            "ratio_floor": round((steps + 2) / steps, 3),
        }

    for label, with_trace in (("throughput_metrics_only", False), ("throughput", True)):
        with tempfile.TemporaryDirectory() as tmp:
            # The engine alone is measured: not the test model checking its replies against the schema.
            model = FunctionModel(trajectory(args.steps), check_schema=False)
            sinks: list[Any] = [MetricsSink()]
            if with_trace:
                sinks.append(JsonlTraceSink(Path(tmp) / "trace.jsonl"))
            stream = EventStream(sinks)
            started = time.perf_counter()
            for _ in range(args.runs):
                await heavy(model, args.steps, stream)
            elapsed = time.perf_counter() - started
            stream.close()
            agent_calls = len(model.calls)
            agent_steps = agent_calls - 2 * args.runs  # minus one plan and one synthesis call per run
        rows[label] = {
            "heavy_runs": args.runs,
            "jsonl_trace": with_trace,
            "model_calls": agent_calls,
            "agent_steps": agent_steps,
            "seconds": round(elapsed, 3),
            "agent_steps_per_s": round(agent_steps / elapsed),
            "model_calls_per_s": round(agent_calls / elapsed),
        }

    print(f"{'scenario':<22}{'single s':>10}{'heavy-4 s':>11}{'ratio':>8}{'floor':>8}")
    for key, row in rows.items():
        if key.startswith("latency"):
            print(
                f"{row['steps_per_agent']} steps @ {row['latency_s'] * 1000:.0f} ms{'':<5}"
                f"{row['single_s']:>10.2f}{row['heavy4_s']:>11.2f}{row['ratio']:>8.2f}"
                f"{row['ratio_floor']:>8.2f}"
            )
    for label in ("throughput_metrics_only", "throughput"):
        t = rows[label]
        sinks = "metrics + JSONL trace" if t["jsonl_trace"] else "metrics only"
        print(
            f"throughput ({sinks}): {t['agent_steps']:,} agent steps in {t['seconds']:.2f} s = "
            f"{t['agent_steps_per_s']:,} steps/s ({t['model_calls_per_s']:,} model calls/s)"
        )
    args.out.write_text(json.dumps(rows, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    asyncio.run(main())
