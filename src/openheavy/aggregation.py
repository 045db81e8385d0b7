"""How heavy mode turns its agents' answers into one, by the shape of the answer.

- Short answers (a name, a number, yes/no, a choice): each agent's short answer is normalized and
  voted. A majority decides, so three agents agreeing cannot be overruled by one verbose note; the
  synthesizer only breaks ties (`vote_on_answers`). Agents that agree in different sentences ("The
  Conversation is an independent outlet", "Jaspan co-founded The Conversation") agree on the words
  they share that the question does not hold (`shared_words`).
- Lists: the deduplicated union of the items every agent found, each with the documents that support
  it (`merge_list_items`). Nothing an agent found and cited is dropped, as a synthesized paragraph may.
- Long answers go to the synthesizer (heavy.py).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from openheavy.agent import AgentResult
from openheavy.answer_text import echoes_question, ends_sentence, leading_yes_no
from openheavy.citations import RunSources, cited_numbers, renumber_markers
from openheavy.normalize import normalize_answer
from openheavy.partition import overlaps
from openheavy.search.terms import STOPWORDS
from openheavy.verify import tally

__all__ = [
    "AnswerVote",
    "Candidate",
    "ListItem",
    "is_choice",
    "lead_sentence",
    "merge_list_items",
    "shared_words",
    "short_answer",
    "vote_on_answers",
]

SHORT_MAX_CHARS = 120
ITEM_MAX_CHARS = 200

_BULLET = re.compile(r"^\s*(?:[-*•+]|\d{1,3}[.)])\s+")
_MARKER_RUN = re.compile(r"(?:\s*\[\d+(?:\s*,\s*\d+)*\])+")
_LEADING_JUNK = re.compile(r"^(?:[\s,;:.–—-]+|(?:and|or)\b\s*)+", re.IGNORECASE)
_SENTENCE_END = re.compile(r"[.!?](?=\s|$)")
_WORD = re.compile(r"\w+")
# The longest run of words two answers are compared on: a name or a date, not a sentence.
SHARED_MAX_WORDS = 8


# ---------------------------------------------------------------- short answers


def short_answer(result: AgentResult) -> str:
    """An agent's short answer: the one it gave (`AgentResult.short_answer`), else the first sentence of
    its answer (answers lead with the direct answer), without citation markers."""
    if result.short_answer.strip():
        return renumber_markers(result.short_answer, {}).strip()
    return lead_sentence(result.answer)


def lead_sentence(text: str) -> str:
    """The first sentence of `text` (initials and common abbreviations do not end one), without
    citation markers or list bullets; a leading "Yes," or "No," alone."""
    line = next((ln for ln in renumber_markers(text, {}).splitlines() if ln.strip()), "")
    line = _BULLET.sub("", line).strip().strip("*_#").strip()
    yes_no = leading_yes_no(line)
    if yes_no:
        return yes_no
    for match in _SENTENCE_END.finditer(line):
        if ends_sentence(line, match.start()):  # not "J. G. Farrell", "e.g. this"
            return line[: match.start()].strip()[:SHORT_MAX_CHARS]
    return line[:SHORT_MAX_CHARS]


@dataclass(frozen=True)
class Candidate:
    """One distinct short answer and the agents that gave it (in agent order)."""

    answer: str  # as the first of its agents wrote it
    agents: tuple[str, ...]


@dataclass(frozen=True)
class AnswerVote:
    """The agents' short answers grouped, most votes first; `winner` is None when no answer has more
    votes than every other (then the synthesizer decides)."""

    candidates: tuple[Candidate, ...]
    winner: Candidate | None
    voters: int = 0  # the agents whose answers counted
    shared: bool = False  # the winner is the words most answers share (`shared_words`), not one answer
    # Answers that did not vote because they only repeat the question's words (`echoes_question`).
    set_aside: tuple[Candidate, ...] = ()

    def to_record(self) -> list[dict[str, Any]]:
        counted = [{"answer": c.answer, "agents": list(c.agents)} for c in self.candidates]
        aside = [{"answer": c.answer, "agents": list(c.agents), "set_aside": ECHO} for c in self.set_aside]
        return counted + aside


# Why an answer in `AnswerVote.set_aside` did not vote, as the trace and the live view say it.
ECHO = "only repeats the question's words"


def vote_on_answers(results: Sequence[AgentResult], question: str = "") -> AnswerVote:
    """Vote on the short answers of the agents that answered. Only answers that cite a source vote when
    any does: "I could not find it", however often said, must not outvote an answer that was read. Nor
    does an answer that only repeats the question's words (`echoes_question`: "Pitof 2004 movie" for
    "What movie did Pitof direct … in 2004?") while another answer names something: two agents that
    echo the question must not outvote one that found the name. The winner needs more votes than any
    other answer and, when two or more agents vote, at least two. When no answer wins so, the words
    that more than half of the answers share and `question` does not hold win, when there are such
    words (`shared_words`): small models answer in sentences, each worded its own way, around the same
    name."""
    answered = [r for r in results if r.ok and r.answer.strip()]
    if any(r.citations for r in answered):
        answered = [r for r in answered if r.citations]
    voting: list[tuple[AgentResult, str]] = []
    echoes: list[tuple[AgentResult, str]] = []
    for result in answered:
        short = short_answer(result)
        (echoes if question and echoes_question(short, question) else voting).append((result, short))
    if not voting:  # nothing but echoes: they are all there is to vote on
        voting, echoes = echoes, []
    set_aside = _grouped(echoes)[0] if echoes else ()
    answered = [result for result, _ in voting]
    shorts = [short for _, short in voting]
    candidates, leader = _grouped(voting)
    winner = None
    if leader is not None and (len(leader.agents) >= 2 or len(answered) == 1):
        winner = leader
    elif question:
        shared = shared_words(shorts, question)
        if shared is not None:
            words, holders = shared
            holding = Candidate(words, tuple(answered[i].agent for i in holders))
            return AnswerVote(candidates, holding, len(answered), True, set_aside)
    return AnswerVote(candidates, winner, len(answered), set_aside=set_aside)


def _grouped(answers: Sequence[tuple[AgentResult, str]]) -> tuple[tuple[Candidate, ...], Candidate | None]:
    """Agents' short answers (each result with its short answer) as candidates, equal ones (once
    normalized) together, most agents first, and the one with more agents than every other (None when
    none has)."""
    shorts = [short for _, short in answers]
    counted = tally([normalize_answer(s) or None for s in shorts])
    candidates = tuple(Candidate(shorts[m[0]], tuple(answers[i][0].agent for i in m)) for m in counted.groups)
    return candidates, None if counted.leader is None else candidates[counted.leader]


def shared_words(answers: Sequence[str], question: str) -> tuple[str, tuple[int, ...]] | None:
    """The run of words (at most `SHARED_MAX_WORDS`, case aside) that more than half of `answers` hold,
    with the positions of those answers; None when no run is held so widely. A run must hold a content
    word the question does not (the question's own subject, which every answer restates, is no
    answer), and neither starts nor ends with a function word. Of the runs held by the most answers, the
    longest wins when it holds all the others ("The Conversation" over "Conversation"); two rival runs
    held equally ("Louis Aragon", "J. G. Farrell") decide nothing. The run is returned as the first of
    its answers writes it, with a capitalized "The" before it kept ("The Conversation")."""
    asked = {word.casefold() for word in _WORD.findall(question)}
    spans = [list(_WORD.finditer(answer)) for answer in answers]
    holders: dict[tuple[str, ...], list[int]] = {}
    for position, matches in enumerate(spans):
        words = [m[0].casefold() for m in matches]
        runs = {
            tuple(words[start:end])
            for start in range(len(words))
            for end in range(start + 1, min(len(words), start + SHARED_MAX_WORDS) + 1)
        }
        for run in runs:
            content = [w for w in run if w not in STOPWORDS]
            if run[0] in STOPWORDS or run[-1] in STOPWORDS or all(w in asked for w in content):
                continue
            holders.setdefault(run, []).append(position)
    most = max((len(held) for held in holders.values()), default=0)
    if most < 2 or 2 * most <= len(answers):
        return None
    best = [run for run, held in holders.items() if len(held) == most]
    longest = max(best, key=len)
    if not all(_inside(run, longest) for run in best):
        return None
    first = holders[longest][0]
    matches = spans[first]
    words = [m[0].casefold() for m in matches]
    start = next(i for i in range(len(words)) if tuple(words[i : i + len(longest)]) == longest)
    begin = matches[start - 1].start() if start and matches[start - 1][0] == "The" else matches[start].start()
    return answers[first][begin : matches[start + len(longest) - 1].end()], tuple(holders[longest])


def _inside(run: tuple[str, ...], longer: tuple[str, ...]) -> bool:
    return any(longer[i : i + len(run)] == run for i in range(len(longer) - len(run) + 1))


@dataclass(frozen=True)
class ConjunctVerdict:
    """What the agents checking one name found: "Yes", "No", or "" when none answered yes or no;
    `agents`: those that gave it. `disputed`: the name's agents split, so "yes" was not established
    for it, and the verdict is the "No" of those that found no."""

    name: str
    answer: str
    agents: tuple[str, ...]
    disputed: bool = False


@dataclass(frozen=True)
class ConjunctVote:
    """A yes/no question asked of several names, decided name by name: "No" when the agents of some
    name found no, "Yes" when those of every name found yes, "" when that does not decide it."""

    verdicts: tuple[ConjunctVerdict, ...]
    answer: str

    def to_record(self) -> list[dict[str, Any]]:
        """The vote as `VoteTaken` candidates: one per name, with its verdict."""
        return [
            {
                "answer": f"{v.name}: {v.answer or 'undecided'}"
                + (" (its agents disagree)" if v.disputed else ""),
                "agents": list(v.agents),
            }
            for v in self.verdicts
        ]


def vote_on_conjuncts(results: Sequence[AgentResult], conjuncts: Sequence[str]) -> ConjunctVote:
    """Decide a yes/no question asked of several names (`conjuncts[i]`: the name agent `results[i]`
    checked, "" for an agent that checked none): each name's agents vote on their short answers
    (`vote_on_answers`), and the question is yes only if every name's verdict is yes.

    A name whose agents split (no majority, and some voting agent found no) has not been shown to meet
    the predicate: "both" is then not established, and its verdict is the dissenters' "No". Small models
    answer "yes" from a page that does not say (7 such "yes" answers to HotpotQA questions whose answer
    is no); one agent's "no" against another's "yes" is what the traces showed of those."""
    verdicts = []
    for name in dict.fromkeys(c for c in conjuncts if c):
        group = [r for r, c in zip(results, conjuncts, strict=True) if c == name]
        vote = vote_on_answers(group)
        winner = vote.winner
        said = leading_yes_no(winner.answer) if winner is not None else None
        said = said.capitalize() if said else None
        if said is None:
            noes = [a for c in vote.candidates if leading_yes_no(c.answer) == "No" for a in c.agents]
            if noes:
                verdicts.append(ConjunctVerdict(name, "No", tuple(noes), disputed=True))
                continue
        verdicts.append(ConjunctVerdict(name, said or "", winner.agents if winner and said else ()))
    if any(v.answer == "No" for v in verdicts):
        answer = "No"
    elif verdicts and all(v.answer == "Yes" for v in verdicts):
        answer = "Yes"
    else:
        answer = ""
    return ConjunctVote(tuple(verdicts), answer)


# ---------------------------------------------------------------- lists


@dataclass(frozen=True)
class ListItem:
    """One item of a merged list: its text, the run-wide numbers of the sources that support it, and
    the agents that found it."""

    text: str
    sources: tuple[int, ...]
    agents: tuple[str, ...]
    from_title: bool = field(default=False, compare=False)  # a cited document with no item text

    def to_record(self, sources: RunSources) -> dict[str, Any]:
        numbers = sources.by_number
        return {
            "text": self.text,
            "documents": [numbers[n].document.id for n in self.sources if n in numbers],
            "agents": list(self.agents),
        }


def merge_list_items(results: Sequence[AgentResult], sources: RunSources) -> tuple[list[ListItem], int]:
    """The deduplicated union of the list items the agents found, and how many found items were
    duplicates of another agent's (merged into it).

    An item is a stretch of an agent's answer that ends in citation markers (one per line or bullet, or
    several in a line: "PEP 492 [1], PEP 525 [2]"); a document an agent cited that no item's markers
    name becomes an item of its own, under its title. Items are the same when their normalized texts are
    equal or one holds the other (two words at least), or when two agents each gave one item resting on
    exactly the same documents."""
    merged: list[ListItem] = []
    sole: list[bool] = []  # per merged item: the only item of its first agent resting on its documents
    duplicates = 0
    for result in results:
        if not result.ok:
            continue
        found = _items_of(result, sources)
        per_evidence: dict[frozenset[int], int] = {}
        for item in found:
            per_evidence[frozenset(item.sources)] = per_evidence.get(frozenset(item.sources), 0) + 1
        for item in found:
            alone = per_evidence[frozenset(item.sources)] == 1
            same = next(
                (i for i, known in enumerate(merged) if _same_item(item, known, alone and sole[i])), None
            )
            if same is None:
                merged.append(item)
                sole.append(alone)
                continue
            known = merged[same]
            if result.agent not in known.agents:
                duplicates += 1
            merged[same] = ListItem(
                known.text,
                tuple(dict.fromkeys(known.sources + item.sources)),
                tuple(dict.fromkeys(known.agents + item.agents)),
                known.from_title,
            )
    return merged, duplicates


def is_choice(items: Sequence[ListItem], candidates: Sequence[str]) -> bool:
    """Whether a "list" is really a choice among the candidates the question names: every item is one
    of those candidates (it begins with one), as when agents each research one of two named people."""
    keys = [normalize_answer(c) for c in candidates if normalize_answer(c)]
    if len(keys) < 2 or not items:
        return False
    return all(any(normalize_answer(item.text).startswith(key) for key in keys) for item in items)


def _items_of(result: AgentResult, sources: RunSources) -> list[ListItem]:
    """One agent's items, with run-wide source numbers."""
    text = sources.globalize(result.answer, result.citations)
    known = set(sources.by_number)
    items: list[ListItem] = []
    for line in text.splitlines():
        line = _BULLET.sub("", line)
        start = 0
        for run in _MARKER_RUN.finditer(line):
            piece = _clean_item(line[start : run.start()])
            numbers = tuple(dict.fromkeys(n for n in cited_numbers(run.group(0)) if n in known))
            start = run.end()
            if piece and numbers:
                items.append(ListItem(piece, numbers, (result.agent,)))
    covered = {n for item in items for n in item.sources}
    for citation in result.citations:
        source = sources.by_id.get(citation.id)
        if source is not None and source.number not in covered:
            covered.add(source.number)
            items.append(ListItem(source.document.title, (source.number,), (result.agent,), from_title=True))
    return items


def _clean_item(text: str) -> str:
    text = _LEADING_JUNK.sub("", text.strip()).strip().strip("*_").rstrip(" ,;:.–—-").strip()
    if len(text) > ITEM_MAX_CHARS:
        text = text[:ITEM_MAX_CHARS].rsplit(" ", 1)[0] + " …"
    return text


def _same_item(item: ListItem, known: ListItem, both_alone: bool) -> bool:
    key, other = normalize_answer(item.text), normalize_answer(known.text)
    if key == other:
        return True
    if min(len(key.split()), len(other.split())) >= 2 and overlaps(item.text, known.text):
        return True
    # Two agents naming one document's item in their own words: the same item when, for each of them,
    # it is the only item those documents support.
    return both_alone and known.agents[0] not in item.agents and set(item.sources) == set(known.sources)
