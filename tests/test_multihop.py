"""Multi-hop research: every action says what is still missing, and answers that are not ready (something
missing, nothing read, nothing read cited) are sent back once with what to do instead."""

from __future__ import annotations

import json
from typing import Any

import pytest

from fakes import ListSink, MemorySearch, action, allowed_actions
from openheavy.agent import (
    MISSING_MAX_CHARS,
    SHORT_MAX_CHARS,
    Action,
    AnswerArgs,
    Budget,
    ResearchAgent,
    StopReason,
)
from openheavy.models.scripted import ScriptedModel
from openheavy.search.cache import CachedSearch
from openheavy.tools.sources import SourceBook
from openheavy.trace import MetricsSink
from openheavy.types import Completion, Document, EventStream, Hit, Usage

# A two-hop question: the film passage names its director (the bridge), whose passage has the answer.
FILMS = {
    "field#1": ("The Quiet Field", "The Quiet Field is a 1998 film directed by Mara Lind."),
    "lind#1": ("Mara Lind", "Mara Lind is a director born in Tromsø, Norway."),
    "harbour#1": ("Harbour Lights", "Harbour Lights is a 2001 film set in a quiet fishing field."),
}
QUESTION = "Where was the director of The Quiet Field born?"


def run_agent(
    steps: list[Any], max_steps: int = 8, pages: dict[str, tuple[str, str]] | None = None
) -> tuple[ResearchAgent, ScriptedModel, ListSink]:
    model = ScriptedModel(steps)
    sink = ListSink()
    agent = ResearchAgent(
        model,
        CachedSearch(MemorySearch(dict(FILMS if pages is None else pages))),
        stream=EventStream([sink]),
        run_id="run-1",
        max_steps=max_steps,
    )
    return agent, model, sink


def read_then_answer(**answer: Any) -> list[str]:
    """The agent searches "Quiet Field", opens the first result and answers with `answer`."""
    return [action("search", query="Quiet Field"), action("open", ref=1), action("answer", **answer)]


async def test_an_agent_that_read_the_bridge_entity_searches_for_it_before_answering() -> None:
    agent, model, sink = run_agent(
        [
            action("search", query="Quiet Field", missing="who directed The Quiet Field"),
            action("open", ref=1, missing="who directed The Quiet Field"),
            # It read the director's name, but not where she was born: the answer is sent back.
            action(
                "answer", answer="Mara Lind directed it [1].", cite=[1], missing="where Mara Lind was born"
            ),
            action("search", query="Mara Lind born", missing="where Mara Lind was born"),
            action("open", ref=3, missing="where Mara Lind was born"),
            action("answer", answer="In Tromsø: Mara Lind [1] was born there [3].", cite=[1, 3]),
        ]
    )
    result = await agent.run(QUESTION)
    assert result.stop_reason == StopReason("answered")
    assert [c.id for c in result.citations] == ["field#1", "lind#1"]
    assert result.missing == ""
    [rejected] = sink.of("AnswerRejected")
    assert (rejected.step, rejected.reason) == (3, "missing")
    shown = model.calls[3].messages[-1].content
    assert 'you wrote that "where Mara Lind was born" is still missing. Search for it now' in shown
    assert "(Action 3 of 8 done." in shown
    assert [e.missing for e in sink.of("ActionParsed")][:2] == ["who directed The Quiet Field"] * 2


async def test_results_shown_whole_are_read_so_a_three_step_agent_reaches_the_bridge() -> None:
    """Passages short enough come whole with their hits (`Hit.text`): the results show them in full and
    count them as read, so the agent spends its steps searching for the bridge, not opening pages. The
    script fails without it: nothing would be read, and the answer's citations break the schema."""
    model = ScriptedModel(
        [
            action("search", query="Quiet Field", missing="who directed The Quiet Field"),
            action("search", query="Mara Lind", missing="where Mara Lind was born"),
            action("answer", answer="In Tromsø: Mara Lind [1] was born there [3].", cite=[1, 3]),
        ]
    )
    sink = ListSink()
    search = MemorySearch(dict(FILMS), whole=200)
    agent = ResearchAgent(model, CachedSearch(search), stream=EventStream([sink]), run_id="r", max_steps=3)
    result = await agent.run(QUESTION)
    assert [c.id for c in result.citations] == ["field#1", "lind#1"]
    assert search.opens == []  # nothing opened by a step
    assert allowed_actions(model.calls[1].json_schema) == ["search", "answer"]  # nothing left to open
    after_first = model.calls[1].messages[-1].content
    assert "[1] The Quiet Field (shown whole: read)" in after_first
    assert "The Quiet Field is a 1998 film directed by Mara Lind." in after_first
    read = sink.of("DocumentOpened")
    assert [(e.step, e.ref, e.in_results) for e in read] == [(1, 1, True), (1, 2, True), (2, 3, True)]
    assert read[2].text_shown == FILMS["lind#1"][1]


