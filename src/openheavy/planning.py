"""Heavy mode's plan: the shape of the answer, and for each agent a task with its own first queries.

The planner model proposes; code checks, because a small planner writes the same sub-task four times or
copies the question into every query, and then four agents read the same pages:

- every agent gets its own first queries: a query that is a near-duplicate of another agent's (the
  same content words, give or take a plural, or one's words inside the other's), a copy of the
  question's wording, or a query naming something the question does not (the planner's guess) is
  dropped, and an agent left with none gets a seed query: one of the question's names whole with a
  different part of its other words;
- the answer's shape ("short": a name, number, yes/no or choice; "list": every item of a kind; "long":
  an explanation or several parts) decides how the answers are merged. The planner states it; a yes/no
  question (`question_forms.is_yes_no`) is never a list.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field

from openheavy.partition import FACET_MAX_CHARS, VALUE_MAX_CHARS, Partition
from openheavy.question_forms import (
    QUANTITY_WORDS,
    asks_for_a_list,
    asks_for_one_thing,
    is_yes_no,
    proper_names,
)
from openheavy.search.terms import query_terms, query_words, singular
from openheavy.types import JsonSchema

__all__ = [
    "SHAPES",
    "AnswerShape",
    "Assignment",
    "Plan",
    "PlanOutput",
    "conjunct_plan",
    "decide_shape",
    "invents_names",
    "near_duplicate",
    "plan_schema",
    "query_words",
    "seed_queries",
    "spread_queries",
    "word_windows",
]

AnswerShape = Literal["short", "list", "long"]
SHAPES: tuple[AnswerShape, ...] = ("short", "list", "long")
TASK_MAX_CHARS = 240
QUERY_MAX_CHARS = 80
QUERIES_PER_AGENT = 2
MAX_VALUES = 12  # more values than agents are grouped into slices
SIMILAR = 0.75  # Jaccard overlap of content words from which two queries are the same search
COPY_SHARE = 0.8  # a query holding this share of a (long) question's content words copies it


@dataclass(frozen=True)
class Assignment:
    """One agent's share of the work: its task, the queries it starts from and, for a list, its slice."""

    task: str
    queries: tuple[str, ...] = ()
    slice: str = ""
    conjunct: str = ""  # a yes/no question asked of several names: the one name this agent checks

    def to_record(self) -> dict[str, Any]:
        record: dict[str, Any] = {"task": self.task, "queries": list(self.queries)}
        if self.slice:
            record["slice"] = self.slice
        if self.conjunct:
            record["conjunct"] = self.conjunct
        return record


@dataclass(frozen=True)
class Plan:
    """What heavy mode runs: one assignment per agent, and the shape that decides how answers merge.

    `origin`: "model" (the planner decided the agent count), "fixed" (the planner, with a given count),
    "fallback" (the planner's output was unusable). `problems`: what the checks found and fixed."""

    shape: AnswerShape
    assignments: tuple[Assignment, ...]
    origin: str
    partition: Partition | None = None
    problems: tuple[str, ...] = ()

    @property
    def tasks(self) -> list[str]:
        return [a.task for a in self.assignments]

    @property
    def conjuncts(self) -> list[str]:
        """The names a yes/no question asks the same thing of, one agent group each (`conjunct_plan`);
        [] for any other plan."""
        return list(dict.fromkeys(a.conjunct for a in self.assignments if a.conjunct))

    def to_record(self) -> dict[str, Any]:
        """The JSON form in run results."""
        return {
            "answer_shape": self.shape,
            "tasks": self.tasks,
            "queries": [list(a.queries) for a in self.assignments],
            "origin": self.origin,
            "partition": self.partition.to_record() if self.partition else None,
            "problems": list(self.problems),
        }


# ---------------------------------------------------------------- the planner's output


class ProposedTask(BaseModel):
    task: str
    queries: list[str] = Field(default_factory=list)


