"""A choice between a question's candidates decided by the years their documents open with."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

import pytest

from fakes import ListSink, MemorySearch, action, allowed_actions, plan_reply
from openheavy.dated_choice import choose_by_date, comparison_direction, opening_year
from openheavy.display.formatting import describe_vote
from openheavy.heavy import Orchestrator
from openheavy.models.scripted import FunctionModel
from openheavy.search.cache import CachedSearch
from openheavy.types import Document, EventStream, Message


def doc(title: str, text: str) -> Document:
    return Document(f"{title}#0", title, title, "", text)


@pytest.mark.parametrize(
    ("question", "direction"),
    [
        ("Which animated film was released first, Harbor Lights or The Kestrel?", "earliest"),
        ("Who was born earlier, Mara Quill or Nora Vell?", "earliest"),
        ("Which musician is older, Mara Quill or Nora Vell?", "earliest"),
        ("Which board game was published most recently, Harbor Lights or The Kestrel?", "latest"),
        ("Which tennis player is younger, Mara Quill or Nora Vell?", "latest"),
        ("Who died first, Mara Quill or Nora Vell?", None),  # the first year is a birth
        ("Who was the first composer to tour Asia, Mara Quill or Nora Vell?", None),  # a deed, not a date
        ("Which magazine is more popular, Harbor Lights or The Kestrel?", None),
        ("Which came first and which came later, Harbor Lights or The Kestrel?", None),
    ],
)
def test_the_question_says_whether_the_earliest_or_the_latest_is_asked_for(
    question: str, direction: str | None
) -> None:
    assert comparison_direction(question) == direction


def test_a_documents_year_is_the_first_in_its_opening() -> None:
    assert opening_year(doc("Nora Vell", "Nora Vell (25 January 1882 – 28 March 1941) was a poet.")) == 1882
    assert opening_year(doc("Kestrel", "The Kestrel is a 2006 film. It earned 1,250,000 dollars.")) == 2006
    assert opening_year(doc("Kestrel", "The Kestrel is a film by Mara Quill." + " x" * 200 + " 1999")) is None


def test_the_candidate_with_the_earliest_year_wins_and_a_missing_year_decides_nothing() -> None:
    question = "Which film was released first, Harbor Lights or The Kestrel?"
    docs = [
        doc("The Kestrel", "The Kestrel is a 2006 animated film."),
        doc("Harbor Lights (film)", "Harbor Lights is a 2002 family film."),
        doc("Harbor", "A harbor is a sheltered body of water, used since 1200."),
    ]
    choice = choose_by_date(question, docs)
    assert choice is not None and choice.winner is not None
    assert [(c.name, c.year) for c in choice.candidates] == [("Harbor Lights", 2002), ("The Kestrel", 2006)]
    assert choice.winner.name == "Harbor Lights"
    assert choose_by_date(question.replace("first", "more recently"), docs).winner.name == "The Kestrel"  # type: ignore[union-attr]
    # no document about one of them: nothing is decided
    assert choose_by_date(question, docs[1:]).winner is None  # type: ignore[union-attr]
    # the same year: nothing is decided
    same = [docs[0], doc("Harbor Lights", "Harbor Lights is a 2006 film.")]
    assert choose_by_date(question, same).winner is None  # type: ignore[union-attr]
    assert choose_by_date("Who directed Harbor Lights?", docs) is None
    # a title that holds the name's words is not a page about it
    pony = [doc("Ride a Kestrel Pony", "Ride a Kestrel Pony is a 1975 film."), docs[1]]
    assert choose_by_date(question, pony).winner is None  # type: ignore[union-attr]


QUESTION = "Which animated film was released first, Harbor Lights or The Kestrel?"
PASSAGES = {
    "harbor#0": ("Harbor Lights", "Harbor Lights is a 2002 American animated film."),
    "kestrel#0": ("The Kestrel", "The Kestrel is a 2006 American animated film."),
}


QUERIES = {
    "find the release years": "harbor kestrel",
    "check Harbor Lights": "animated film",
    "check The Kestrel": "american film",
    "compare": "american animated",
}


PLANNED = {  # each agent's task and first query
    "find the release years": "harbor kestrel",
    "check Harbor Lights": "harbor lights",
    "check The Kestrel": "kestrel animated",
    "compare": "animated film",
}


def team(answer_of: dict[str, str], *, open_harbor: bool = True) -> Any:
    """Four agents: each searches for both films, opens the Kestrel page (and Harbor Lights' unless told
    not to) and answers what `answer_of` says for it."""

    def respond(messages: Sequence[Message], schema: dict[str, Any] | None) -> str:
        system = messages[0].content
        if "planner" in system:
            tasks = list(PLANNED)
            return json.dumps(plan_reply(tasks, shape="short", queries=[[PLANNED[t]] for t in tasks]))
        if "lead researcher" in system:
            return json.dumps({"agreements": "", "conflicts": "", "short": "", "answer": "?", "cite": []})
        # a short answer's agent is told its first query, not its task
        task = next(t for t, query in PLANNED.items() if f'"{query}"' in messages[1].content)
        turns = sum(m.role == "assistant" for m in messages)
        opened = [json.loads(m.content).get("ref") for m in messages if m.role == "assistant"]
        refs = [r for r in opened if r]
        if allowed_actions(schema) == ["answer"] or turns >= 3:
            return action(
                "answer", short=answer_of[task], answer=f"{answer_of[task]} [{refs[-1]}]", cite=refs
            )
        if turns == 0:  # each its own words (a team never runs one search twice); all find both films
            return action("search", query=QUERIES[task])
        shown = "\n".join(m.content for m in messages if m.role == "user")
        titles = {title: int(ref) for ref, title in re.findall(r"^\[(\d+)\] (.+)$", shown, re.M)}
        if turns == 1:
            return action("open", ref=titles["The Kestrel"])
        if open_harbor:
            return action("open", ref=titles["Harbor Lights"])
        return action("answer", short=answer_of[task], answer=f"{answer_of[task]} [{refs[-1]}]", cite=refs)

    return respond


def run(model: FunctionModel) -> tuple[Orchestrator, ListSink]:
    sink = ListSink()
    heavy = Orchestrator(
        model,
        CachedSearch(MemorySearch(dict(PASSAGES))),
        stream=EventStream([sink]),
        run_id="r",
        agents=4,
        opening_search=False,
    )
    return heavy, sink


WRONG_MAJORITY = {
    "find the release years": "The Kestrel",
    "check Harbor Lights": "The Kestrel",
    "check The Kestrel": "The Kestrel",
    "compare": "Harbor Lights",
}


async def test_the_years_decide_a_choice_that_three_of_four_agents_got_wrong() -> None:
    heavy, sink = run(FunctionModel(team(WRONG_MAJORITY)))
    result = await heavy.run(QUESTION)
    assert result.short_answer == "Harbor Lights"
    assert result.answer.startswith("Harbor Lights\n\nHarbor Lights: 2002 [")
    assert {c.id for c in result.citations} == {"harbor#0", "kestrel#0"}
    [vote] = sink.of("VoteTaken")
    assert (vote.decided_by, vote.winner) == ("dates", "Harbor Lights")
    assert [c["answer"] for c in vote.candidates] == ["Harbor Lights: 2002", "The Kestrel: 2006"]
    assert describe_vote(vote) == '"Harbor Lights" by dates: Harbor Lights: 2002, The Kestrel: 2006'


async def test_a_candidate_no_agent_opened_is_read_from_a_result_an_agent_saw() -> None:
    heavy, _ = run(FunctionModel(team(WRONG_MAJORITY, open_harbor=False)))
    result = await heavy.run(QUESTION)
    assert result.short_answer == "Harbor Lights"
    harbor = next(c for c in result.citations if c.id == "harbor#0")
    assert harbor.source.read_by == ("checker",)


async def test_a_question_about_an_end_is_left_to_the_vote() -> None:
    heavy, sink = run(FunctionModel(team(WRONG_MAJORITY)))
    result = await heavy.run(QUESTION.replace("was released first", "closed first"))
    assert result.short_answer == "The Kestrel"
    [vote] = sink.of("VoteTaken")
    assert vote.decided_by == "majority"
