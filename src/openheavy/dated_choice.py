"""A choice between the candidates a question names, made by their dates in code.

"Which film was released first, A or B?", "Who was born earlier, A or B?", "Which board game was
published most recently, A or B?": the answer is the candidate whose year is earliest (or latest), and
the years stand in the opening sentences of the documents about them ("A is a 2002 American film",
"B (25 January 1882 – 28 March 1941) was …"). Small models read both documents and still name the one
they read last: in a HotpotQA run with the 0.5B model, three of four agents that had read "The Country
Bears" (2002) and "The Wild" (2006) answered "The Wild" to "which was released first". Comparing two
years is what code does without fail, so code does it, from the documents, and cites them.

The question's form decides the direction: words of "earlier" (first, earlier, earliest, older, oldest,
before, sooner) ask for the earliest year, words of "later" (later, latest, recently, recent, newer,
newest, younger, youngest, after) for the latest. Not decided here: a question with both or neither, one
about when something ended (died, death, ended, closed, dissolved: the first year a text gives is when
it began), and one that asks who was "the first … to" do something. Each candidate needs a document
titled by its name (a parenthesized note aside), with a year in its opening, and the years must set one
candidate apart; otherwise nothing is decided and the agents' vote stands.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from openheavy.question_forms import names_candidates
from openheavy.types import Document

__all__ = [
    "DatedCandidate",
    "DatedChoice",
    "choose_by_date",
    "comparison_direction",
    "opening_year",
    "titled",
]

Direction = Literal["earliest", "latest"]

_EARLIER = frozenset({"first", "earlier", "earliest", "older", "oldest", "before", "sooner"})
_LATER = frozenset(
    {"later", "latest", "recently", "recent", "newer", "newest", "younger", "youngest", "after"}
)
# The first year a document gives is when its subject began; a question about an end is not decided.
_ENDINGS = frozenset({"died", "die", "dies", "death", "ended", "ends", "closed", "dissolved", "demolished"})
_WORD = re.compile(r"[a-z]+")
# "Who was the first composer to …?" asks who did something first, not whose date is earliest.
_FIRST_TO = re.compile(r"\bthe (?:first|earliest|last|latest)\b.*\bto\b", re.IGNORECASE)
_YEAR = re.compile(r"(?<![\d.,])(1[0-9]{3}|20[0-9]{2})(?![\d.,]\d)")
_TOKEN = re.compile(r"\w+")
_NOTE = re.compile(r"\s*\([^)]*\)\s*$")  # "(film)", "(2006 film)", "(band)": a title's disambiguation
OPENING_CHARS = 300  # where a document's own dates stand: its first sentence or two


@dataclass(frozen=True)
class DatedCandidate:
    name: str
    year: int | None
    document: Document | None  # the document the year was read from (None: none is about the name)

    def to_record(self) -> dict[str, Any]:
        return {
            "answer": f"{self.name}: {self.year if self.year is not None else 'no year found'}",
            "document": self.document.id if self.document is not None else None,
        }


@dataclass(frozen=True)
class DatedChoice:
    direction: Direction
    candidates: tuple[DatedCandidate, ...]

    @property
    def winner(self) -> DatedCandidate | None:
        """The candidate whose year alone is the earliest (latest); None when a year is missing or the
        best year is shared."""
        years = [c.year for c in self.candidates]
        if any(year is None for year in years):
            return None
        best = (min if self.direction == "earliest" else max)(y for y in years if y is not None)
        found = [c for c in self.candidates if c.year == best]
        return found[0] if len(found) == 1 else None


def comparison_direction(question: str) -> Direction | None:
    """Whether the question asks for the earliest or the latest of its candidates (None: neither, both,
    or a question about when something ended)."""
    words = set(_WORD.findall(question.casefold()))
    if words & _ENDINGS or _FIRST_TO.search(question):
        return None
    early, late = bool(words & _EARLIER), bool(words & _LATER)
    if early == late:
        return None
    return "earliest" if early else "latest"


def opening_year(document: Document) -> int | None:
    """The first year (1000–2099) in the document's opening, or None."""
    match = _YEAR.search(document.text[:OPENING_CHARS])
    return int(match.group(1)) if match else None


def titled(name: str, title: str) -> bool:
    """Whether a page titled `title` is about `name`: the title is the name (case and punctuation aside),
    or the name with a parenthesized note ("The Wild (film)"). A title that only holds the name's words
    is another page ("Ride a Wild Pony" is not about "The Wild")."""
    wanted = _plain(name)
    return bool(wanted) and _plain(_NOTE.sub("", title)) == wanted


def _plain(text: str) -> str:
    # Not `normalize.normalize_answer`, which drops articles: "The Wild" and "Wild" are other pages.
    return " ".join(_TOKEN.findall(text.casefold()))


def choose_by_date(question: str, documents: Iterable[Document]) -> DatedChoice | None:
    """The question's candidates with the year each one's document opens with, when the question asks
    which is earliest or latest (see the module's note); None for any other question."""
    direction = comparison_direction(question)
    names = names_candidates(question)
    if direction is None or len(names) < 2:
        return None
    pool = list({d.id: d for d in documents}.values())
    dated = []
    for name in names:
        document = next((d for d in pool if titled(name, d.title)), None)
        year = opening_year(document) if document is not None else None
        dated.append(DatedCandidate(name, year, document))
    return DatedChoice(direction, tuple(dated))
