"""Verifiers: answer extraction and normalization, vote with its tie rules, the judge, the programmatic
checkers, the reward endpoint and spec parsing."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from fakes import ListSink
from openheavy.errors import ConfigError, ModelError, ModelOutputError, ModelUnreachableError
from openheavy.models.scripted import FunctionModel, ScriptedModel, Unconstrained
from openheavy.prompts import load_prompt
from openheavy.types import EventStream, JsonSchema, Message, ModelCalled, Usage
from openheavy.verify import (
    PAIRWISE_SCHEMA,
    POINTWISE_SCHEMA,
    CheckVerifier,
    JudgeVerifier,
    RewardVerifier,
    Sample,
    Score,
    Verifier,
    VoteVerifier,
    extract_answer,
    make_verifier,
    math_equal,
)


def samples(*answers: str, logprobs: Sequence[float | None] | None = None) -> list[Sample]:
    probs = list(logprobs) if logprobs is not None else [None] * len(answers)
    return [
        Sample(index=i, text=f"work {i}\nANSWER: {a}", answer=a, mean_logprob=p)
        for i, (a, p) in enumerate(zip(answers, probs, strict=True))
    ]


def by_index(scores: list[Score]) -> dict[int, Score]:
    return {s.index: s for s in scores}


def best(scores: list[Score]) -> int:
    return sorted(scores, key=lambda s: (-s.score, -s.tiebreak, s.index))[0].index


class FixedVerifier:
    """A tie-breaker stand-in that scores each answer from a table."""

    def __init__(self, table: dict[str, float], *, fail: bool = False) -> None:
        self.name = "fixed"
        self.table = table
        self.fail = fail
        self.seen: list[list[int]] = []

    @property
    def usage(self) -> Usage:
        return Usage()

    async def score(
        self,
        question: str,
        samples: Sequence[Sample],
        *,
        stream: EventStream | None = None,
        run_id: str = "",
    ) -> list[Score]:
        self.seen.append([s.index for s in samples])
        if self.fail:
            raise ModelError("judge server down")
        return [Score(s.index, self.table[s.answer], "fixed") for s in samples]


# ---------------------------------------------------------------- extraction and normalization


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Six times seven.\nANSWER: 42", "42"),
        ("ANSWER: 1\nOn second thought...\nANSWER: **Paris**.", "Paris"),  # the last ANSWER line
        ("**Final Answer:** $\\boxed{\\frac{1}{2}}$", "\\frac{1}{2}"),
        ("answer: `x = 3`", "x = 3"),
        ("The answer is below.\nANSWER:\n  7  \n", "7"),  # ANSWER: alone, the answer on the next line
        ("So we get \\boxed{x^{2}+\\frac{1}{2}} in the end.", "x^{2}+\\frac{1}{2}"),  # balanced braces
        ("\\boxed{1} first, then \\boxed{2}", "2"),
        ("Thus the answer is 3.5. Easy.", "3.5"),  # a decimal point is not a full stop
        ("I think the final answer is Paris\nbecause reasons", "Paris"),
        ("Some reasoning.\n\nBerlin.\n\n", "Berlin"),  # last non-empty line
        ('ANSWER: "yes"', "yes"),
        ("ANSWER: $5", "$5"),  # a currency sign is not a math delimiter
        ("", ""),
    ],
)
def test_extract_answer(text: str, expected: str) -> None:
    assert extract_answer(text) == expected


# ---------------------------------------------------------------- vote


async def test_vote_scores_vote_shares() -> None:
    scores = by_index(await VoteVerifier().score("q", samples("42", "41", "42.0", "Forty-two", "")))
    assert scores[0].score == scores[2].score == pytest.approx(2 / 5)
    assert scores[0].reason == "2/5 samples agree on '42'"
    assert scores[1].score == scores[3].score == pytest.approx(1 / 5)
    assert scores[4] == Score(4, 0.0, "no answer extracted")


async def test_vote_majority_wins_without_a_tie_note() -> None:
    judge = FixedVerifier({})
    scores = await VoteVerifier(tie_breaker=judge).score("q", samples("7", "8", "7"))
    assert best(scores) == 0
    assert "tie" not in by_index(scores)[0].reason
    assert judge.seen == []  # no tie, no judge calls


async def test_vote_tie_broken_by_the_tie_breaker() -> None:
    judge = FixedVerifier({"A": 0.2, "B": 0.9})
    scores = await VoteVerifier(tie_breaker=judge).score("q", samples("A", "B", "A", "B"))
    assert judge.seen == [[0, 2, 1, 3]]  # every sample of the tied answers
    assert best(scores) == 1
    assert all(s.score == 0.5 for s in scores)  # the reported score stays the vote share
    assert "broken by fixed (mean score 'A' 0.20, 'B' 0.90)" in by_index(scores)[0].reason


async def test_vote_tie_goes_to_the_greedy_sample_before_any_other_rule() -> None:
    judge = FixedVerifier({"A": 0.9, "B": 0.1})
    tied = samples("A", "B", "A", "B", logprobs=[-0.1, -0.9, -0.1, -0.9])
    tied[3] = replace(tied[3], temperature=0.0)  # the greedy sample answered B
    scores = await VoteVerifier(tie_breaker=judge).score("q", tied)
    assert best(scores) == 1  # B, though the log-probs and the judge prefer A
    assert judge.seen == []  # decided without a judge call
    assert "tie between 'A' and 'B' broken by the greedy sample (#3)" in by_index(scores)[1].reason
    # a greedy sample outside the tie decides nothing: the next rule does
    outside = samples("A", "B", "C", "C", logprobs=[-0.1, -0.9, -0.5, -0.5])
    outside[0] = replace(outside[0], temperature=0.0)
    scores = await VoteVerifier().score("q", outside)
    assert best(scores) == 2 and "broken by" not in by_index(scores)[2].reason  # C has the majority


async def test_vote_tie_goes_to_the_log_prob_before_the_judge() -> None:
    judge = FixedVerifier({"A": 0.9, "B": 0.1})
    scores = await VoteVerifier(tie_breaker=judge).score("q", samples("A", "B", logprobs=[-0.9, -0.1]))
    assert best(scores) == 1 and judge.seen == []
    assert "broken by mean log-prob" in scores[0].reason


async def test_vote_tie_broken_by_mean_logprob() -> None:
    scores = await VoteVerifier().score("q", samples("A", "B", logprobs=[-0.9, -0.1]))
    assert best(scores) == 1
    assert "broken by mean log-prob" in scores[0].reason


async def test_vote_tie_broken_by_earliest_sample() -> None:
    # One sample lacks a log-prob, so that rule cannot apply.
    scores = await VoteVerifier().score("q", samples("B", "A", "C", logprobs=[None, -0.1, -0.5]))
    assert best(scores) == 0
    assert "tie between 'B' and 'A' and 'C' broken by earliest sample (#0)" in scores[0].reason


async def test_vote_tie_falls_through_an_undecided_or_failing_tie_breaker() -> None:
    undecided = FixedVerifier({"A": 0.5, "B": 0.5, "C": 0.5})
    scores = await VoteVerifier(tie_breaker=undecided).score("q", samples("A", "B", "C"))
    assert best(scores) == 0
    assert "fixed undecided" in scores[0].reason and "broken by earliest sample" in scores[0].reason

    failing = FixedVerifier({}, fail=True)
    scores = await VoteVerifier(tie_breaker=failing).score("q", samples("A", "B"))
    assert best(scores) == 0
    assert "fixed failed: judge server down" in scores[0].reason
    assert "broken by earliest sample" in scores[0].reason


async def test_vote_with_only_empty_answers() -> None:
    scores = await VoteVerifier().score("q", samples("", " "))
    assert [s.score for s in scores] == [0.0, 0.0]


# ---------------------------------------------------------------- judge


def point(score: int, reason: str = "ok") -> str:
    return json.dumps({"reason": reason, "score": score})


def final_answer_in(messages: Sequence[Message], label: str = "Candidate's") -> str:
    match = re.search(rf"{re.escape(label)} final answer: (.*)", messages[-1].content)
    assert match, messages[-1].content
    return match[1]


async def test_judge_pointwise_for_two_answers() -> None:
    model = ScriptedModel([point(8, "right"), point(3, "arithmetic slip")])
    sink = ListSink()
    judge = JudgeVerifier(model)
    scores = await judge.score("What is 6*7?", samples("42", "41"), stream=EventStream([sink]), run_id="r1")
    assert scores == [Score(0, 0.8, "judge 8/10: right"), Score(1, 0.3, "judge 3/10: arithmetic slip")]
    assert len(model.calls) == 2  # N = 2: no tournament
    call = model.calls[0]
    assert call.json_schema == POINTWISE_SCHEMA and call.temperature == 0.0
    assert call.messages[0] == Message("system", load_prompt("judge_system").strip())
    assert "What is 6*7?" in call.messages[1].content
    assert final_answer_in(call.messages) == "42"
    events: list[ModelCalled] = sink.of("ModelCalled")
    assert [(e.purpose, e.agent, e.run_id) for e in events] == [("judge", "judge", "r1")] * 2
    assert events[0].messages[0]["role"] == "system"
    assert events[0].json_schema == POINTWISE_SCHEMA
    assert judge.usage.total > 0


async def test_judge_retries_once_after_invalid_output() -> None:
    # a backend without constrained output: prose, then the object in a code fence
    model = ScriptedModel([Unconstrained("I'd say 9!"), Unconstrained("```json\n" + point(9) + "\n```")])
    scores = await JudgeVerifier(model).score("q", samples("42"))
    assert scores[0].score == 0.9
    retry = model.calls[1].messages
    assert [m.role for m in retry] == ["system", "user", "assistant", "user"]
    assert retry[2].content == "I'd say 9!"
    assert "not valid: no JSON object" in retry[3].content


async def test_judge_failure_on_one_answer_scores_it_zero() -> None:
    model = ScriptedModel(
        [point(7), Unconstrained(json.dumps({"score": 11, "reason": "x"})), Unconstrained("still not json")]
    )
    scores = by_index(await JudgeVerifier(model).score("q", samples("42", "41")))
    assert scores[0].score == 0.7
    assert scores[1].score == 0.0
    assert scores[1].reason.startswith("judge failed:") and "even after a retry" in scores[1].reason


async def test_judge_with_nothing_to_judge() -> None:
    model = ScriptedModel([])
    assert await JudgeVerifier(model).score("q", []) == []


async def test_judge_failing_on_every_answer_is_an_error() -> None:
    model = ScriptedModel([ModelError("judge down"), ModelError("judge down")])
    with pytest.raises(ModelError, match="failed on every answer; first: judge failed: judge down"):
        await JudgeVerifier(model).score("q", samples("1", "2"))


def tournament_judge(
    points: dict[str, int], prefer: Sequence[str]
) -> tuple[FunctionModel, list[tuple[str, str]]]:
    """Grades answers from `points`; in a pairwise game the answer earlier in `prefer` wins. Records
    the A/B layout of every game."""
    layouts: list[tuple[str, str]] = []

    def reply(messages: Sequence[Message], schema: JsonSchema | None) -> str:
        if schema == POINTWISE_SCHEMA:
            return point(points[final_answer_in(messages)])
        assert schema == PAIRWISE_SCHEMA
        a, b = final_answer_in(messages, "Answer A's"), final_answer_in(messages, "Answer B's")
        layouts.append((a, b))
        winner = "A" if prefer.index(a) < prefer.index(b) else "B"
        return json.dumps({"reason": f"{winner} is better", "winner": winner})

    return FunctionModel(reply), layouts


async def test_judge_tournament_combines_points_and_win_rate() -> None:
    # Pointwise prefers "x"; the pairwise games prefer "y", and the round-robin decides.
    model, _ = tournament_judge({"x": 9, "y": 8, "z": 5}, prefer=["y", "x", "z"])
    sink = ListSink()
    scores = by_index(
        await JudgeVerifier(model).score("q", samples("x", "y", "z"), stream=EventStream([sink]))
    )
    assert len(model.calls) == 3 + 3  # pointwise for all, then 3 games among the top 3
    assert scores[1].score == pytest.approx(0.5 * 0.8 + 0.5 * 1.0)
    assert scores[0].score == pytest.approx(0.5 * 0.9 + 0.5 * 0.5)
    assert scores[2].score == pytest.approx(0.5 * 0.5 + 0.0)
    assert scores[1].reason == "judge 8/10: ok; won 2/2 pairwise"
    steps = [e.step for e in sink.of("ModelCalled")]
    assert sorted(steps) == list(range(6))  # pointwise steps 0-2, games 3-5


async def test_judge_tournament_randomizes_positions_with_a_seed() -> None:
    answers = ["p", "q", "r", "s"]
    points = dict.fromkeys(answers, 5)
    runs = []
    for seed in (0, 0, 1):
        model, layouts = tournament_judge(points, prefer=answers)
        await JudgeVerifier(model, seed=seed).score("q", samples(*answers))
        runs.append(layouts)
    assert runs[0] == runs[1]  # same seed, same layout
    assert runs[0] != runs[2]
    # Counter position bias: the earlier sample of a pair is shown first in some games, second in others.
    firsts = {a < b for a, b in runs[0]}
    assert firsts == {True, False}


async def test_judge_tournament_only_for_the_top_k_and_skips_equal_answers() -> None:
    model, layouts = tournament_judge({"1": 9, "1.0": 9, "2": 7, "3": 2, "4": 1}, prefer=["2", "1", "3", "4"])
    scores = by_index(await JudgeVerifier(model, top_k=3).score("q", samples("1", "1.0", "2", "3", "4")))
    # Finalists: "1", "1.0", "2". "1" vs "1.0" normalize equal: a draw without a call.
    assert len(model.calls) == 5 + 2
    games = {frozenset(layout) for layout in layouts}
    assert games == {frozenset({"1", "2"}), frozenset({"1.0", "2"})}
    assert scores[0].reason.endswith("won 0.5/2 pairwise")
    assert scores[2].score == pytest.approx(0.5 * 0.7 + 0.5 * 1.0)
    assert scores[3].reason.endswith("not in the top 3 for pairwise")
    assert scores[3].score == pytest.approx(0.5 * 0.2)
    finalists = [scores[i].score for i in (0, 1, 2)]
    assert min(finalists) >= max(scores[3].score, scores[4].score)


async def test_judge_tournament_can_be_turned_off_or_on() -> None:
    model, _ = tournament_judge({"x": 4, "y": 6}, prefer=["x", "y"])
    scores = by_index(await JudgeVerifier(model, tournament=True).score("q", samples("x", "y")))
    assert len(model.calls) == 3
    assert scores[0].score == pytest.approx(0.5 * 0.4 + 0.5)
    model, _ = tournament_judge({"x": 4, "y": 6, "z": 1}, prefer=["x", "y", "z"])
    await JudgeVerifier(model, tournament=False).score("q", samples("x", "y", "z"))
    assert len(model.calls) == 3


async def test_judge_as_vote_tie_breaker() -> None:
    model, _ = tournament_judge({"A": 3, "B": 9}, prefer=["B", "A"])
    scores = await VoteVerifier(tie_breaker=JudgeVerifier(model)).score("q", samples("A", "B"))
    assert best(scores) == 1
    assert "broken by judge" in scores[0].reason


# ---------------------------------------------------------------- programmatic checks


async def test_check_numeric_against_a_reference() -> None:
    checker = CheckVerifier("numeric", reference="1000.0")
    scores = await checker.score("q", samples("1,000", "about 999", "no idea", "1e3"))
    assert [s.score for s in scores] == [1.0, 0.0, 0.0, 1.0]
    assert scores[0].reason == "1000 == reference 1000"
    assert scores[1].reason == "999 != reference 1000"
    assert scores[2].reason == "no number in the answer"


async def test_check_numeric_self_consistency_without_a_reference() -> None:
    scores = by_index(await CheckVerifier("numeric").score("q", samples("1,000 apples", "999", "1000", "?")))
    assert scores[0].score == scores[2].score == pytest.approx(2 / 4)
    assert scores[1].score == pytest.approx(1 / 4)
    assert scores[3].score == 0.0


def test_check_numeric_needs_a_numeric_reference() -> None:
    with pytest.raises(ConfigError, match="numeric reference"):
        CheckVerifier("numeric", reference="Paris")


@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [
        ("\\frac{1}{2}", "0.5", True),
        ("1/2", "\\dfrac{1}{2}", True),
        ("0.5", "1/2", True),
        ("2^{10}", "1024", True),
        ("3", "3.0", True),
        ("1/3", "0.33", False),
        ("Paris", "paris", True),
        ("2", "3", False),
    ],
)
def test_math_equal(a: str, b: str, equal: bool) -> None:
    assert math_equal(a, b) is equal


async def test_check_math_against_a_reference() -> None:
    scores = await CheckVerifier("math", reference="0.5").score(
        "q", samples("\\frac{1}{2}", "1/2", "0.6", "")
    )
    assert [s.score for s in scores] == [1.0, 1.0, 0.0, 0.0]
    assert "equals reference '0.5'" in scores[0].reason
    assert "install" not in scores[0].reason  # math-verify is installed in the dev environment


async def test_check_math_self_consistency() -> None:
    scores = by_index(await CheckVerifier("math").score("q", samples("\\frac{1}{2}", "0.25", "0.5", "1/2")))
    assert scores[0].score == scores[2].score == scores[3].score == pytest.approx(3 / 4)
    assert scores[1].score == pytest.approx(1 / 4)


async def test_check_math_falls_back_without_math_verify(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "math_verify", None)  # makes `import math_verify` fail
    assert math_equal("\\frac{1}{2}", "0.5")
    assert math_equal("\\frac{\\frac{1}{2}}{2}", "1/4")
    assert not math_equal("10**10**10", "1")  # huge powers are refused, not computed
    scores = await CheckVerifier("math", reference="\\frac{3}{4}").score("q", samples("0.75", "3/5"))
    assert [s.score for s in scores] == [1.0, 0.0]
    assert "pip install 'openheavy[eval]'" in scores[0].reason


async def test_check_regex() -> None:
    scores = await CheckVerifier("regex:^[A-D]$").score("q", samples("B", "E", "AB"))
    assert [s.score for s in scores] == [1.0, 0.0, 0.0]
    assert scores[0].reason == "answer matches /^[A-D]$/"
    with pytest.raises(ConfigError, match="bad pattern"):
        CheckVerifier("regex:(")


CHECKER_SOURCE = """
import asyncio

