"""Wide search: the model states a list request's conditions once, code checks them against the question,
then checks every document the agents came across, and those of a deep search, by its opening passage.
The list is the documents that meet them, each cited to the passage its check read."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from fakes import ListSink, MemorySearch, action, plan_reply
from openheavy.agent import AgentResult
from openheavy.citations import Citation, Source
from openheavy.display.formatting import describe_merge
from openheavy.heavy import Orchestrator
from openheavy.item_check import (
    Conditions,
    as_asked,
    check_list,
    checked_conditions,
    gather_leads,
    meets,
    relaxed,
)
from openheavy.models.scripted import FunctionModel
from openheavy.planning import decide_shape
from openheavy.search.cache import CachedSearch
from openheavy.tools.sources import SourceBook
from openheavy.types import Document, EventStream, Hit, ListMerged, Message, Usage

QUESTION = "List every PEP Jane Doe wrote from 2016 to 2020, with links."
PEPS = {
    "pep-0101#0": ("PEP 101 – Widgets", "PEP: 101\nAuthor: Jane Doe\nCreated: 2017\nStatus: Final"),
    "pep-0101#2": ("PEP 101 – Widgets › Discussion", "Jane Doe answered every question about widgets."),
    "pep-0102#0": ("PEP 102 – Gadgets", "PEP: 102\nAuthor: Jane Doe, Max Roe\nCreated: 2018"),
    # only mentions Jane Doe, further in: its opening passage names another author
    "pep-0103#0": ("PEP 103 – Gizmos", "PEP: 103\nAuthor: John Roe\nCreated: 2018"),
    "pep-0103#1": ("PEP 103 – Gizmos › Rationale", "Builds on the widgets of Jane Doe."),
    "pep-0104#0": ("PEP 104 – Doodads", "PEP: 104\nAuthor: Jane Doe\nCreated: 2005\nStatus: Final"),
    # Jane Doe's too, found only by the deep search: no agent's search reaches it
    "pep-0105#0": ("PEP 105 – Thingamajigs", "PEP: 105\nAuthor: Jane Doe\nCreated: 2019"),
}
CONDITIONS = {"must_mention": ["Jane Doe"], "low": 2016, "high": 2020}


def team(conditions: Any = CONDITIONS, asked: list[str] | None = None) -> Any:
    """A planner that calls the question long (as the 0.5B planner did); an agent that searches
    "widgets", opens PEP 103's rationale and lists PEP 103; another that finds nothing; and the
    checker's statement of the conditions (`conditions`; an exception fails the call)."""

    def respond(messages: Sequence[Message], schema: dict[str, Any] | None) -> str:
        system = messages[0].content
        if "planner" in system:
            plan = plan_reply(["her PEPs", "her other PEPs"], shape="long", queries=[["widgets"], ["gizmos"]])
            return json.dumps(plan)
        if "A program will test every document" in system:
            if asked is not None:
                asked.append(messages[1].content)
            if isinstance(conditions, Exception):
                raise conditions
            return json.dumps(conditions)
        assert "lead researcher" not in system, "a list is merged in code, not synthesized"
        turns = sum(m.role == "assistant" for m in messages)
        first = '"widgets"' in messages[1].content  # the first agent's brief gives it this query
        if not first:
            return (
                action("answer", answer="No PEP found.", cite=[]) if turns else action("search", query="zzz")
            )
        if turns == 0:
            return action("search", query="widgets")
        # results for "widgets": pep-0101#0, pep-0101#2, pep-0103#1 (MemorySearch's order)
        if turns == 1:
            return action("open", ref=3)
        return action("answer", answer="- PEP 103 [3]", cite=[3])

    return respond


def orchestrator(model: FunctionModel, **kwargs: Any) -> tuple[Orchestrator, ListSink, MemorySearch]:
    sink = ListSink()
    backend = MemorySearch(dict(PEPS))
    heavy = Orchestrator(
        model,
        CachedSearch(backend),
        stream=EventStream([sink]),
        run_id="r",
        agents=2,
        **{"opening_search": False, **kwargs},  # the opening search has its own tests
    )
    return heavy, sink, backend


