"""Program-aided samples in rank: a program written, run in the sandbox, what it prints the answer; and
the vote over prose and program samples together. Scripted models; the code really runs in the sandbox."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fakes import PASSAGES, ListSink, MemorySearch
from openheavy.api import Heavy
from openheavy.config import Settings
from openheavy.models.scripted import FunctionModel
from openheavy.modes import RunOptions
from openheavy.program_aided import mixed_sampler, program_answer, program_messages
from openheavy.rank import rank
from openheavy.sandbox import CodeResult, Sandbox, SandboxLimits
from openheavy.trace import read_trace
from openheavy.types import EventStream, Message
from openheavy.verify import make_verifier

LIMITS = SandboxLimits(
    cpu_seconds=2, wall_seconds=10, memory_mb=256, output_bytes=2000, processes=8, file_mb=1
)
QUESTION = "Tom has 3 bags of 4 apples and eats 5. How many are left?"


@pytest.fixture(scope="module")
def sandbox(bubblewrap: None) -> Sandbox:
    return Sandbox(LIMITS)


def ran(stdout: str, *, exit_status: int = 0, limit: Any = None) -> CodeResult:
    return CodeResult("x", stdout, "", exit_status, limit, 0.1, "bwrap", LIMITS)


def test_the_answer_is_the_last_number_printed_written_plainly() -> None:
    assert program_answer(ran("apples: 12\nleft: 7.0\n")) == "7"
    assert program_answer(ran("1,250.50\n")) == "1250.5"
    assert program_answer(ran("The winner is\nAda\n")) == "Ada"  # no number: the last line
    assert program_answer(ran("")) == ""
    assert program_answer(ran("7\n", exit_status=1)) == ""  # a failed run gives no answer
    assert program_answer(ran("7\n", limit="wall")) == ""


def test_the_program_prompt_carries_the_question_and_no_example_to_copy() -> None:
    _system, user = program_messages(QUESTION)
    assert user.content.startswith(QUESTION)
    assert "```python" in user.content and "print(" in user.content
    assert "=" not in user.content.replace(QUESTION, "")  # no example script whose lines could be copied


def replies(prose: list[str], programs: list[str]) -> FunctionModel:
    """A model that answers the prose prompt with `prose` and the program prompt with `programs`, in the
    order each kind is asked (concurrent samples: each list is consumed by whichever call comes first)."""
    left = {"prose": list(prose), "program": list(programs)}

    def respond(messages: list[Message], schema: dict[str, Any] | None) -> str:
        kind = "program" if "Python program" in messages[-1].content else "prose"
        return left[kind].pop(0)

    return FunctionModel(respond)


async def test_programs_outvote_a_greedy_chain_of_thought(sandbox: Sandbox) -> None:
    # Prose: greedy 17 (3 * 4 + 5, the misreading), one sample 7. Programs: both compute 7.
    model = replies(
        ["3 bags of 4 is 12, plus 5.\nANSWER: 17", "12 minus 5.\nANSWER: 7"],
        ["Multiply, then subtract.\n```python\nprint(3 * 4 - 5)\n```", "```python\nleft = 12 - 5\nleft\n```"],
    )
    sink = ListSink()
    stream = EventStream([sink])
    sampler = mixed_sampler(
        QUESTION, model, sandbox, stream=stream, run_id="r", temperature=0.4, seed=0, max_tokens=256
    )
    result = await rank(
        QUESTION,
        model,
        n=4,
        verifier=make_verifier("check:numeric", model),
        stream=stream,
        run_id="r",
        sampler=sampler,
    )
    assert result.answer == "7"
    by_index = {r.sample.index: r.sample for r in result.ranking}
    assert [by_index[i].answer for i in range(4)] == ["17", "7", "7", "7"]
    # the first of each kind is greedy; the program samples are asked for with room for code
    assert [by_index[i].temperature for i in range(4)] == [0.0, 0.0, 0.4, 0.4]
    assert by_index[3].text.endswith("The program printed:\n7")  # the last bare value, shown as a REPL does
    runs = sink.of("CodeRan")
    assert sorted(r.agent for r in runs) == ["sample-1", "sample-3"] and all(r.exit_status == 0 for r in runs)
    # the same question with prose alone: 17 and 7 tie, and the greedy sample's 17 wins
    alone = await rank(
        QUESTION,
        replies(["ANSWER: 17", "ANSWER: 7"], []),
        n=2,
        verifier=make_verifier("check:numeric", model),
        stream=EventStream([]),
        run_id="r2",
    )
    assert alone.answer == "17"


async def test_a_failed_program_casts_no_vote_and_its_tokens_count(sandbox: Sandbox) -> None:
    model = replies(
        ["ANSWER: 7", "ANSWER: 7"],
        ["```python\nprint(undefined_name)\n```", "I would compute it by hand: seven."],
    )
    sink = ListSink()
    stream = EventStream([sink])
    sampler = mixed_sampler(
        QUESTION, model, sandbox, stream=stream, run_id="r", temperature=0.4, seed=0, max_tokens=256
    )
    result = await rank(
        QUESTION,
        model,
        n=4,
        verifier=make_verifier("vote", model),
        stream=stream,
        run_id="r",
        sampler=sampler,
    )
    assert result.answer == "7" and [r.sample.index for r in result.ranking] == [0, 2]
    errors = {f.index: f.error for f in result.failed}
    assert errors[1] is not None and "NameError" in errors[1]
    assert errors[3] == "the reply held no program"
    assert sorted(n.data["index"] for n in sink.of("Note") if n.topic == "sample_failed") == [1, 3]
    # the failed samples' tokens are in the run's usage: four calls, not two
    calls = sink.of("ModelCalled")
    assert len(calls) == 4
    assert result.usage.completion_tokens == sum(c.completion_tokens for c in calls) > 0


async def test_rank_with_the_python_tool_runs_programs_through_the_api(
    tmp_path: Path, bubblewrap: None
) -> None:
    # prose alone would tie 17 (greedy) with 7, and keep 17; the program's 7 decides
    model = replies(["ANSWER: 17", "ANSWER: 7"], ["```python\nprint(3 * 4 - 5)\n```"])
    heavy = Heavy(model, MemorySearch(dict(PASSAGES)), settings=Settings(data_dir=tmp_path / "data"))
    result = await heavy.arun(QUESTION, "rank", RunOptions(n=3, verifier="check:numeric", tools=("python",)))
    assert result.answer == "7"
    trace = read_trace(result.trace_path)
    [started] = [r for r in trace if r.kind == "RunStarted"]
    assert started.payload["settings"]["tools"] == ["python"]
    assert sorted(r.agent for r in trace if r.kind == "CodeRan") == ["sample-1"]
    purposes = sorted(r.payload["purpose"] for r in trace if r.kind == "ModelCalled")
    assert purposes == ["program", "sample", "sample"]
