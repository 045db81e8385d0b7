"""Whether a "yes", or a choice between named candidates, is grounded in what was read.

A yes/no question that asks the same thing of several names ("Are both Duke Energy and Affiliated
Managers Group based in Massachusetts?", `question_forms.conjunct_split`) is yes only if a passage read
about each name says it. Small models answer "yes" from a page that does not say: in HotpotQA-50 r8,
8 of the 11 "Yes" answers single and heavy gave such questions were wrong, among them a "yes" to the
question above from agents that had read Duke Energy's page, which names Charlotte, North Carolina.

The check is lexical and one-sided. A "yes" for a name stands when the passages the agent opened
about that name (its words in their title or opening, `SourceBook.about`) hold each content word of
the predicate ("coastal", "cities"; a word's plural and longer forms count: "Disney" is in
"Disneynature"); otherwise it becomes "no", since "both" was not shown. A "no" is never turned into
"yes": that a passage holds the words does not make the predicate hold. Participles and words that only
frame the predicate ("based in", "considered", "types of") are not required: the place or the kind is
what a page states. The cost: a predicate the page states in other words ("teachers" for a
"professor") loses a right "yes".

A question that names its candidates ("Which novelist, J. G. Farrell or Louis Aragon, wrote of the
political and human consequences of his country's colonial rule?") is answered by the candidate whose
passages say what it asks: the one whose read passages hold the most of the question's other content
words, when it alone holds most and a passage about every candidate was read (`grounded_choice`).
Small models pick a candidate from the last page they read; in HotpotQA-50 r9 both modes answered
Louis Aragon, though every agent had read Farrell's page, which holds those words. A comparison ("more
constant members", "older", "closer to Canada") is not decided by words on a page and is left alone.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from openheavy.search.terms import query_terms, singular
from openheavy.types import Document

__all__ = [
    "GroundedChoice",
    "Ungrounded",
    "compares",
    "fold",
    "grounded_choice",
    "predicate_words",
    "ungrounded_yes",
]

# Words that frame a predicate rather than state it: "types of drinks" asks for drinks.
_FRAMING = frozenset("type kind sort form considered regarded known called classified also each".split())  # noqa: SIM905
_WORD = re.compile(r"\w+")
# Questions that compare the candidates: which has more of something, or is older, first or closer, is
# not what a page's words say (each page may name members, a birth date, a place).
_COMPARISON = re.compile(
    r"\b(?:more|less|fewer|most|least|better|worse|best|worst|greater|greatest|first|last|\w+er\s+than|"
    r"(?:new|old|young|larg|small|bigg|long|short|tall|high|low|clos|earli|lat|near|wid|deep|rich|poor|fast|"
    r"slow|strong|weak|heavi|busi|cheap|hott|wealthi)(?:er|est)|farther|further)\b",
    re.IGNORECASE,
)
# A word's longer forms count for it from this length on ("Disney" in "Disneynature", "sport" in
# "sporting"); shorter words must match whole.
_PREFIX_MIN = 4


def fold(word: str) -> str:
    """A word as the check compares it: NFKC, case-folded, its plural folded away
    (`search.terms.singular`, the same folding search queries get)."""
    return singular(unicodedata.normalize("NFKC", word).casefold())


def predicate_words(predicate: str) -> list[str]:
    """The content words a passage must hold for `predicate` to be stated there, as the question writes
    them: stopwords, framing words ("type", "considered") and participles ("based", "connected")
    dropped."""
    content = set(query_terms(predicate))
    words: list[str] = []
    for word in _WORD.findall(unicodedata.normalize("NFKC", predicate)):
        folded = fold(word)
        framing = folded in _FRAMING or (len(folded) > 4 and folded.endswith("ed"))
        if word.casefold() in content and not framing and not word.isdigit() and word not in words:
            words.append(word)
    return words


@dataclass(frozen=True)
class Ungrounded:
    """A name whose "yes" nothing read supports: the predicate's words no passage about it holds
    (`missing`), and the passages about it that were read (`refs`, empty when there were none)."""

    name: str
    missing: tuple[str, ...]
    refs: tuple[int, ...]

    def describe(self) -> str:
        if not self.refs:
            return f"nothing read is about {self.name}"
        said = ", ".join(f'"{word}"' for word in self.missing)
        return f"no passage read about {self.name} says {said}"


def _folded_words(passages: Mapping[int, Document]) -> set[str]:
    """Every word of the passages' titles and texts, folded (`fold`)."""
    return {fold(t) for doc in passages.values() for t in _WORD.findall(f"{doc.title} {doc.text}")}