async def test_a_passage_too_long_to_show_whole_is_listed_with_its_snippet_to_open() -> None:
    model = ScriptedModel(
        [
            action("search", query="Quiet Field"),
            action("open", ref=2),
            action("answer", answer="Mara Lind directed it [1].", cite=[1]),
        ]
    )
    search = MemorySearch(dict(FILMS), whole=55)  # the film's passage fits, the harbour's (58) does not
    agent = ResearchAgent(model, CachedSearch(search), stream=EventStream([]), run_id="r", max_steps=4)
    await agent.run(QUESTION)
    schema = model.calls[1].json_schema
    assert schema is not None
    [open_option] = [o for o in schema["anyOf"] if o["properties"]["action"]["enum"] == ["open"]]
    assert open_option["properties"]["ref"]["enum"] == [2]
    assert "[2] Harbour Lights\n" in model.calls[1].messages[-1].content  # a snippet, not "read"
    assert search.opens == ["harbour#1"]


async def test_every_action_says_first_what_is_missing() -> None:
    agent, model, _ = run_agent(
        [
            action("search", query="Quiet Field", missing="the director"),
            action("open", ref=1, missing="the director"),
            action("answer", answer="Mara Lind [1].", cite=[1]),
        ]
    )
    await agent.run(QUESTION)
    for call in model.calls:
        options = call.json_schema.get("anyOf", [call.json_schema])
        for option in options:
            assert list(option["properties"])[:2] == ["missing", "action"]
            assert option["required"][:2] == ["missing", "action"]
            assert option["properties"]["missing"]["maxLength"] == MISSING_MAX_CHARS


@pytest.mark.parametrize("nothing", ["", "none", "N/A", "Nothing.", " nothing is missing "])
def test_ways_of_saying_nothing_is_missing(nothing: str) -> None:
    assert not Action("answer", AnswerArgs(answer="x"), "", nothing).states_missing
    assert Action("answer", AnswerArgs(answer="x"), "", "the year").states_missing


async def test_an_answer_is_sent_back_only_once_for_each_reason() -> None:
    agent, _model, sink = run_agent(
        [
            action("search", query="Quiet Field"),
            action("open", ref=1),
            action("answer", answer="Mara Lind [1].", cite=[1], missing="her birthplace"),
            action(
                "answer", answer="Unknown; Mara Lind directed it [1].", cite=[1], missing="her birthplace"
            ),
        ]
    )
    result = await agent.run(QUESTION)
    assert result.answer == "Unknown; Mara Lind directed it [1]." and result.steps == 4
    assert result.missing == "her birthplace"
    assert [e.reason for e in sink.of("AnswerRejected")] == ["missing"]


async def test_nothing_read_then_nothing_cited_each_sent_back_once() -> None:
    agent, model, sink = run_agent(
        [
            action("search", query="Quiet Field"),
            action("answer", answer="Mara Lind.", cite=[]),  # read nothing
            action("open", ref=1),
            action("answer", answer="Mara Lind.", cite=[]),  # read [1], cites nothing
            action("answer", answer="Mara Lind directed it.", cite=[1]),
        ]
    )
    result = await agent.run(QUESTION)
    assert [e.reason for e in sink.of("AnswerRejected")] == ["nothing_read", "uncited"]
    assert "you have read none of the results. Open the one most likely to hold the answer ([1], [2])" in (
        model.calls[2].messages[-1].content
    )
    assert "your answer cites none of the documents you read ([1])" in model.calls[4].messages[-1].content
    assert [c.id for c in result.citations] == ["field#1"]


async def test_a_marker_in_the_text_counts_as_a_citation() -> None:
    agent, _, sink = run_agent(read_then_answer(answer="Lind [1].", cite=[]))
    result = await agent.run(QUESTION)
    assert sink.of("AnswerRejected") == [] and [c.id for c in result.citations] == ["field#1"]


