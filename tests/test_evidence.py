"""The recap before an agent's last answer: the read sentences closest to the question, the closest
last (`openheavy.evidence`, `ResearchAgent._recap`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from fakes import ListSink, MemorySearch, action, allowed_actions, plan_reply
from openheavy.agent import ResearchAgent
from openheavy.evidence import closest_sentences
from openheavy.heavy import Orchestrator
from openheavy.models.scripted import FunctionModel, ScriptedModel
from openheavy.search.cache import CachedSearch
from openheavy.types import Document, EventStream, Message

QUESTION = "Which river flows through the capital of Velmora?"
PAGES = {
    "velmora#1": ("Velmora", "Velmora is a small country. Its capital is Ostrin, a city of bridges."),
    "ostrin#1": ("Ostrin", "Ostrin lies on both banks of the river Sella. It was founded in 1204."),
    "mills#1": ("Velmora mills", "Mills in Velmora grind grain. Most are powered by wind."),
}


def doc(ref: str) -> Document:
    title, text = PAGES[ref]
    return Document(ref, ref.split("#")[0], title, "", text)


def test_the_sentences_sharing_most_question_words_come_closest_last() -> None:
    opened = {2: doc("ostrin#1"), 1: doc("velmora#1"), 3: doc("mills#1")}  # in reading order
    recalled = closest_sentences(QUESTION, opened, k=2)
    # "Its capital is Ostrin" holds "capital" and, with its page's title, "Velmora": 2 words, closest.
    # "Ostrin lies on both banks of the river Sella" holds "river": 1, as do "Velmora is a small
    # country." and "Mills in Velmora grind grain."; among equals the one read first comes. "Most are
    # powered by wind." holds "Velmora" only through its title, and no question word itself.
    assert [(r.ref, r.sentence, r.shared) for r in recalled] == [
        (2, "Ostrin lies on both banks of the river Sella.", 1),
        (1, "Its capital is Ostrin, a city of bridges.", 2),
    ]
    assert closest_sentences(QUESTION, opened, k=9)[-2:] == recalled
    # a sentence with no question word of its own is never recalled, title or not
    assert all("wind" not in r.sentence for r in closest_sentences(QUESTION, opened, k=9))


def test_sentences_are_split_where_a_new_one_starts_and_long_ones_are_cut() -> None:
    opened = {
        4: Document(
            "a", "a", "Sella", "", "The Sella (b. 12 km long) is a river. It floods. " + "river " * 80
        )
    }
    recalled = closest_sentences("How long is the river Sella?", opened, k=3)
    assert recalled[-1].sentence == "The Sella (b. 12 km long) is a river."
    cut = [r.sentence for r in recalled if r.sentence.endswith("…")]
    assert len(cut) == 1 and len(cut[0]) <= 322
    assert closest_sentences("Which of these?", opened) == []
    assert closest_sentences(QUESTION, {}) == []


def velmora_agent() -> tuple[ResearchAgent, ScriptedModel]:
    """An agent that searches, opens [1] Velmora and [2] Velmora mills, and answers at its last step."""
    model = ScriptedModel(
        [
            action("search", query="Velmora capital"),
            action("open", ref=1),  # [1] Velmora, [2] Velmora mills
            action("open", ref=2),
            action("answer", short="Sella", answer="The Sella flows through Ostrin [1].", cite=[1]),
        ]
    )
    agent = ResearchAgent(
        model, CachedSearch(MemorySearch(dict(PAGES))), stream=EventStream([]), run_id="r", max_steps=4
    )
    return agent, model


async def test_the_last_prompt_restates_the_closest_read_sentences_after_the_last_page() -> None:
    # a question that asks for an explanation keeps the whole conversation in its last call
    agent, model = velmora_agent()
    await agent.run("Why does a river flow through the capital of Velmora?")
    refs = {hit.id: ref for ref, hit in agent.sources.seen.items()}
    last = model.calls[-1].messages[-1].content
    recap = last[last.index("Of everything you read") :]
    # shown after the last page read and before the instruction to answer, in a data fence
    assert last.index("Mills in Velmora grind grain") < last.index("Of everything you read")
    assert recap.index("Its capital is Ostrin") < recap.index("You have no actions left")
    assert f"[{refs['velmora#1']}] Its capital is Ostrin, a city of bridges." in recap
    assert recap.count("<data-") == 2 and recap.count("</data-") == 2  # named in the label, then used
    # the closest sentence is the last one recalled
    assert recap.index("Mills in Velmora grind grain") < recap.index("Its capital is Ostrin")
    # the steps before the last one carry no recap
    assert all("Of everything you read" not in call.messages[-1].content for call in model.calls[:-1])


async def test_the_last_call_for_one_thing_is_the_question_and_the_recap_alone() -> None:
    """A question that asks for one name, date, place or number is answered from the recap: the last
    call holds the system prompt, the question and the closest read sentences, not the pages."""
    agent, model = velmora_agent()
    result = await agent.run(QUESTION)
    refs = {hit.id: ref for ref, hit in agent.sources.seen.items()}
    system, user = model.calls[-1].messages
    assert system == model.calls[0].messages[0]  # the same system prompt: its cached prefix serves
    assert user.content.startswith(f"Question: {QUESTION}\n")
    assert f"[{refs['velmora#1']}] Its capital is Ostrin, a city of bridges." in user.content
    assert "Most are powered by wind." not in user.content  # read, but shares no question word
    assert user.content.rstrip().endswith("say what is missing if they were not enough.")
    assert [c.id for c in result.citations] == ["velmora#1"]
    # the calls before the last one are the conversation as it grew
    assert [len(call.messages) for call in model.calls[:-1]] == [2, 4, 6]


def velmora_team(messages: Sequence[Message], schema: dict[str, Any] | None) -> str:
    """A planner of three search angles for a short answer; agents that search, open [1], then answer
    "Sella" citing it."""
    system = messages[0].content
    if "planner" in system:
        return json.dumps(plan_reply(["Velmora", "Ostrin", "Sella"], shape="short"))
    if "lead researcher" in system:
        return json.dumps(
            {"agreements": "", "conflicts": "", "short": "Sella", "answer": "Sella [1].", "cite": [1]}
        )
    turns = sum(m.role == "assistant" for m in messages)
    if allowed_actions(schema) == ["answer"]:
        return action("answer", short="Sella", answer="The Sella [1].", cite=[1])
    return action("search", query="Velmora capital") if turns == 0 else action("open", ref=1)


async def test_in_a_team_only_the_first_agent_answers_from_the_recap_alone() -> None:
    """Greedy agents given the same recap prompt write the same answer: one agent of a team answers
    from the recap, the others from their own conversations, so the vote weighs different answers."""
    sink = ListSink()
    orchestrator = Orchestrator(
        FunctionModel(velmora_team),
        CachedSearch(MemorySearch(dict(PAGES))),
        stream=EventStream([sink]),
        run_id="r",
        agents=3,
        max_steps=3,
        opening_search=False,
    )
    result = await orchestrator.run(QUESTION)
    last = {e.agent: e.messages for e in sink.of("ModelCalled") if e.purpose == "answer"}
    assert set(last) == {"agent-1", "agent-2", "agent-3"}
    # agent-1: the system prompt, then the question and the recap
    assert len(last["agent-1"]) == 2 and last["agent-1"][1]["content"].startswith(f"Question: {QUESTION}")
    # the others: their whole conversations, the recap after their last results
    for agent in ("agent-2", "agent-3"):
        assert len(last[agent]) > 2 and "Of everything you read" in last[agent][-1]["content"]
        assert not last[agent][1]["content"].startswith(f"Question: {QUESTION}\nOf everything")
    assert result.short_answer == "Sella"