async def test_a_list_is_the_documents_that_meet_the_conditions_each_cited_to_what_its_check_read() -> None:
    asked: list[str] = []
    heavy, sink, backend = orchestrator(FunctionModel(team(asked=asked)))
    result = await heavy.run(QUESTION)
    # the planner said "long"; a request for every item of a kind is a list
    assert result.plan.shape == "list"
    assert result.answer == (
        "Items found (3):\n- PEP 101 – Widgets [1]\n- PEP 102 – Gadgets [2]\n- PEP 105 – Thingamajigs [3]"
    )
    assert [(c.id, c.source.read_by) for c in result.citations] == [
        ("pep-0101#0", ("checker",)),
        ("pep-0102#0", ("checker",)),
        ("pep-0105#0", ("checker",)),
    ]
    assert asked == [f"Request: {QUESTION}"]
    [merged] = sink.of("ListMerged")
    assert merged.conditions == {"names": ["Jane Doe"], "low": 2016, "high": 2020, "problems": []}
    # the deep search for the conditions' names found what no agent reached
    assert merged.sweeps == ["Jane Doe"] and "Jane Doe" in backend.searches
    verdicts = {c["document"]: (c["belongs"], c["facts"]) for c in merged.checks}
    assert verdicts == {
        "pep-0103#0": (False, "no 'Jane Doe'"),  # the agent cited it: checked first
        "pep-0101#0": (True, "Jane Doe; 2017"),
        "pep-0102#0": (True, "Jane Doe; 2018"),
        "pep-0104#0": (False, "no number from 2016 to 2020"),
        "pep-0105#0": (True, "Jane Doe; 2019"),
    }
    assert next(iter(verdicts)) == "pep-0103#0"
    # the agent's item resting only on a document that does not meet them is dropped, and said so
    assert merged.dropped == ["PEP 103"]
    [call] = [e for e in sink.of("ModelCalled") if e.agent == "checker"]
    assert call.purpose == "list_conditions"


async def test_a_condition_no_document_meets_is_dropped_not_the_whole_list() -> None:
    conditions = {"must_mention": ["Jane Doe", "year"], "low": 2016, "high": 2020}
    heavy, sink, _ = orchestrator(FunctionModel(team(conditions)))
    result = await heavy.run(QUESTION.replace("with links", "with links, by year"))
    assert result.answer.startswith("Items found (3):")
    [merged] = sink.of("ListMerged")
    assert merged.conditions["names"] == ["Jane Doe"]
    assert merged.conditions["problems"] == ["no document found meets 'year' with the rest: dropped"]


async def test_without_usable_conditions_nothing_is_checked_and_the_agents_items_stand() -> None:
    heavy, sink, _ = orchestrator(FunctionModel(team(RuntimeError("checker exploded"))))
    # no name spelled with capitals, and the checker failed: nothing to check against
    result = await heavy.run("list every pep jane doe wrote, with links.")
    assert result.answer == "Items found (1):\n- PEP 103 [1]"
    [merged] = sink.of("ListMerged")
    assert merged.checks == [] and "checker exploded" in merged.conditions["problems"][0]


async def test_the_names_the_request_spells_with_capitals_are_conditions_the_model_left_out() -> None:
    # the checker failed, yet the request names Jane Doe: her PEPs are checked for (without the range,
    # which only the model states)
    heavy, sink, _ = orchestrator(FunctionModel(team(RuntimeError("checker exploded"))))
    result = await heavy.run(QUESTION)
    [merged] = sink.of("ListMerged")
    assert merged.conditions["names"] == ["PEP Jane Doe"] and merged.conditions["low"] is None
    problems = merged.conditions["problems"]
    assert "no name the model stated stands: the names the request spells with capitals stand in" in problems
    assert "name 'PEP Jane Doe' added: the request spells it with capitals" in problems
    verdicts = {c["document"]: c["belongs"] for c in merged.checks}
    assert verdicts == {f"pep-010{n}#0": n != 3 for n in range(1, 6)}  # PEP 103 is John Roe's
    assert "PEP 103" not in result.answer and "PEP 104" in result.answer


async def test_the_bound_on_documents_checks_the_strongest_leads_and_counts_the_rest() -> None:
    heavy, sink, _ = orchestrator(FunctionModel(team()), max_list_documents=2)
    await heavy.run(QUESTION)
    [merged] = sink.of("ListMerged")
    assert [c["document"] for c in merged.checks] == ["pep-0103#0", "pep-0101#0"] and merged.unchecked == 3


