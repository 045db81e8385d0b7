"""Merging agents' answers: short answers and the vote over them, and list items with their evidence."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from openheavy.agent import ANSWERED, AgentResult
from openheavy.aggregation import (
    Candidate,
    is_choice,
    lead_sentence,
    merge_list_items,
    shared_words,
    short_answer,
    vote_on_answers,
)
from openheavy.answer_text import lead_with
from openheavy.citations import Citation, RunSources, Source
from openheavy.tools.sources import SourceBook
from openheavy.types import Document, Usage


def doc(doc_id: str, title: str = "") -> Document:
    return Document(f"{doc_id}#1", doc_id, title or doc_id, f"file:{doc_id}", "text")


def result(
    agent: str, answer: str, documents: Sequence[Document] = (), error: str | None = None
) -> AgentResult:
    """An agent's result that opened `documents` (refs 1..k) and cited them all."""
    book = SourceBook()
    for ref, document in enumerate(documents, start=1):
        book.mark_opened(ref, document)
    citations = [Citation(ref, Source(ref, d, (agent,))) for ref, d in enumerate(documents, start=1)]
    if error:
        return AgentResult.failure(agent, "task", 1, Usage(), book, error)
    return AgentResult(agent, "task", answer, citations, ANSWERED, 3, Usage(), book)


def gathered(*results: AgentResult) -> RunSources:
    return RunSources.gather((r.agent, r.sources.opened.values()) for r in results)


def test_lead_sentence() -> None:
    assert lead_sentence("J. G. Farrell [1]. He wrote it in 1973.") == "J. G. Farrell"
    # a bracketed initial ends nothing: "(b. 20 April 1952)" cut at "(b" left the answer no name
    born = "Andrew Jaspan, (b. 20 April 1952) British-Australian journalist [1]. He co-founded it."
    assert lead_sentence(born) == "Andrew Jaspan, (b. 20 April 1952) British-Australian journalist"
    assert lead_sentence("Yes, both have three acts [2].") == "Yes"
    assert lead_sentence("No.") == "No"
    assert lead_sentence("- **1,000 metres** [1]\nmore") == "1,000 metres"
    assert lead_sentence("Use it, e.g. like this. Then more.") == "Use it, e.g. like this"
    assert lead_sentence("") == ""


def test_short_answer_prefers_the_agents_short_field() -> None:
    plain = result("agent-1", "Louis Aragon. He was a poet [1].")
    assert short_answer(plain) == "Louis Aragon"

    given = replace(
        result("agent-1", "The Siege of Krishnapur is by J. G. Farrell [1]."),
        short_answer="J. G. Farrell [1]",
    )
    assert short_answer(given) == "J. G. Farrell"


def test_lead_with() -> None:
    assert lead_with("J. G. Farrell", "J. G. Farrell wrote it [1].")[0] == "J. G. Farrell wrote it [1]."
    assert lead_with("yes", "Yes, both do [1].")[0] == "Yes, both do [1]."
    assert lead_with("3", "Both operas have three acts [1].")[0] == "3\n\nBoth operas have three acts [1]."
    assert lead_with("", "answer")[0] == "answer"


def test_the_vote_needs_a_true_majority() -> None:
    results = [
        result("agent-1", "J. G. Farrell [1]."),
        result("agent-2", "j. g. farrell"),  # normalized: the same answer
        result("agent-3", "Louis Aragon, surely, after a long and careful reading of everything [1]."),
        result("agent-4", "", error="boom"),
    ]
    vote = vote_on_answers(results)
    assert vote.winner is not None and vote.winner.answer == "J. G. Farrell"
    assert vote.winner.agents == ("agent-1", "agent-2")
    assert vote.to_record()[1] == {
        "answer": "Louis Aragon, surely, after a long and careful reading of everything",
        "agents": ["agent-3"],
    }
    tie = vote_on_answers(results[:1] + results[2:3])
    assert tie.winner is None and len(tie.candidates) == 2  # 1-1: the synthesizer decides
    assert vote_on_answers([results[0]]).winner is not None  # one answer is the answer