class PlanOutput(BaseModel):
    """The planner's reply, as the schema of `plan_schema` asks for it."""

    answer_shape: AnswerShape
    facet: str = ""
    values: list[str] = Field(default_factory=list)
    tasks: list[ProposedTask] = Field(min_length=1)


def plan_schema(low: int, high: int) -> JsonSchema:
    """The planner's JSON schema for `low`..`high` agents. The shape comes first, so that the model
    commits to it before writing tasks; facet and values matter for list questions only."""
    return {
        "type": "object",
        "properties": {
            "answer_shape": {"type": "string", "enum": list(SHAPES)},
            "facet": {"type": "string", "maxLength": FACET_MAX_CHARS},
            "values": {
                "type": "array",
                "items": {"type": "string", "minLength": 1, "maxLength": VALUE_MAX_CHARS},
                "maxItems": MAX_VALUES,
            },
            "tasks": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "task": {"type": "string", "minLength": 3, "maxLength": TASK_MAX_CHARS},
                        "queries": {
                            "type": "array",
                            "items": {"type": "string", "minLength": 2, "maxLength": QUERY_MAX_CHARS},
                            "minItems": 1,
                            "maxItems": QUERIES_PER_AGENT,
                        },
                    },
                    "required": ["task", "queries"],
                    "additionalProperties": False,
                },
                "minItems": low,
                "maxItems": high,
            },
        },
        "required": ["answer_shape", "facet", "values", "tasks"],
        "additionalProperties": False,
    }


# ---------------------------------------------------------------- a yes/no question of several names


def conjunct_plan(question: str, names: Sequence[str], count: int) -> Plan | None:
    """For a yes/no question that asks the same thing of several names (`question_forms.conjuncts`):
    `count` agents in one group per name, each checking its name alone, so that "Are A and B both X?"
    is yes only if A's agents and B's agents each find yes. Small models answer such a question "yes"
    from one page about one of the names. Each group's first agent searches for the name; the next
    for the name with the question's other words. None when there are fewer agents than names.
    Decided in code: no planner call."""
    if count < len(names) or len(names) < 2:
        return None
    named = query_words(" ".join(names))
    predicate = [t for t in query_terms(question) if not query_words(t) <= named][:3]
    assignments = []
    for index in range(count):
        name, round_ = names[index % len(names)], index // len(names)
        query = name if round_ == 0 else " ".join([name, *predicate[: round_ + 1]])
        task = f"check {name} alone"
        assignments.append(Assignment(task, (query,), conjunct=name))
    return Plan("short", tuple(assignments), "conjuncts")


# ---------------------------------------------------------------- answer shape


def decide_shape(question: str, proposed: AnswerShape) -> tuple[AnswerShape, str]:
    """The shape heavy mode uses, and why it differs from the planner's (or "").

    A yes/no question has a short answer whatever the planner said: its agents vote (the winning agent's
    explanation follows the "yes"), and a list merge would append every document they read to it. A how
    or why question ("What is the difference …?") is long: merged as items, its explanation would become
    "Items found: …", and voted as short, one agent's first sentence stood for the answer (the default
    model's planner called "What is the difference between shallow and deep copy in Python, and when
    does it matter?" short, and the "when" was lost). A
    question that asks for one name, date, place or number (`asks_for_one_thing`) is neither "long" nor
    a "list" (a count, "How many …?", may stay a list): the 0.5B planner called 21 of 32 such HotpotQA
    questions long and others lists with a facet of years, and a synthesis or an "Items found" union
    then stood where the agents' short answers could have been voted. A request for every item of a
    kind (`asks_for_a_list`: "List all …", "Make a complete map of …") is a list whatever the planner
    said: the 0.5B planner called "Make a complete map of the PEPs that X authored …" long, and its
    agents' items were then synthesized into a paragraph instead of merged and checked."""
    if proposed != "short" and is_yes_no(question):
        return "short", f"a yes/no question has a short answer, not a {proposed} one"
    if proposed != "long" and _asks_how_or_why(question):
        return "long", f"a how or why question asks for an explanation, not a {proposed} answer"
    if proposed != "list" and asks_for_a_list(question) and not _asks_how_or_why(question):
        return "list", f"a request for every item of a kind has a list answer, not a {proposed} one"
    if (
        proposed != "short"
        and asks_for_one_thing(question)
        and not (proposed == "list" and _counts(question))
    ):
        return (
            "short",
            f"a question that asks for one name, date, place or number has a short answer, not a {proposed}",
        )
    return proposed, ""