@pytest.mark.parametrize("max_steps", [3, 4])
async def test_no_answer_is_sent_back_when_no_step_could_act_on_it(max_steps: int) -> None:
    # 3: the answer is the last step; 4: one step would be left, and it may only answer.
    agent, model, sink = run_agent(
        read_then_answer(answer="Mara Lind directed it [1].", cite=[1], missing="her birthplace"),
        max_steps=max_steps,
    )
    result = await agent.run(QUESTION)
    assert sink.of("AnswerRejected") == [] and result.missing == "her birthplace"
    last = ["answer"] if max_steps == 3 else ["search", "open", "answer"]
    assert allowed_actions(model.calls[-1].json_schema) == last


@pytest.mark.parametrize("answer_tokens", [100, 27_500])
async def test_an_answer_is_sent_back_only_while_the_budget_pays_for_acting_on_it(answer_tokens: int) -> None:
    """With the budget nearly spent by the answer call, sending the answer back would cost the answer
    (the next call would be refused): it stands, `missing` and all, and the run stays within budget."""
    budget = Budget(max_tokens=30_000, max_seconds=1e9)
    spent = [100, 100, answer_tokens, 100, 100, 100]
    steps = [
        action("search", query="Quiet Field"),
        action("open", ref=1),
        action("answer", answer="Mara Lind directed it [1].", cite=[1], missing="her birthplace"),
        action("search", query="Mara Lind born"),
        action("open", ref=3),
        action("answer", answer="In Tromsø: Mara Lind [1] was born there [3].", cite=[1, 3]),
    ]
    model = ScriptedModel(
        [Completion(text, usage=Usage(prompt_tokens=n)) for text, n in zip(steps, spent, strict=True)]
    )
    sink = ListSink()
    agent = ResearchAgent(
        model,
        CachedSearch(MemorySearch(dict(FILMS))),
        stream=EventStream([sink]),
        run_id="run-1",
        max_steps=8,
        budget=budget,
    )
    result = await agent.run(QUESTION)
    assert result.ok and budget.used.total <= budget.max_tokens
    if answer_tokens == 100:  # room to spare: sent back, and the agent goes on to find the birthplace
        assert [e.reason for e in sink.of("AnswerRejected")] == ["missing"]
        assert len(model.calls) == 6 and result.missing == ""
    else:
        assert sink.of("AnswerRejected") == [] and len(model.calls) == 3
        assert result.answer.startswith("Mara Lind directed it") and result.missing == "her birthplace"


async def test_rejections_are_counted_in_the_figures() -> None:
    agent, _, sink = run_agent(
        [
            action("search", query="Quiet Field"),
            action("answer", answer="Mara Lind.", cite=[]),
            action("open", ref=1),
            action("answer", answer="Mara Lind [1].", cite=[1]),
        ]
    )
    await agent.run(QUESTION)
    metrics = MetricsSink()
    for event in sink.events:
        metrics.handle(event)
    figures = metrics.figures()
    assert figures.answers_rejected == 1 and figures.per_agent["agent-1"].answers_rejected == 1


async def test_a_short_answer_that_repeats_the_question_is_sent_back_then_dropped() -> None:
    echo = "The director of The Quiet Field was born"
    agent, model, sink = run_agent(
        [
            action("search", query="Quiet Field"),
            action("open", ref=1),
            action("answer", short=echo, answer="Mara Lind directed it [1].", cite=[1]),
            action("answer", short=echo, answer="Mara Lind directed it [1].", cite=[1]),
        ]
    )
    result = await agent.run(QUESTION)
    assert [e.reason for e in sink.of("AnswerRejected")] == ["restated"]
    assert 'your "short" only repeats the question' in model.calls[3].messages[-1].content
    # asked again, it repeated the question again: the short answer is left out, and the trace says so
    assert result.short_answer == "" and result.answer == "Mara Lind directed it [1]."
    [edited] = sink.of("AnswerEdited")
    assert [edit["kind"] for edit in edited.edits] == ["short_answer_dropped"]


