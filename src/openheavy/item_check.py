"""Wide search: a list answer made of the documents that meet the request's conditions, found by a deep
search and checked in code, one document at a time.

A list made of what small agents write misses most items and keeps wrong ones: an agent opens four pages,
lists one of them, and cites pages that do not fit. And a small model asked of each document "does this
one belong?" says yes to nearly all (the 0.5B model accepted 12 of 12 PEPs for "the PEPs Barry Warsaw
wrote from 2000 to 2003", two of them his). So the model is asked one thing it does well, once per run:
to state the request's conditions (`Conditions`: the names or terms every item's document must contain,
and a range its number or year must fall in), which code checks against the question (a name the
request does not contain, or a bound it does not state, is dropped). Then code does the rest:

- the leads are every document the agents came across (search results and pages opened, the strongest
  first), then the documents of a deep search for the conditions' names (`sweep`): results page by page
  that no agent had the steps to read;
- each lead's opening passage (where a page's title, authors, dates, status and kind stand) is read and
  checked (`meets`): it must contain every name, and a number in the range;
- a condition the documents show to be a mistake is dropped, and said so (`relaxed`): a name in nearly
  every title ("PEP") names the kind of item, not a condition on it; and while no document meets them
  all, the condition whose loss lets the most documents meet the rest goes ("Year" for "grouped by the
  year").

The list is every document that meets the conditions, each cited to the passage its check read. When
the model states no usable condition, nothing is checked and the agents' own items stand.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import BaseModel, Field

from openheavy.agent import AgentResult
from openheavy.errors import OpenHeavyError
from openheavy.json_output import first_json_object
from openheavy.models.base import ChatModel
from openheavy.prompts import render_prompt
from openheavy.question_forms import proper_names
from openheavy.search.cache import CachedSearch
from openheavy.search.terms import query_words, singular
from openheavy.types import Document, Hit, JsonSchema, Message, Usage

__all__ = [
    "HEAD_CHARS",
    "MAX_DOCUMENTS",
    "SWEEP_DEPTH",
    "Conditions",
    "ItemCheck",
    "Lead",
    "ListCheck",
    "check_list",
    "gather_leads",
    "kind_words",
    "meets",
    "relaxed",
    "state_conditions",
    "with_request_names",
]

SWEEP_DEPTH = 200  # passages of the deep search for the conditions' names
MAX_DOCUMENTS = 200  # documents checked per list question; leads beyond it are counted, not checked
HEAD_CHARS = 1500  # of a document's opening passage that is checked
MAX_NAMES = 4
NAME_MAX_CHARS = 60

CONDITIONS_SCHEMA: JsonSchema = {
    "type": "object",
    "properties": {
        "must_mention": {
            "type": "array",
            "items": {"type": "string", "minLength": 1, "maxLength": NAME_MAX_CHARS},
            "maxItems": MAX_NAMES,
        },
        "low": {"type": "integer"},
        "high": {"type": "integer"},
    },
    "required": ["must_mention", "low", "high"],
    "additionalProperties": False,
}
_NUMBER = re.compile(r"\d+")
_WORD = re.compile(r"\w+")
EVERYWHERE = 0.9  # a name in this share of the titles checked (ten at least) names the kind of item


class _Stated(BaseModel):
    must_mention: list[str] = Field(default_factory=list)
    low: int = 0
    high: int = 0


@dataclass(frozen=True)
class Conditions:
    """What every item's document must contain: each of `names` (by its content words, plurals folded),
    and, when `low` and `high` are set, a number from `low` to `high`. `problems`: what the checks of the
    model's statement dropped, and why."""

    names: tuple[str, ...] = ()
    low: int | None = None
    high: int | None = None
    problems: tuple[str, ...] = ()

    @property
    def usable(self) -> bool:
        return bool(self.names) or self.low is not None

    def replaced(self, name: str, new: str, *, why: str) -> Conditions:
        names = tuple(new if n == name else n for n in self.names)
        return Conditions(names, self.low, self.high, (*self.problems, why))

    def without(self, name: str | None = None, *, range_: bool = False, why: str) -> Conditions:
        names = tuple(n for n in self.names if n != name)
        low, high = (None, None) if range_ else (self.low, self.high)
        return Conditions(names, low, high, (*self.problems, why))

    def to_record(self) -> dict[str, Any]:
        return {
            "names": list(self.names),
            "low": self.low,
            "high": self.high,
            "problems": list(self.problems),
        }


@dataclass(frozen=True)
class Lead:
    """A document to check: the passage it was found by, and which agents came across it (none: the
    sweep found it)."""

    doc_id: str
    passage_id: str  # the passage found, read when the document itself cannot be opened
    title: str
    agents: tuple[str, ...] = ()
    cited: bool = False
    opened: bool = False