def _counts(question: str) -> bool:
    """ "How many PEPs …?": a count over items, which a list plan can split and merge before counting."""
    words = question.strip().casefold().split()
    return len(words) > 1 and words[0] == "how" and words[1] in ("many", "much")


def _asks_how_or_why(question: str) -> bool:
    """ "How do I …?", "Why does …?", "What is the difference between …?": questions whose answer is an
    explanation. "How many …?" asks for a number and "Which … how …" for items, so neither counts."""
    words = question.strip().casefold().split()
    if not words:
        return False
    if words[0] == "why" or (words[0] == "how" and len(words) > 1 and words[1] not in QUANTITY_WORDS):
        return True
    return " ".join(words[:4]).startswith(("what is the difference", "what's the difference"))


# ---------------------------------------------------------------- distinct queries


def near_duplicate(a: frozenset[str], b: frozenset[str]) -> bool:
    """Whether two queries' `query_words` make the same search: equal, one inside the other, or
    sharing at least `SIMILAR` of their words."""
    if not a or not b:
        return False
    if a <= b or b <= a:
        return True
    return len(a & b) / len(a | b) >= SIMILAR


def copies_question(query: str, question: str) -> bool:
    """Whether `query` is the question's wording rather than keywords of the searcher's own: it holds
    most of the content words of a question that has many."""
    asked = query_words(question)
    if len(asked) < 5:
        return False  # a short question's words are the obvious keywords
    return len(query_words(query) & asked) >= COPY_SHARE * len(asked)


def invents_names(query: str, question: str) -> bool:
    """Whether a planner's query adds a name or a number the question does not have. The planner has
    read nothing yet, so such a query searches for its guess: the 0.5B planner wrote "What year did Roy
    Rogers and his third wife star in 'A Beautiful Mind'?" and "Columba de Dunbar die in 1440" for
    questions that name neither."""
    words = query_words(query)
    named = query_words(" ".join(proper_names(query))) | {w for w in words if any(ch.isdigit() for ch in w)}
    return bool(named - query_words(question))


def seed_queries(question: str, count: int, *, spare: int = 0) -> list[str]:
    """Distinct queries made of the question's words, for agents the planner gave none, so that each
    agent starts from a different part of the question. When the question names something
    (`proper_names(opening=True)`: "Andrew Jaspan", "Faith Lutheran Middle School"), every query
    holds a name whole with a different pair of the other words: "Andrew Jaspan co founder",
    "Andrew Jaspan profit media", not "jaspan andrew", "andrew co" and "co founder", which find
    pages about no part of the question. Several names take turns, so that "David Yates and Pietro
    Germi" gives each name its own agents. Without names: windows of a few words spread over the
    question, numbers first (`word_windows`). `spare`: how many more to give beyond `count` (for
    agents whose own queries another's seed would repeat)."""
    terms = [t for t in query_terms(question) if len(t) > 1]
    if not terms or count < 1:
        return []
    names = [n for n in proper_names(question, opening=True) if query_terms(n)]
    if not names:
        return word_windows(question, count + spare)
    named = query_words(" ".join(names))
    rest = _numbers_first(question, [t for t in terms if singular(t) not in named])
    # Pairs of the other words, or single words when pairs would leave agents without a query.
    width = 2 if len(names) * math.ceil(len(rest) / 2) >= count - 1 else 1
    parts = [" ".join(rest[at : at + width]) for at in range(0, len(rest), width)] or [""]
    found: list[str] = []
    for part in parts:
        for name in names:
            _add_distinct(found, f"{name} {part}".strip())
    if len(names) > 1:
        _add_distinct(found, " ".join(names))  # all the names together
    if len(rest) > 2:
        _add_distinct(found, " ".join(rest[:4]))  # the question's other words alone
    return found[: count + spare]