async def test_an_answer_that_copies_the_formats_placeholders_is_sent_back_then_dropped() -> None:
    # the 1.5B model copied '"short": "<the direct answer alone>", "answer": "<your answer>"' from its
    # instructions on 7 of 50 GSM8K problems
    copy = {"short": "<the direct answer alone>", "answer": "<your answer>", "cite": [1]}
    agent, model, sink = run_agent([*read_then_answer(**copy), action("answer", **copy)])
    result = await agent.run(QUESTION)
    assert [e.reason for e in sink.of("AnswerRejected")] == ["placeholder"]
    assert "copies the placeholder of the format (<the direct answer alone> and <your answer>)" in (
        model.calls[3].messages[-1].content
    )
    # copied again: nothing of it is an answer, and the trace says what was dropped
    assert result.short_answer == "" and "<" not in result.answer
    [edited] = sink.of("AnswerEdited")
    assert [edit["kind"] for edit in edited.edits][:2] == ["short_answer_dropped", "answer_dropped"]


async def test_a_placeholder_copy_sent_back_is_replaced_by_the_answer() -> None:
    copy = {"short": "<the direct answer alone>", "answer": "Mara Lind directed it [1].", "cite": [1]}
    agent, _model, sink = run_agent(
        [
            *read_then_answer(**copy),
            action("answer", short="Mara Lind", answer="Mara Lind directed it [1].", cite=[1]),
        ]
    )
    result = await agent.run(QUESTION)
    assert [e.reason for e in sink.of("AnswerRejected")] == ["placeholder"]
    assert result.short_answer == "Mara Lind" and result.answer == "Mara Lind directed it [1]."


async def test_a_short_answer_cut_at_its_bound_keeps_its_first_clause_and_the_trace_says_so() -> None:
    cut = ("Mara Lind, who directed The Quiet Field in 1998 and later moved to the coast of Norw" + "x" * 80)[
        :SHORT_MAX_CHARS
    ]
    agent, _model, sink = run_agent(
        read_then_answer(short=cut, answer="Mara Lind directed it [1].", cite=[1])
    )
    result = await agent.run(QUESTION)
    assert result.short_answer == "Mara Lind" and result.answer == "Mara Lind directed it [1]."
    [edited] = sink.of("AnswerEdited")
    assert [edit["kind"] for edit in edited.edits] == ["short_answer_cut"]


async def test_a_short_answer_in_the_questions_words_that_chooses_is_kept() -> None:
    agent, _model, sink = run_agent(
        read_then_answer(short="Mara Lind", answer="Mara Lind directed it [1].", cite=[1])
    )
    result = await agent.run("Who directed The Quiet Field, Mara Lind or Ola Berg?")
    assert result.short_answer == "Mara Lind" and not sink.of("AnswerRejected")


async def test_after_a_search_that_found_nothing_new_the_agent_reads_instead_of_searching_again() -> None:
    agent, model, _sink = run_agent(
        [
            action("search", query="Quiet Field"),
            action("search", query="Quiet Field"),  # the same words: nothing it has not seen
            action("open", ref=1),
            action("search", query="Mara Lind"),  # after reading, searching is open again
            action("answer", answer="Mara Lind directed it [1].", cite=[1]),
        ]
    )
    await agent.run(QUESTION)
    allowed = [allowed_actions(call.json_schema) for call in model.calls]
    assert "search" in allowed[1] and "search" not in allowed[2] and "open" in allowed[2]
    assert "search" in allowed[3]
    told = model.calls[2].messages[-1].content
    assert "next action opens one of the results you have not read, or answers" in told
    assert "next action opens" not in model.calls[1].messages[-1].content


async def test_after_two_searches_with_nothing_read_the_agent_reads_before_searching_again() -> None:
    agent, model, _sink = run_agent(
        [
            action("search", query="Quiet Field"),
            action("search", query="Mara Lind"),  # new results, still nothing read
            action("open", ref=1),
            action("answer", answer="Mara Lind directed it [1].", cite=[1]),
        ]
    )
    await agent.run(QUESTION)
    allowed = [allowed_actions(call.json_schema) for call in model.calls]
    assert "search" in allowed[1] and "search" not in allowed[2] and "open" in allowed[2]
    assert "You have searched twice and read nothing yet" in model.calls[2].messages[-1].content


def _hit(doc: str, title: str, snippet: str) -> Hit:
    return Hit(f"{doc}#0", doc, title, "", snippet, 1.0)


def test_the_closest_unread_result_is_the_one_sharing_most_words_with_the_question() -> None:
    book = SourceBook()
    book.register(
        [
            _hit("a", "Tellison", "Tellison is an indie rock band from London."),
            _hit("b", "Andrew Jaspan", "Andrew Jaspan is an editor and co-founder of The Conversation."),
            _hit("c", "Ringer Hut", "A chain of restaurants founded in 1962."),
        ]
    )
    question = "Andrew Jaspan was the co-founder of what not-for-profit media outlet?"
    assert book.closest_unopened(question) == 2
    book.mark_opened(2, Document("b#0", "b", "Andrew Jaspan", "", "text"))
    assert book.closest_unopened(question) is None  # no other unread result shares a word
    assert book.closest_unopened("Which band is from London?") == 1


