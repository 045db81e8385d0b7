"""The read sentences that bear most on the question, restated just before an agent's last answer.

A small model answers with what it read last. In HotpotQA-50 r10, 49 of 50 single runs answered at the
step limit, and the 0.5B model named the entity of the last page it had opened: single had read a
passage holding the gold answer in 25 of the 40 questions that are not yes/no, and answered 5 of them
right. "Andrew Jaspan was the co-founder of what not-for-profit media outlet?" was answered
"EvidenceNetwork.ca" (the third page read) though the first page read says Jaspan co-founded "The
Conversation", an independent not-for-profit website.

So the prompt for the last answer restates the few sentences, of all the agent opened, that share the
most content words with the question, with their document numbers, the closest last: what the model
reads last is then what bears on the question, wherever it was read. Listed the closest first
instead (HotpotQA-50 r14), replaying r13's last calls of single had promised F1 0.171 → 0.204, but
the full eval fell: single 0.287 → 0.276, heavy's agents' mean 0.315 → 0.282, heavy 0.381 → 0.361; the
model went on answering from the last page it opened, so this order stays. The choice is lexical
(`search.terms.query_words`, plurals folded): a sentence's passage title counts with it, since a
page's sentences say "He" or "The film" for what its title names; a sentence must itself hold a
question word. The sentences are document text and are shown inside a data fence like any document.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from openheavy.search.terms import query_words
from openheavy.types import Document

__all__ = ["RECAP_SENTENCES", "Recalled", "closest_sentences"]

# Enough for a two-hop question's two facts and one more; few enough to stay the last thing read.
RECAP_SENTENCES = 3
# A sentence longer than this is shown cut at a word, with "…".
_SENTENCE_MAX_CHARS = 320
# A sentence ends at . ! or ? followed by space and a capital (or a quote or bracket before one), so
# "(b. 20 April 1952)" and "3.5 km" do not end one.
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z])")


@dataclass(frozen=True)
class Recalled:
    """One sentence an agent read: the document number it reads under, and the question words it holds
    (with its passage's title)."""

    ref: int
    sentence: str
    shared: int


def closest_sentences(
    question: str, opened: Mapping[int, Document], k: int = RECAP_SENTENCES
) -> list[Recalled]:
    """The `k` sentences of the `opened` passages (by document number) that share the most content
    words with `question`, counting each passage's title with its sentences, least close first (so the
    closest is shown last); equals go to the sentence that itself holds more, then to the one read
    first. A sentence that holds no question word itself is never chosen; [] when none does."""
    asked = query_words(question)
    if not asked or k < 1:
        return []
    scored: list[tuple[int, int, int, Recalled]] = []
    order = 0
    for ref, document in opened.items():
        titled = asked & query_words(document.title)
        for sentence in _SENTENCE_BREAK.split(" ".join(document.text.split())):
            own = asked & query_words(sentence)
            if own:
                shared = len(own | titled)
                scored.append((shared, len(own), -order, Recalled(ref, _shortened(sentence), shared)))
            order += 1
    best = sorted(scored, key=lambda item: item[:3], reverse=True)[:k]
    return [item[3] for item in reversed(best)]


def _shortened(sentence: str) -> str:
    if len(sentence) <= _SENTENCE_MAX_CHARS:
        return sentence
    return sentence[:_SENTENCE_MAX_CHARS].rsplit(" ", 1)[0] + " …"