def _numbers_first(question: str, terms: list[str]) -> list[str]:
    """`terms` with the names and numbers first (capitalized after the first word, or holding a digit):
    they are what a question is about."""
    words = re.findall(r"\w+", question)[1:]
    marked = {w.casefold() for w in words if w[0].isupper() or any(ch.isdigit() for ch in w)}
    return [t for t in terms if t in marked] + [t for t in terms if t not in marked]


def word_windows(question: str, count: int) -> list[str]:
    """Up to `count` distinct windows of a few content words spread over the question, names and numbers
    first: the seed queries of a question that names nothing."""
    terms = _numbers_first(question, [t for t in query_terms(question) if len(t) > 1])
    if not terms or count < 1:
        return []
    width = max(2, min(4, math.ceil(len(terms) / count)))
    if len(terms) <= width:
        return [" ".join(terms)]
    last_start = len(terms) - width
    starts = sorted({round(i * last_start / max(count - 1, 1)) for i in range(count)})
    found: list[str] = []
    for start in starts:
        _add_distinct(found, " ".join(terms[start : start + width]))
    return found


def _add_distinct(found: list[str], query: str) -> None:
    """Append `query` unless it is empty or the same search as one already in `found`."""
    words = query_words(query)
    if words and not any(near_duplicate(words, query_words(other)) for other in found):
        found.append(query)


def spread_queries(
    proposed: Sequence[Sequence[str]], question: str, *, taken_by: Sequence[str] = ()
) -> tuple[list[tuple[str, ...]], list[str]]:
    """Each agent's first queries, checked: a query that copies the question or repeats another agent's
    search is dropped, and an agent left with none gets a seed query from the question's words that no
    other agent has. `taken_by`: the queries of agents planned before these (numbered from 1), which
    these must not repeat either. Returns the queries per agent and what was changed."""
    problems: list[str] = []
    first = len(taken_by)
    # (agent, query words) of every query kept so far
    taken: list[tuple[int, frozenset[str]]] = [(i, query_words(q)) for i, q in enumerate(taken_by)]
    seeds = seed_queries(question, len(proposed), spare=len(proposed) + 2)
    spread: list[list[str]] = []
    for agent, queries in enumerate(proposed, start=first):
        name = f"agent-{agent + 1}"
        kept: list[str] = []
        for raw in queries:
            query = " ".join(raw.split())[:QUERY_MAX_CHARS]
            words = query_words(query)
            if not words:
                continue
            if copies_question(query, question):
                problems.append(f"{name}: query {query!r} copies the question")
                continue
            if invents_names(query, question):
                problems.append(f"{name}: query {query!r} names what the question does not")
                continue
            clash = next((other for other, seen in taken if near_duplicate(words, seen)), None)
            if clash is not None and clash != agent:
                problems.append(f"{name}: query {query!r} repeats agent-{clash + 1}'s search")
                continue
            if clash is None:
                kept.append(query)
                taken.append((agent, words))
        spread.append(kept[:QUERIES_PER_AGENT])
    # Seeds only once every agent's own queries are kept: a seed must not take another agent's query.
    for agent, kept in enumerate(spread, start=first):
        if kept:
            continue
        seed = next(
            (s for s in seeds if not any(near_duplicate(query_words(s), seen) for _, seen in taken)),
            None,
        )
        if seed is not None:
            kept.append(seed)
            taken.append((agent, query_words(seed)))
            problems.append(f"agent-{agent + 1}: starts from {seed!r}, from the question's words")
    return [tuple(kept) for kept in spread], problems