@dataclass(frozen=True)
class ItemCheck:
    """The check of one lead: the passage read, whether the document meets the conditions (None when it
    could not be opened), and what in it decided that."""

    lead: Lead
    document: Document | None
    belongs: bool | None
    facts: str = ""
    error: str = ""

    def to_record(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "document": self.document.id if self.document else self.lead.passage_id,
            "title": self.document.title if self.document else self.lead.title,
            "agents": list(self.lead.agents),
            "belongs": self.belongs,
            "facts": self.facts,
        }
        if self.error:
            record["error"] = self.error
        return record


@dataclass(frozen=True)
class ListCheck:
    """The checks of one list question: the conditions, the sweeps' queries, each lead's check, how many
    leads the bound left unchecked, and what the conditions call cost."""

    conditions: Conditions
    queries: tuple[str, ...] = ()
    checks: list[ItemCheck] = field(default_factory=list)
    unchecked: int = 0
    usage: Usage = field(default_factory=Usage)

    @property
    def accepted(self) -> list[ItemCheck]:
        return [c for c in self.checks if c.belongs and c.document is not None]


# ---------------------------------------------------------------- the conditions


async def state_conditions(
    model: ChatModel, question: str, *, temperature: float | None = 0.0, seed: int = 0
) -> tuple[Conditions, Usage]:
    """The request's conditions as the model states them, checked: a name must be words of the question
    (a small model copies the prompt's example), and a range's bounds must be numbers the question
    states. A failed call or unusable reply gives no conditions, with the reason."""
    messages = [
        Message("system", render_prompt("list_conditions_system").strip()),
        Message("user", render_prompt("list_conditions_user", question=question).strip()),
    ]
    try:
        completion = await model.complete(
            messages, json_schema=CONDITIONS_SCHEMA, temperature=temperature, seed=seed
        )
        stated = _Stated.model_validate(first_json_object(completion.text))
    except Exception as exc:  # no conditions: the agents' items stand, and the trace says why
        return Conditions(problems=(f"no conditions: {type(exc).__name__}: {exc}",)), Usage()
    return checked_conditions(question, stated.must_mention, stated.low, stated.high), completion.usage


def with_request_names(conditions: Conditions, question: str) -> Conditions:
    """`conditions` with the names the request spells with capitals (`question_forms.proper_names`)
    that it lacks. A small model's statement misses them: for "List every PEP in the Packaging topic
    whose status is Deferred" the 0.5B model stated "PEP" alone in four of six samples (the kind of
    item, which the checks drop). A name that holds another's words, or lies inside one, is the same
    condition and is not added."""
    names = list(conditions.names)
    added: list[str] = []
    for name in proper_names(question):
        words = query_words(name)
        if not words or any(words <= query_words(n) or query_words(n) <= words for n in names):
            continue
        names.append(name)
        added.append(f"name {name!r} added: the request spells it with capitals")
    return Conditions(tuple(names), conditions.low, conditions.high, (*conditions.problems, *added))


def checked_conditions(question: str, names: Sequence[str], low: int, high: int) -> Conditions:
    """The stated conditions that the question bears out (see `state_conditions`), each name spelled as
    the question spells it."""
    kept: list[str] = []
    problems: list[str] = []
    for raw in names:
        name = " ".join(raw.split())[:NAME_MAX_CHARS]
        if not query_words(name):
            continue
        asked = as_asked(name, question)
        if asked is None:
            problems.append(f"condition {name!r} is not in the request: dropped")
        elif not any(query_words(other) == query_words(asked) for other in kept):
            kept.append(asked)
    stated = {int(n) for n in _NUMBER.findall(question)}
    bounds: tuple[int | None, int | None] = (None, None)
    if low or high:
        if low in stated and high in stated and low <= high:
            bounds = (low, high)
        else:
            problems.append(f"range {low} to {high} is not one the request states: dropped")
    return Conditions(tuple(kept), *bounds, problems=tuple(problems))