def test_words_most_answers_share_that_the_question_lacks_are_what_they_agree_on() -> None:
    question = "Andrew Jaspan was the co-founder of what not-for-profit media outlet?"
    answers = [
        "Andrew Jaspan was the co-founder of The Conversation",
        "The Conversation is an independent, not-for-profit media outlet",
        "The Editor-in-Chief is the co-founder of State media",
        "The Conversation is an independent",
    ]
    # "Andrew Jaspan", "co-founder" and "media outlet" are the question's own words; "The" is kept
    assert shared_words(answers, question) == ("The Conversation", (0, 1, 3))
    assert shared_words(answers[1:3], question) is None  # one answer of two is no majority
    assert shared_words([*answers[:2], "EvidenceNetwork.ca", "State media"], question) is None  # 2 of 4
    # two rival names, each held by as many answers: nothing is decided
    rivals = ["Louis Aragon wrote it", "J. G. Farrell wrote it", "Farrell or Aragon"]
    assert shared_words(rivals, "Who wrote The Siege of Krishnapur?") is None
    restated = ["Andrew Jaspan founded it", "Andrew Jaspan, a journalist", "It was Andrew Jaspan's"]
    assert shared_words(restated, question) is None  # the question's subject is no answer


def test_the_vote_falls_back_to_shared_words_only_when_no_answer_wins() -> None:
    results = [
        result("agent-1", "J. G. Farrell wrote it [1]."),
        result("agent-2", "The novelist was J. G. Farrell [1]."),
        result("agent-3", "Louis Aragon [1]."),
    ]
    question = "Who wrote The Siege of Krishnapur?"
    assert vote_on_answers(results).winner is None  # without the question: a three-way split
    vote = vote_on_answers(results, question)
    assert vote.shared and vote.winner == Candidate("J. G. Farrell", ("agent-1", "agent-2"))
    assert len(vote.candidates) == 3
    same = vote_on_answers([results[0], replace(results[0], agent="agent-4"), results[2]], question)
    assert not same.shared and same.winner is not None and same.winner.agents == ("agent-1", "agent-4")


def test_answers_that_cite_nothing_do_not_outvote_one_that_read_a_source() -> None:
    results = [
        result("agent-1", "I could not find it."),
        result("agent-2", "I could not find it."),
        result("agent-3", "Louis Aragon [1].", [doc("aragon")]),
    ]
    vote = vote_on_answers(results)
    assert vote.winner is not None and vote.winner.answer == "Louis Aragon" and vote.voters == 1
    unread = vote_on_answers(results[:2])  # no one read anything: every answer votes
    assert unread.winner is not None and unread.winner.agents == ("agent-1", "agent-2")


def test_list_items_are_a_union_with_evidence_and_duplicates_merged() -> None:
    a, b, c, d = doc("pep-1", "PEP 1 – Purpose"), doc("pep-8", "PEP 8 – Style"), doc("pep-20"), doc("pep-257")
    one = result("agent-1", "- PEP 1 [1]\n- PEP 8 – Style Guide [2]\n- a note without evidence", [a, b])
    two = result("agent-2", "PEP 8 [1], PEP 20 [2] and PEP 1 again [3]", [b, c, a])
    three = result("agent-3", "Style guide for code [1].", [b, d])  # d cited, with no item text
    sources = gathered(one, two, three)
    items, duplicates = merge_list_items([one, two, three], sources)
    assert [(i.text, i.sources, i.agents) for i in items] == [
        ("PEP 1", (1,), ("agent-1", "agent-2")),  # "PEP 1 again" holds "PEP 1"
        ("PEP 8 – Style Guide", (2,), ("agent-1", "agent-2", "agent-3")),  # the same document, alone
        ("PEP 20", (3,), ("agent-2",)),
        ("pep-257", (4,), ("agent-3",)),  # a cited document with no item: its title
    ]
    assert duplicates == 3
    assert items[1].to_record(sources) == {
        "text": "PEP 8 – Style Guide",
        "documents": ["pep-8#1"],
        "agents": ["agent-1", "agent-2", "agent-3"],
    }


def test_two_items_on_one_document_from_one_agent_stay_two() -> None:
    page = doc("subprocess")
    one = result("agent-1", "- subprocess.run [1]\n- subprocess.check_output [1]", [page])
    two = result("agent-2", "Popen [1]", [page])
    items, _ = merge_list_items([one, two], gathered(one, two))
    assert [i.text for i in items] == ["subprocess.run", "subprocess.check_output", "Popen"]


def test_a_list_of_the_questions_own_candidates_is_a_choice() -> None:
    farrell, aragon = doc("farrell", "J. G. Farrell"), doc("aragon", "Louis Aragon")
    one = result("agent-1", "J. G. Farrell wrote it [1].", [farrell])
    two = result("agent-2", "Louis Aragon did not [1].", [aragon])
    items, _ = merge_list_items([one, two], gathered(one, two))
    assert is_choice(items, ["J. G. Farrell", "Louis Aragon"])
    peps = result("agent-1", "PEP 8 by Guido [1]", [doc("pep-8")])
    pep_items, _ = merge_list_items([peps], gathered(peps))
    assert not is_choice(pep_items, ["Guido", "Barry"])
    assert not is_choice(items, [])