async def test_after_a_search_the_agent_is_told_which_unread_result_is_closest_to_the_question() -> None:
    agent, model, _sink = run_agent(
        [
            action("search", query="film"),
            action("open", ref=1),
            action("answer", answer="Mara Lind directed it [1].", cite=[1]),
        ]
    )
    await agent.run(QUESTION)
    after_search = model.calls[1].messages[-1].content
    refs = {hit.title: ref for ref, hit in agent.sources.seen.items()}
    assert f"[{refs['The Quiet Field']}] shares the most words with the question" in after_search
    assert "shares the most words" not in model.calls[2].messages[-1].content  # not after reading


MAGAZINES = {
    "kestrel#1": ("Kestrel Review", "Kestrel Review is a quarterly literary magazine founded in 1990."),
    "harbor#1": ("Harbor Monthly", "Harbor Monthly is a boating and fishing magazine."),
    "gull#1": ("Gull Quarterly", "Gull Quarterly is a poetry magazine; unlike Harbor Monthly it has no ads."),
}
BOTH = "Are Kestrel Review and Harbor Monthly both literary magazines?"


def magazine_agent(steps: list[Any], max_steps: int = 6) -> tuple[ResearchAgent, ScriptedModel]:
    model = ScriptedModel(steps)
    agent = ResearchAgent(
        model,
        CachedSearch(MemorySearch(dict(MAGAZINES))),
        stream=EventStream([]),
        run_id="r",
        max_steps=max_steps,
    )
    return agent, model


async def test_an_agent_is_told_which_name_of_a_both_question_it_has_not_read_about() -> None:
    agent, model = magazine_agent(
        [
            action("search", query="Kestrel Review Harbor Monthly"),  # [1] Gull, [2] Harbor, [3] Kestrel
            action("open", ref=3),
            action("open", ref=2),
            action("answer", short="No", answer="No: Harbor Monthly is about boats [2].", cite=[2, 3]),
        ]
    )
    await agent.run(BOTH)
    assert {ref: hit.title for ref, hit in agent.sources.seen.items()} == {
        1: "Gull Quarterly",
        2: "Harbor Monthly",
        3: "Kestrel Review",
    }
    # after the search, nothing read: the first unread name, and the result whose title names it
    assert "asks about Kestrel Review too, and you have not read about it yet: open [3]" in (
        model.calls[1].messages[-1].content
    )
    # after reading Kestrel Review, Harbor Monthly is still unread ("Gull Quarterly" only mentions it)
    after_first = model.calls[2].messages[-1].content
    assert "asks about Harbor Monthly too, and you have not read about it yet: open [2]" in after_first
    assert "asks about" not in model.calls[3].messages[-1].content  # both read: nothing more to say


async def test_with_no_result_about_a_name_the_agent_is_told_to_search_for_it() -> None:
    agent, model = magazine_agent(
        [
            action("search", query="Kestrel Review"),
            action("open", ref=1),
            action("answer", short="Yes", answer="Yes [1].", cite=[1]),
        ]
    )
    await agent.run(BOTH)
    assert "asks about Harbor Monthly too, and you have not read about it yet: search for Harbor Monthly" in (
        model.calls[2].messages[-1].content
    )
    # a question that asks of no two names gets the usual lead instead
    agent, model = magazine_agent(
        [
            action("search", query="magazine"),
            action("open", ref=1),
            action("answer", answer="Yes [1].", cite=[1]),
        ]
    )
    await agent.run("Is Kestrel Review a literary magazine?")
    assert "asks about" not in " ".join(c.messages[-1].content for c in model.calls)