def as_asked(name: str, question: str) -> str | None:
    """`name` with each word spelled as the question spells it, or None when a word is not the
    question's. A word of five letters or more may be a letter in four off (one at least): a small
    model writes "Lukasz" for the request's "Łukasz" and "Packing" for "Packaging", and documents spell
    a name as the request does."""
    asked = {_folded(word): word for word in _WORD.findall(question)}
    words: list[str] = []
    for word in _WORD.findall(name):
        key = _folded(word)
        if key in asked:
            words.append(asked[key])
            continue
        close = [w for k, w in asked.items() if len(key) >= 5 and _edits(key, k) <= max(1, len(k) // 4)]
        if len(close) != 1:
            return None
        words.append(close[0])
    return " ".join(words) or None


def _folded(word: str) -> str:
    """A word's comparison key: case-folded, a plural "s" away ("PEPs" is the question's "PEP")."""
    return singular(word.casefold())


def _edits(a: str, b: str) -> int:
    """The number of letters inserted, deleted or replaced to turn `a` into `b` (Levenshtein)."""
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, start=1):
        previous, row[0] = row[0], i
        for j, y in enumerate(b, start=1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (x != y))
    return row[-1]


def meets(conditions: Conditions, text: str) -> tuple[bool, str]:
    """Whether `text` (a document's opening passage) meets the conditions, and what decided it: the
    names found and the first number in range, or the first condition missed."""
    head = text[:HEAD_CHARS]
    words = query_words(head)
    for name in conditions.names:
        if not query_words(name) <= words:
            return False, f"no {name!r}"
    found = list(conditions.names)
    if conditions.low is not None and conditions.high is not None:
        number = next((n for n in _NUMBER.findall(head) if conditions.low <= int(n) <= conditions.high), None)
        if number is None:
            return False, f"no number from {conditions.low} to {conditions.high}"
        found.append(number)
    return True, "; ".join(found)


# ---------------------------------------------------------------- the leads


@dataclass
class _Seen:
    """What the agents did with one document, gathered over their source books."""

    passage_id: str
    title: str
    agents: list[str] = field(default_factory=list)
    cited: bool = False
    opened: bool = False
    words: int = 0  # question words in its best hit (a title word counts twice)

    def strength(self) -> tuple[int, int, int, int]:
        return (self.cited, self.opened, len(self.agents), self.words)


def gather_leads(results: Sequence[AgentResult], question: str) -> list[Lead]:
    """The documents the agents came across, strongest leads first: cited, then opened, then seen by
    more agents, then sharing more of the question's words, then in the order they were found."""
    asked = query_words(question)
    found: dict[str, _Seen] = {}  # by document id, in order of first finding
    for result in results:
        book = result.sources
        cited = {c.id for c in result.citations}
        for hit in book.seen.values():
            seen = found.setdefault(hit.doc_id, _Seen(hit.id, hit.title))
            if result.agent not in seen.agents:
                seen.agents.append(result.agent)
            words = 2 * len(asked & query_words(hit.title)) + len(asked & query_words(hit.snippet))
            seen.words = max(seen.words, words)
        for document in book.opened.values():
            seen = found.setdefault(document.doc_id, _Seen(document.id, document.title))
            seen.opened = True
            seen.cited = seen.cited or document.id in cited
            if result.agent not in seen.agents:
                seen.agents.append(result.agent)
    # sorted() is stable, also in reverse: among equals, the order of first finding stands
    ranked = sorted(found.items(), key=lambda pair: pair[1].strength(), reverse=True)
    return [
        Lead(doc_id, seen.passage_id, seen.title, tuple(seen.agents), seen.cited, seen.opened)
        for doc_id, seen in ranked
    ]


async def sweep(search: CachedSearch, query: str, depth: int = SWEEP_DEPTH) -> list[Lead]:
    """The documents of the first `depth` results for `query`, in rank order: the pages of results an
    agent would turn until they bring nothing new, turned in code."""
    if not query or depth < 1:
        return []
    hits, _ = await search.search(query, depth)
    first: dict[str, Hit] = {}
    for hit in hits:
        first.setdefault(hit.doc_id, hit)
    return [Lead(hit.doc_id, hit.id, hit.title) for hit in first.values()]


# ---------------------------------------------------------------- the checks


async def check_list(
    model: ChatModel,
    search: CachedSearch,
    question: str,
    results: Sequence[AgentResult],
    *,
    depth: int = SWEEP_DEPTH,
    max_documents: int = MAX_DOCUMENTS,
    temperature: float | None = 0.0,
    seed: int = 0,
) -> ListCheck:
    """State the request's conditions, gather the agents' leads and the sweep's, and check each lead's
    opening passage against the conditions. A condition no lead meets is dropped, and said so. When no
    name of the model's statement stands (it stated only the kind of item, or a name the request does
    not hold), the names the request spells with capitals stand in, and the checks run again with them
    (`with_request_names`)."""
    stated, usage = await state_conditions(model, question, temperature=temperature, seed=seed)
    checked = await _check(search, question, results, stated, depth, max_documents)
    if not checked.conditions.names:
        why = "no name the model stated stands: the names the request spells with capitals stand in"
        bare = Conditions((), stated.low, stated.high, (*checked.conditions.problems, why))
        fallback = with_request_names(bare, question)
        if fallback.names:
            again = await _check(search, question, results, fallback, depth, max_documents)
            checked = replace(again, queries=(*checked.queries, *again.queries))
    return replace(checked, usage=usage)


async def _check(
    search: CachedSearch,
    question: str,
    results: Sequence[AgentResult],
    conditions: Conditions,
    depth: int,
    max_documents: int,
) -> ListCheck:
    """The checks of `conditions`: sweep, gather, relax, and check each lead's opening passage."""
    if not conditions.usable:
        return ListCheck(conditions)
    queries = [" ".join(conditions.names)]
    leads = gather_leads(results, question)
    known = {lead.doc_id for lead in leads}
    found = [lead for lead in await sweep(search, queries[0], depth) if lead.doc_id not in known]
    leads, unchecked = _bounded(leads + found, max_documents, 0)
    heads = list(await asyncio.gather(*(_head(search, lead) for lead in leads)))
    conditions = relaxed(conditions, [head for head in heads if head is not None])
    if not conditions.usable:
        return ListCheck(conditions, tuple(queries))
    # A name the documents corrected ("Informational PEPs" checked as "Informational") is searched
    # again: the first query was diluted by the words that matched nearly everything.
    if conditions.names and " ".join(conditions.names) != queries[0]:
        queries.append(" ".join(conditions.names))
        known = {lead.doc_id for lead in leads}
        more = [lead for lead in await sweep(search, queries[1], depth) if lead.doc_id not in known]
        more, unchecked = _bounded(more, max_documents - len(leads), unchecked)
        leads += more
        heads += await asyncio.gather(*(_head(search, lead) for lead in more))
    checks = []
    for lead, head in zip(leads, heads, strict=True):
        if head is None:
            checks.append(ItemCheck(lead, None, None, error="the document could not be opened"))
            continue
        belongs, facts = meets(conditions, head.text)
        checks.append(ItemCheck(lead, head, belongs, facts))
    return ListCheck(conditions, tuple(queries), checks, unchecked)


def _bounded(leads: list[Lead], room: int, unchecked: int) -> tuple[list[Lead], int]:
    """The first `room` leads, and the count of leads left unchecked with those beyond it."""
    room = max(0, room)
    return leads[:room], unchecked + max(0, len(leads) - room)


def relaxed(conditions: Conditions, documents: Sequence[Document]) -> Conditions:
    """The conditions without those the documents found show to be mistakes, each said so: a name in
    nearly every document's title (the kind of item, "PEP", not a condition on it); then, while no
    document meets them all, the one condition whose loss lets the most documents meet the rest ("Created
    date" for "with a Created date from 2000 to 2003": documents say "Created:")."""
    kind = kind_words(documents)
    for name in conditions.names:
        words = query_words(name)
        if words <= kind:
            why = f"{name!r} is in nearly every title found: it names the kind of item, dropped"
            conditions = conditions.without(name, why=why)
        elif words & kind:
            rest = " ".join(w for w in _WORD.findall(name) if not query_words(w) <= kind)
            why = f"{name!r} is checked as {rest!r}: the rest names the kind of item"
            conditions = conditions.replaced(name, rest, why=why)
    texts = [document.text for document in documents]
    while conditions.usable and not any(meets(conditions, text)[0] for text in texts):
        options = [
            conditions.without(name, why=f"no document found meets {name!r} with the rest: dropped")
            for name in conditions.names
        ]
        if conditions.low is not None:
            span = f"{conditions.low} to {conditions.high}"
            why = f"no document found has a number from {span} with the rest: dropped"
            options.append(conditions.without(range_=True, why=why))
        conditions = max(options, key=lambda option: sum(meets(option, text)[0] for text in texts))
    return conditions


def kind_words(documents: Sequence[Document]) -> frozenset[str]:
    """The words (`query_words`) in nearly every title of `documents` (ten at least): they name the kind
    of document ("PEP"), not one of them."""
    titles = [query_words(document.title) for document in documents]
    if len(titles) < 10:
        return frozenset()
    counts: dict[str, int] = {}
    for words in titles:
        for word in words:
            counts[word] = counts.get(word, 0) + 1
    return frozenset(w for w, n in counts.items() if n >= EVERYWHERE * len(titles))


async def _head(search: CachedSearch, lead: Lead) -> Document | None:
    """The document's opening passage (opening a document id gives its first passage), else the passage
    the lead was found by; None when neither opens."""
    for id in dict.fromkeys((lead.doc_id, lead.passage_id)):
        try:
            document, _ = await search.open(id)
            return document
        except OpenHeavyError:
            continue
    return None
