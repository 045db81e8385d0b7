"""Query words: the content words of a search query, and the key under which two queries are the same.

One home for both, so the local index (which ORs the content words) and the per-run query log (which
must see "Subprocess timeout?" and "timeout, subprocess" as one search) agree on what a query says.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["MAX_QUERY_TERMS", "STOPWORDS", "query_key", "query_terms", "query_words", "singular"]

# A pasted paragraph would otherwise become a 200-term OR query; the first 32 distinct content words
# carry the question.
MAX_QUERY_TERMS = 32

# English function words. Dropping them keeps OR queries selective (see ARCHITECTURE: 130 ms -> 18 ms
# on 100k passages) without losing the content words a question is about.
_STOPWORD_TEXT = """
    a about above after again against all am an and any are aren arent as at be because been before
    being below between both but by can cannot could couldn did didn do does doesn doing don down during
    each few for from further had hadn has hasn have haven having he her here hers herself him himself
    his how i if in into is isn it its itself just let ll me might more most must mustn my myself no nor
    not now of off on once only or other ought our ours ourselves out over own re s same shall shan she
    should shouldn so some such t than that the their theirs them themselves then there these they this
    those through to too under until up us ve very was wasn we were weren what when where which while who
    whom why will with won would wouldn you your yours yourself yourselves
"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())

_WORD = re.compile(r"\w+")


def query_terms(query: str) -> list[str]:
    """The distinct content words of `query`, in order: lower-cased, stopwords and punctuation dropped."""
    text = unicodedata.normalize("NFKC", query).casefold()
    terms: list[str] = []
    for word in _WORD.findall(text):
        # `\w` admits "_" and a few marks the FTS5 tokenizer treats as separators; a term needs a letter
        # or digit, or it would be an empty phrase.
        if word in STOPWORDS or not any(ch.isalnum() for ch in word) or word in terms:
            continue
        terms.append(word)
        if len(terms) == MAX_QUERY_TERMS:
            break
    return terms


def query_words(query: str) -> frozenset[str]:
    """The content words of a query as a search engine sees them (`query_terms`), with a plural "s"
    folded away, so that "PEPs by Warsaw" and "Warsaw PEP" are the same search."""
    return frozenset(singular(word) for word in query_terms(query))


def query_key(query: str) -> str:
    """What a query asks for, whatever its case, punctuation, word order, repeated words, plurals or
    stopwords: its `query_words`, sorted. A query of stopwords only is keyed by its casefolded words."""
    words = query_words(query) or unicodedata.normalize("NFKC", query).casefold().split()
    return " ".join(sorted(words))


def singular(word: str) -> str:
    """A lower-case word with its English plural folded away: "peps" -> "pep", "cities" -> "city",
    "churches" -> "church" (not "class", "genus", "basis")."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith(("sses", "ches", "shes", "xes", "zes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word