async def test_a_yes_that_no_page_read_about_a_name_supports_becomes_no() -> None:
    # Harbor Monthly's page says "boating and fishing magazine": a "yes, both literary" is not grounded
    sink = ListSink()
    agent, _ = magazine_agent(
        [
            action("search", query="Kestrel Review Harbor Monthly"),  # [1] Gull, [2] Harbor, [3] Kestrel
            action("open", ref=3),
            action("open", ref=2),
            action("answer", short="Yes", answer="Yes, both are literary magazines [2][3].", cite=[2, 3]),
        ]
    )
    agent.stream = EventStream([sink])
    result = await agent.run(BOTH)
    assert result.short_answer == "No"
    assert result.answer == 'No: no passage read about Harbor Monthly says "literary" [1].'
    assert [c.id for c in result.citations] == ["harbor#1"]
    [edited] = sink.of("AnswerEdited")
    assert edited.edits[0]["kind"] == "yes_not_grounded"
    assert "Harbor Monthly" in edited.edits[0]["detail"]
    assert sink.of("AgentFinished")[0].short_answer == "No"

    # with nothing read about Harbor Monthly, a "yes" is not grounded either
    agent, _ = magazine_agent(
        [
            action("search", query="Kestrel Review"),
            action("open", ref=1),
            action("answer", short="Yes", answer="Yes [1].", cite=[1]),
        ],
        max_steps=3,
    )
    result = await agent.run(BOTH)
    assert (result.short_answer, result.answer) == ("No", "No: nothing read is about Harbor Monthly.")


async def test_a_choice_the_pages_read_say_of_the_other_candidate_is_that_candidate() -> None:
    question = "Which magazine, Kestrel Review or Harbor Monthly, covers boating and fishing?"
    sink = ListSink()
    agent, _ = magazine_agent(
        [
            action("search", query="Kestrel Review Harbor Monthly"),  # [1] Gull, [2] Harbor, [3] Kestrel
            action("open", ref=2),
            action("open", ref=3),
            action("answer", short="Kestrel Review", answer="Kestrel Review [3].", cite=[3]),
        ]
    )
    agent.stream = EventStream([sink])
    result = await agent.run(question)
    assert result.short_answer == "Harbor Monthly"
    assert result.answer == (
        'Harbor Monthly: the passages read about Harbor Monthly say "magazine", "boating", "fishing" [1]; '
        "those about Kestrel Review say 1 of them [2]."
    )
    assert [c.id for c in result.citations] == ["harbor#1", "kestrel#1"]
    [edited] = sink.of("AnswerEdited")
    assert edited.edits[0]["kind"] == "choice_grounded"
    assert edited.edits[0]["detail"].startswith('"Kestrel Review" became "Harbor Monthly"')

    # the choice the pages support stands as it is; so does one made without reading both
    for steps in (
        [
            action("open", ref=2),
            action("open", ref=3),
            action("answer", short="Harbor Monthly", answer="Harbor Monthly [2].", cite=[2]),
        ],
        [
            action("open", ref=3),
            action("answer", short="Kestrel Review", answer="Kestrel Review [3].", cite=[3]),
        ],
    ):
        agent, _ = magazine_agent([action("search", query="Kestrel Review Harbor Monthly"), *steps])
        result = await agent.run(question)
        assert result.short_answer == json.loads(steps[-1])["short"]
        assert not result.answer.startswith(f"{result.short_answer}: the passages")


async def test_a_yes_that_each_page_read_supports_stands_and_a_no_is_never_turned() -> None:
    pages = dict(
        MAGAZINES, **{"harbor#1": ("Harbor Monthly", "Harbor Monthly is a literary magazines' digest.")}
    )
    for short, expected in [("Yes", "Yes"), ("No", "No")]:
        model = ScriptedModel(
            [
                action("search", query="Kestrel Review Harbor Monthly"),
                action("open", ref=3),
                action("open", ref=2),
                action("answer", short=short, answer=f"{short}, see [2][3].", cite=[2, 3]),
            ]
        )
        sink = ListSink()
        agent = ResearchAgent(
            model, CachedSearch(MemorySearch(pages)), stream=EventStream([sink]), run_id="r", max_steps=6
        )
        result = await agent.run(BOTH)
        assert result.short_answer == expected
        assert not [
            e for e in sink.of("AnswerEdited") for edit in e.edits if edit["kind"] == "yes_not_grounded"
        ]