async def test_on_a_backend_other_than_a_local_index_at_most_24_documents_are_opened() -> None:
    # web backends fetch a page for each document opened: the bound is far lower than on a local index
    many = {
        f"pep-{n:04d}#0": (f"PEP {n} – Part {n}", f"PEP: {n}\nAuthor: Jane Doe\nCreated: 2017")
        for n in range(40)
    }
    backend = MemorySearch({**PEPS, **many})
    sink = ListSink()
    heavy = Orchestrator(
        FunctionModel(team()),
        CachedSearch(backend),
        stream=EventStream([sink]),
        run_id="r",
        agents=2,
        opening_search=False,
    )
    await heavy.run(QUESTION)
    [merged] = sink.of("ListMerged")
    assert len(merged.checks) == 24 and merged.unchecked == 45 - 24  # 5 documents and 40 more


def test_stated_conditions_are_checked_against_the_question() -> None:
    # a copied example's name and a range the question does not state are dropped
    conditions = checked_conditions(QUESTION, ["Ann Smith", "Jane Doe", "PEPs", "PEP"], 1990, 1995)
    assert conditions.names == ("Jane Doe", "PEP")  # as the question spells it, once
    assert conditions.low is None and conditions.high is None
    assert conditions.problems == (
        "condition 'Ann Smith' is not in the request: dropped",
        "range 1990 to 1995 is not one the request states: dropped",
    )
    assert checked_conditions(QUESTION, [], 2020, 2016).low is None  # reversed
    assert not checked_conditions(QUESTION, [], 0, 0).usable


def test_a_name_is_spelled_as_the_request_spells_it() -> None:
    question = "Make a complete map of the PEPs that Łukasz Langa authored from 2013 to 2016."
    assert as_asked("Lukasz Langa", question) == "Łukasz Langa"
    assert as_asked("peps", question) == "PEPs"
    assert as_asked("Lukas Lange", question) is None  # two words off: another name
    assert as_asked("Packing", "List every PEP in the Packaging topic.") == "Packaging"  # 2 in 9 letters
    assert as_asked("Parking", "List every PEP in the Packaging topic.") is None
    assert as_asked("Ann Smith", question) is None


def test_conditions_the_documents_show_to_be_mistakes_are_dropped_and_said_so() -> None:
    heads = [
        Document(
            f"pep-{n}#0", f"pep-{n}", f"PEP {n} – Widgets", "", f"Author: Jane Doe\nCreated: 201{n % 10}"
        )
        for n in range(10)
    ]
    heads += [Document("pep-20#0", "pep-20", "PEP 20 – Gadgets", "", "Author: Max Roe\nCreated: 2012")]
    # "PEP" is in every title: it names the kind of item; "Created date": documents say "Created:"
    stated = Conditions(("PEP", "Jane Doe", "Created date"), 2012, 2014)
    conditions = relaxed(stated, heads)
    assert (conditions.names, conditions.low, conditions.high) == (("Jane Doe",), 2012, 2014)
    assert conditions.problems == (
        "'PEP' is in nearly every title found: it names the kind of item, dropped",
        "no document found meets 'Created date' with the rest: dropped",
    )
    assert sum(meets(conditions, head.text)[0] for head in heads) == 3
    # a name in nearly every document, not in their titles, is a condition
    assert relaxed(Conditions(("Jane Doe",)), heads) == Conditions(("Jane Doe",))


async def test_a_name_with_the_kind_of_item_in_it_is_checked_and_searched_again_without_it() -> None:
    # "Informational PEP": "PEP" is in every title, so the name is checked as "Informational", and the
    # search for "Informational PEP" (which matches every PEP) is run again as "Informational"
    passages = {
        f"pep-{n:04d}#0": (f"PEP {n} – Topic {n}", f"PEP: {n}\nType: Process\nCreated: 2012")
        for n in range(12)
    }
    passages["pep-0394#0"] = ("PEP 394 – The python command", "PEP: 394\nType: Informational\nCreated: 2011")
    passages["pep-0394#1"] = ("PEP 394 – The python command › Notes", "Informational notes on PEPs.")
    backend = MemorySearch(passages)
    question = "List all Informational PEP documents created between 2010 and 2014."
    reply = json.dumps({"must_mention": ["Informational PEP"], "low": 2010, "high": 2014})
    model = FunctionModel(lambda messages, schema: reply)
    checked = await check_list(model, CachedSearch(backend), question, [], depth=20)
    assert checked.conditions.names == ("Informational",)
    assert checked.conditions.problems == (
        "'Informational PEP' is checked as 'Informational': the rest names the kind of item",
    )
    assert checked.queries == ("Informational PEP", "Informational")
    assert [c.document.id for c in checked.accepted if c.document] == ["pep-0394#0"]


