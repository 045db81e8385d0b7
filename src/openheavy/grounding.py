"""Whether a "yes" is grounded in what was read.

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
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from openheavy.search.terms import query_terms, singular
from openheavy.types import Document

__all__ = ["Ungrounded", "fold", "predicate_words", "ungrounded_yes"]

# Words that frame a predicate rather than state it: "types of drinks" asks for drinks.
_FRAMING = frozenset("type kind sort form considered regarded known called classified also each".split())  # noqa: SIM905
_WORD = re.compile(r"\w+")
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
        tokens = {fold(t) for doc in passages.values() for t in _WORD.findall(f"{doc.title} {doc.text}")}
        missing = tuple(word for word in words if not _holds(fold(word), tokens))
        if missing or not passages:
            return Ungrounded(name, missing or tuple(words), tuple(passages))
    return None