async def test_a_short_answer_that_copies_the_instructions_is_sent_back_then_dropped() -> None:
    # seen on MuSiQue: "The county shares the most words with the question." copies the hint shown
    # after a search ("[2] shares the most words with the question"), and on HotpotQA "The question asks
    # how to do something and a document you read shows code" copies the system prompt
    hint = "The film shares the most words with the question."
    rules = "The question asks how to do something and a document you read shows code"
    agent, model, sink = run_agent(
        [
            action("search", query="Quiet Field"),
            action("answer", short=hint, answer="Mara Lind directed it.", cite=[]),
            action("open", ref=1),
            action("answer", short=rules, answer="Mara Lind directed it [1].", cite=[1]),
            action("answer", short=rules, answer="Mara Lind directed it [1].", cite=[1]),
        ],
        max_steps=6,
    )
    result = await agent.run(QUESTION)
    assert "shares the most words with the question" in model.calls[1].messages[-1].content  # the hint
    assert [e.reason for e in sink.of("AnswerRejected")] == ["nothing_read", "copied"]
    assert 'your instructions ("the question asks how to do something and a document you read shows")' in (
        model.calls[4].messages[-1].content
    )
    # asked again, it copied again: the short answer is left out, and the trace says so
    assert result.short_answer == "" and result.answer == "Mara Lind directed it [1]."
    [edited] = sink.of("AnswerEdited")
    assert [edit["kind"] for edit in edited.edits] == ["short_answer_dropped"]
    assert "copies the instructions" in edited.edits[0]["detail"]


async def test_which_of_the_candidates_came_first_is_decided_by_the_years_their_pages_open_with() -> None:
    question = "Which film was released first, The Quiet Field or Harbour Lights?"
    agent, _, sink = run_agent(
        [
            action("search", query="Quiet Field Harbour Lights"),  # [1] The Quiet Field, [2] Harbour Lights
            action("open", ref=1),
            action("open", ref=2),
            # a small model names the page it read last
            action("answer", short="Harbour Lights", answer="Harbour Lights came first [2].", cite=[2]),
        ]
    )
    result = await agent.run(question)
    assert result.short_answer == "The Quiet Field"
    assert result.answer == "The Quiet Field\n\nThe Quiet Field: 1998 [1]. Harbour Lights: 2001 [2]."
    assert [c.id for c in result.citations] == ["field#1", "harbour#1"]
    [edited] = sink.of("AnswerEdited")
    assert edited.edits[0]["kind"] == "choice_dated"
    assert edited.edits[0]["detail"] == (
        '"Harbour Lights" became "The Quiet Field": the earliest of The Quiet Field 1998, Harbour Lights 2001'
    )

    # the latest, when the question asks for it; and nothing decided without both pages read
    agent, _, sink = run_agent(
        [
            action("search", query="Quiet Field Harbour Lights"),
            action("open", ref=1),
            action("open", ref=2),
            action("answer", short="Harbour Lights", answer="Harbour Lights [2].", cite=[2]),
        ]
    )
    result = await agent.run("Which film was released more recently, The Quiet Field or Harbour Lights?")
    assert result.short_answer == "Harbour Lights"
    assert result.answer == "Harbour Lights [1]."
    assert not sink.of("AnswerEdited") or all(
        e["kind"] != "choice_dated" for e in sink.of("AnswerEdited")[0].edits
    )
    agent, _, _ = run_agent(
        [
            action("search", query="Quiet Field Harbour Lights"),
            action("open", ref=2),
            action("answer", short="Harbour Lights", answer="Harbour Lights [2].", cite=[2]),
        ]
    )
    result = await agent.run(question)
    assert result.short_answer == "Harbour Lights"


async def test_a_hint_the_agent_copies_into_its_answer_is_dropped_from_it() -> None:
    # seen on HotpotQA-50 r13: the hint after a read ends the 0.5B model's answer, and heavy's answer
    # passed it on to the reader as if it were a finding
    copied = (
        "The question asks about Harbor Monthly too, and you have not read about it yet: open [1] before "
        "you answer."
    )
    agent, model, sink = run_agent(
        [
            action("search", query="Kestrel Review Harbor Monthly"),  # [1] Gull, [2] Harbor, [3] Kestrel
            action("open", ref=3),
            action(
                "answer", short="No", answer=f"Kestrel Review is a literary magazine [3]. {copied}", cite=[3]
            ),
        ],
        max_steps=6,
        pages=MAGAZINES,
    )
    result = await agent.run(BOTH)
    assert "asks about Harbor Monthly too" in model.calls[2].messages[-1].content  # what it was told
    assert result.answer == "No\n\nKestrel Review is a literary magazine [1]."
    [edited] = sink.of("AnswerEdited")
    [cut] = [edit for edit in edited.edits if edit["kind"] == "instructions_cut"]
    assert "you have not read about it yet" in str(cut["detail"])