def test_meets_reads_names_by_their_words_and_numbers_in_range() -> None:
    conditions = Conditions(("Informational PEPs",), 2010, 2014)
    assert meets(conditions, "PEP: 394\nType: Informational\nCreated: 02-Mar-2011") == (
        True,
        "Informational PEPs; 2011",
    )
    assert meets(conditions, "PEP: 8\nType: Process\nCreated: 2011") == (False, "no 'Informational PEPs'")
    assert meets(conditions, "PEP: 9\nType: Informational\nCreated: 2001")[0] is False


def book(hits: list[Hit], opened: Sequence[str] = ()) -> SourceBook:
    sources = SourceBook()
    refs = sources.register(hits)
    for ref, hit in zip(refs, hits, strict=True):
        if hit.id in opened:
            sources.mark_opened(ref, Document(hit.id, hit.doc_id, hit.title, hit.url, hit.snippet))
    return sources


def hit(pid: str, snippet: str = "", title: str = "") -> Hit:
    return Hit(pid, pid.split("#")[0], title or pid, "", snippet, 1.0)


def result(agent: str, sources: SourceBook, cited: Sequence[str] = ()) -> AgentResult:
    documents = {d.id: d for d in sources.opened.values()}
    citations = [Citation(n, Source(n, documents[pid], (agent,))) for n, pid in enumerate(cited, 1)]
    return AgentResult(agent, "task", "answer", citations, "answered", 1, Usage(), sources)


def test_leads_rank_cited_then_opened_then_seen_by_more_agents_then_question_words() -> None:
    question = "Which gadgets did Jane Doe design?"
    one = book(
        [hit("a#1"), hit("b#1", "gadgets by Jane Doe"), hit("c#1"), hit("d#1"), hit("e#3")],
        opened=["c#1", "d#1"],
    )
    two = book([hit("e#1"), hit("a#2"), hit("f#1", title="Jane Doe gadgets")])
    leads = gather_leads([result("agent-1", one, cited=["d#1"]), result("agent-2", two)], question)
    assert [lead.doc_id for lead in leads] == ["d", "c", "a", "e", "f", "b"]
    assert leads[2].agents == ("agent-1", "agent-2") and leads[0].cited and leads[1].opened


def test_a_request_for_every_item_is_a_list_whatever_the_planner_said() -> None:
    for question in (
        "Make a complete map of the PEPs that Jane Doe authored, listing each with its link.",
        "List all Informational PEPs created between 2010 and 2014.",
        "Name every river that flows through Vienna.",
    ):
        assert decide_shape(question, "long")[0] == "list", question
        assert decide_shape(question, "short")[0] == "list", question
    # not requests for every item: a yes/no question, a how question, one thing
    assert decide_shape("Is there a complete list of builtins?", "long")[0] == "short"
    assert decide_shape("How do I get a full list of installed packages?", "long")[0] == "long"
    assert decide_shape("Which river flows through Vienna?", "short")[0] == "short"


def test_the_live_view_says_what_the_checks_decided() -> None:
    event = ListMerged(
        run_id="r",
        items=[{"text": "PEP 101", "documents": ["pep-0101#0"], "agents": ["agent-1"]}],
        duplicates=0,
        conditions={"names": ["Jane Doe"], "low": 2016, "high": 2020, "problems": []},
        checks=[{"belongs": True}, {"belongs": False}, {"belongs": None}],
        dropped=["PEP 103"],
        unchecked=2,
    )
    assert describe_merge(event) == (
        "1 item (0 found by more than one agent); must contain 'Jane Doe', a number from 2016 to 2020: "
        "3 documents checked, 1 meet it, 1 do not, 3 unchecked; 1 item dropped"
    )