def is_even(question, answer):
    return int(answer) % 2 == 0

def closeness(question, answer):
    return 1 / (1 + abs(float(answer) - 10))

async def slow_yes(question, answer):
    await asyncio.sleep(0)
    return "yes" in question

def text(question, answer):
    return "maybe"
"""


async def test_check_python_predicate_from_a_file(tmp_path: Path) -> None:
    file = tmp_path / "checks.py"
    file.write_text(CHECKER_SOURCE)
    even = CheckVerifier(f"py:{file}:is_even")
    assert even.name == f"check:py:{file}:is_even"
    scores = await even.score("q", samples("4", "3", "x"))
    assert [s.score for s in scores] == [1.0, 0.0, 0.0]
    assert scores[0].reason == "checker returned True"
    assert scores[2].reason.startswith("checker raised ValueError")
    close = await CheckVerifier(f"py:{file}:closeness").score("q", samples("10", "12"))
    assert [s.score for s in close] == pytest.approx([1.0, 1 / 3])
    slow = await CheckVerifier(f"py:{file}:slow_yes").score("yes?", samples("a"))
    assert slow[0].score == 1.0
    odd = await CheckVerifier(f"py:{file}:text").score("q", samples("a"))
    assert odd[0] == Score(0, 0.0, "checker returned 'maybe', expected a bool or a finite number")


async def test_check_python_predicate_from_a_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_checks_module.py").write_text(CHECKER_SOURCE)
    monkeypatch.syspath_prepend(tmp_path)
    scores = await CheckVerifier("py:my_checks_module:is_even").score("q", samples("2"))
    assert scores[0].score == 1.0


def test_check_python_predicate_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        CheckVerifier(f"py:{tmp_path}/missing.py:f")
    (tmp_path / "broken.py").write_text("raise RuntimeError('boom')\n")
    with pytest.raises(ConfigError, match="failed to load: RuntimeError: boom"):
        CheckVerifier(f"py:{tmp_path}/broken.py:f")
    (tmp_path / "ok.py").write_text("x = 1\n")
    with pytest.raises(ConfigError, match="has no function 'f'"):
        CheckVerifier(f"py:{tmp_path}/ok.py:f")
    with pytest.raises(ConfigError, match="cannot import checker module 'no_such_module_xyz'"):
        CheckVerifier("py:no_such_module_xyz:f")
    with pytest.raises(ConfigError, match=re.escape("needs `module.path:function`")):
        CheckVerifier("py:just_a_name")


def test_unknown_checker_lists_the_valid_ones() -> None:
    with pytest.raises(
        ConfigError, match=r"unknown checker 'bogus'; valid: check:numeric, check:math, check:regex"
    ):
        CheckVerifier("bogus")


# ---------------------------------------------------------------- reward endpoint


def reward_server(
    handler_replies: list[httpx.Response | Exception],
) -> tuple[httpx.MockTransport, list[dict[str, Any]]]:
    requests: list[dict[str, Any]] = []
    replies = iter(handler_replies)

    def handle(request: httpx.Request) -> httpx.Response:
        requests.append(
            {"url": str(request.url), "body": json.loads(request.content), "headers": request.headers}
        )
        reply = next(replies)
        if isinstance(reply, Exception):
            raise reply
        return reply

    return httpx.MockTransport(handle), requests


async def test_reward_default_shape() -> None:
    transport, requests = reward_server([httpx.Response(200, json={"scores": [0.2, 1.5]})])
    verifier = RewardVerifier("http://rm.local/score", api_key="k", transport=transport)
    scores = await verifier.score("What is 6*7?", samples("41", "42"))
    assert [s.score for s in scores] == [0.2, 1.5]
    assert scores[1].reason == "reward model score 1.5"
    assert requests[0]["body"] == {"question": "What is 6*7?", "answers": ["41", "42"]}
    assert requests[0]["headers"]["authorization"] == "Bearer k"
    assert verifier.name == "reward:http://rm.local/score"


async def test_reward_vllm_pooling_and_classify_shapes() -> None:
    pooling = {"data": [{"index": 1, "data": [0.1, 0.9]}, {"index": 0, "data": [[0.3], [0.4]]}]}
    transport, requests = reward_server([httpx.Response(200, json=pooling)])
    verifier = RewardVerifier("http://rm.local/pooling", model="rm", transport=transport)
    scores = await verifier.score("Q", samples("a", "b"))
    assert [s.score for s in scores] == [0.4, 0.9]  # ordered by index; the last token's reward
    assert requests[0]["body"] == {"input": ["Q\n\na", "Q\n\nb"], "model": "rm"}

    classify = {"data": [{"index": 0, "label": "good", "probs": [0.3, 0.7], "num_classes": 2}]}
    transport, _ = reward_server([httpx.Response(200, json=classify)])
    scores = await RewardVerifier("http://rm.local/classify", transport=transport).score("Q", samples("a"))
    assert scores[0].score == 0.7


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (httpx.Response(200, text="<html>"), "malformed reply"),
        (httpx.Response(200, json={"scores": [1.0]}), "expected 2 scores, got 1"),
        (httpx.Response(200, json={"rewards": [1, 2]}), 'expected {"scores"'),
        (httpx.Response(200, json={"scores": ["high", "low"]}), "cannot read a score"),
    ],
)
async def test_reward_malformed_replies(reply: httpx.Response, message: str) -> None:
    transport, _ = reward_server([reply])
    with pytest.raises(ModelOutputError, match=re.escape(message)):
        await RewardVerifier("http://rm.local/score", transport=transport).score("q", samples("1", "2"))


async def test_reward_http_error_and_unreachable_server() -> None:
    transport, _ = reward_server([httpx.Response(404, text="no such route")])
    with pytest.raises(ModelError, match="answered HTTP 404: no such route"):
        await RewardVerifier("http://rm.local/x", transport=transport).score("q", samples("1"))

    transport, requests = reward_server([httpx.ConnectError("refused")] * 3)
    verifier = RewardVerifier("http://rm.local/x", transport=transport, backoff=0.0, max_retries=2)
    with pytest.raises(ModelUnreachableError, match=re.escape("no reward server at http://rm.local/x")):
        await verifier.score("q", samples("1"))
    assert len(requests) == 3

    transport, requests = reward_server([httpx.RemoteProtocolError("server disconnected")] * 2)
    verifier = RewardVerifier("http://rm.local/x", transport=transport, backoff=0.0, max_retries=1)
    with pytest.raises(ModelError, match="failed after 2 tries: RemoteProtocolError: server disconnected"):
        await verifier.score("q", samples("1"))


async def test_reward_retries_transient_errors() -> None:
    transport, requests = reward_server(
        [httpx.Response(503), httpx.ReadTimeout("slow"), httpx.Response(200, json={"scores": [3]})]
    )
    scores = await RewardVerifier("http://rm.local/x", transport=transport, backoff=0.0).score(
        "q", samples("1")
    )
    assert scores[0].score == 3.0
    assert len(requests) == 3


# ---------------------------------------------------------------- spec parsing


def test_make_verifier() -> None:
    model = ScriptedModel([])
    vote = make_verifier("vote", model)
    assert isinstance(vote, VoteVerifier) and isinstance(vote.tie_breaker, JudgeVerifier)
    plain_vote = make_verifier("vote", None)
    assert isinstance(plain_vote, VoteVerifier) and plain_vote.tie_breaker is None
    judge = make_verifier("judge", model, seed=3)
    assert isinstance(judge, JudgeVerifier) and judge.seed == 3
    numeric = make_verifier("check:numeric", None, reference="12")
    assert isinstance(numeric, CheckVerifier) and numeric.reference == "12"
    assert make_verifier("check:regex:a:b", None).name == "check:regex:a:b"  # a pattern may hold colons
    reward = make_verifier("reward:http://localhost:9000/score", None)
    assert isinstance(reward, RewardVerifier) and reward.url == "http://localhost:9000/score"
    for verifier in (vote, judge, numeric, reward):
        assert isinstance(verifier, Verifier)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("judge", "needs a model"),
        ("check:", "needs a checker name"),
        ("check:nope", "unknown checker 'nope'"),
        ("reward:localhost", "needs an http(s) URL"),
        ("best-of", "unknown verifier 'best-of'; valid: vote, judge, check:NAME"),
    ],
)
def test_make_verifier_rejects_bad_specs(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        make_verifier(spec, None)


def test_verifier_prompts_exist() -> None:
    for name in ("judge_system", "judge_pointwise", "judge_pairwise", "judge_retry"):
        assert load_prompt(name).strip()