def _holds(word: str, tokens: set[str]) -> bool:
    if word in tokens:
        return True
    return len(word) >= _PREFIX_MIN and any(token.startswith(word) for token in tokens)


def ungrounded_yes(
    predicate: str, names: Sequence[str], about: Mapping[str, Mapping[int, Document]]
) -> Ungrounded | None:
    """The first of `names` for which a "yes" to `predicate` is not grounded in what was read, or None
    when each is (or the predicate has no content word to look for). `about[name]`: the passages read
    about that name, by reference number."""
    words = predicate_words(predicate)
    if not words:
        return None
    for name in names:
        passages = about.get(name, {})
        tokens = _folded_words(passages)
        missing = tuple(word for word in words if not _holds(fold(word), tokens))
        if missing or not passages:
            return Ungrounded(name, missing or tuple(words), tuple(passages))
    return None


def compares(question: str, candidates: Sequence[str]) -> bool:
    """Whether `question` compares its `candidates` (which has more, is older, came first …): what
    no page's words decide."""
    return _COMPARISON.search(_without(question, candidates)) is not None


def _without(question: str, candidates: Sequence[str]) -> str:
    for name in candidates:
        question = question.replace(name, " ")  # "The Last Samurai" compares nothing
    return question


@dataclass(frozen=True)
class GroundedChoice:
    """The candidate the read passages support (`grounded_choice`): the question's words the passages
    about it hold (`held`, as the question writes them), those passages (`refs`), and for each other
    candidate how many of the words its passages hold and which passages those are."""

    name: str
    held: tuple[str, ...]
    refs: tuple[int, ...]
    others: tuple[tuple[str, int, tuple[int, ...]], ...]

    def describe(self) -> str:
        said = ", ".join(f'"{word}"' for word in self.held)
        marks = "".join(f"[{ref}]" for ref in self.refs)
        rest = "; ".join(
            f"those about {name} say {count} of them {''.join(f'[{ref}]' for ref in refs)}".rstrip()
            for name, count, refs in self.others
        )
        return f"the passages read about {self.name} say {said} {marks}; {rest}"


def grounded_choice(
    question: str, candidates: Sequence[str], about: Mapping[str, Mapping[int, Document]]
) -> GroundedChoice | None:
    """The one of `candidates` (the names the question offers) whose read passages (`about[name]`)
    hold the most of the question's content words other than the candidates' own, or None: when the
    question compares the candidates (`_COMPARISON`), when a candidate has no passage read about it,
    or when no candidate alone holds the most (none holding any is no choice)."""
    if len(candidates) < 2 or compares(question, candidates):
        return None
    words = predicate_words(_without(question, candidates))
    held: list[tuple[str, tuple[str, ...], tuple[int, ...]]] = []
    for name in candidates:
        passages = about.get(name, {})
        if not passages:
            return None
        tokens = _folded_words(passages)
        held.append((name, tuple(w for w in words if _holds(fold(w), tokens)), tuple(passages)))
    most = max(len(h[1]) for h in held)
    leaders = [h for h in held if len(h[1]) == most]
    if most == 0 or len(leaders) > 1:
        return None
    name, words_held, refs = leaders[0]
    others = tuple((n, len(w), r) for n, w, r in held if n != name)
    return GroundedChoice(name, words_held, refs, others)
