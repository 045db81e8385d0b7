"""What a question's wording says about the form of its answer, read in code (English only): a yes/no
question ("Are both … ?") is answered yes or no, and a question that names its candidates ("Which
novelist, J. G. Farrell or Louis Aragon, wrote …?") by one of them.

Used by planning (a yes/no question is never a list, a choice is not a list merge), and by the answer
schemas of agents and the synthesizer: the short answer to such a question is constrained to its
possible values, so a small model cannot give a passage's first sentence as its "short" answer.
"""

from __future__ import annotations

import re

from openheavy.types import JsonSchema

__all__ = [
    "QUANTITY_WORDS",
    "asks_for_a_list",
    "asks_for_one_thing",
    "conjunct_predicate",
    "conjunct_split",
    "conjuncts",
    "is_yes_no",
    "names_candidates",
    "proper_names",
    "short_answer_schema",
]

# English auxiliaries that open a yes/no question ("Are both … ?", "Did X … ?").
_YES_NO_OPENERS = frozenset(
    "is are was were am do does did can could has have had will would shall should may might must".split()  # noqa: SIM905
)
# Lower-case words that may stand inside a name ("First for Women", "Jean de La Fontaine").
_NAME_JOINERS = frozenset("of for the and de da del der di du la le van von y el al bin".split())  # noqa: SIM905
_CLAUSE_MARK = re.compile(r"([,:;?!])")
_OR = re.compile(r"\s+or\s+|^or\s+", re.IGNORECASE)
_OR_WORD = re.compile(r"\bor\b", re.IGNORECASE)
_AND = re.compile(r",?\s+and\s+", re.IGNORECASE)
_BOTH = re.compile(r"\s*,?\s+both\s+", re.IGNORECASE)
# Predicates that compare the names with each other: they hold of the pair, not of each name alone.
_COMPARES = re.compile(r"\b(?:same|different|similar|alike|each other|one another|together)\b", re.IGNORECASE)


def short_answer_schema(question: str, max_chars: int, *, optional: bool = False) -> JsonSchema:
    """The JSON schema of the short answer to `question`: one of the candidates it names, "yes" or "no"
    for a yes/no question ("Yes" or "No"), else any text up to `max_chars`. `optional`: "" is allowed too (the
    synthesizer may leave the short answer out)."""
    candidates = names_candidates(question)
    empty = [""] if optional else []
    if len(candidates) >= 2:
        return {"type": "string", "enum": [*(c[:max_chars] for c in candidates), *empty]}
    # "Is Qwirkle or Strange Synergy a card game?" opens like a yes/no question but asks which.
    if is_yes_no(question) and not _OR_WORD.search(question):
        return {"type": "string", "enum": ["Yes", "No", *empty]}
    return {"type": "string", "minLength": 0 if optional else 1, "maxLength": max_chars}


def names_candidates(question: str) -> list[str]:
    """The candidate answers a question names itself, in order: "Which novelist, J. G. Farrell or Louis
    Aragon, wrote …?" names J. G. Farrell and Louis Aragon. Candidates are names (capitalized words,
    numbers or quoted text) joined by "or", set off by a comma or colon; "PEPs that X authored or
    co-authored" names none."""
    pieces = _CLAUSE_MARK.split(question)  # text, mark, text, mark, …
    for at in range(0, len(pieces), 2):
        sides = [side.strip() for side in _OR.split(pieces[at].strip())]
        if len(sides) < 2:
            continue
        # "A, B, or C": earlier names stand in the pieces before, joined by commas.
        names = [side for side in sides if side]
        back = at
        while back >= 2 and pieces[back - 1] == "," and _is_name(pieces[back - 2].strip()):
            names.insert(0, pieces[back - 2].strip())
            back -= 2
        set_off = back == 0 or pieces[back - 1] in ",:"
        if set_off and len(names) >= 2 and all(_is_name(name) for name in names):
            return names
    return []


def conjuncts(question: str) -> list[str]:
    """The names a yes/no question asks the same thing of, one at a time: "Are Ranger Rick and Tennis
    both sports magazines?" and "Are both Duke Energy and Affiliated Managers Group based in
    Massachusetts?" ask it of two names, and the answer is yes only if it holds for each. [] for any
    other question, and for a predicate that compares the names ("both of the same nationality"), which
    holds of the pair, not of each alone."""
    return conjunct_split(question)[0]


def conjunct_predicate(question: str) -> str:
    """What such a question asks of each of its `conjuncts`: "sports magazines", "based in
    Massachusetts"; "" for any other question."""
    return conjunct_split(question)[1]


def conjunct_split(question: str) -> tuple[list[str], str]:
    """The `conjuncts` of a yes/no question and the predicate it asks of each; ([], "") for none."""
    text = question.strip().rstrip("?").strip()
    opener, _, rest = text.partition(" ")
    if opener.casefold() not in _YES_NO_OPENERS or _COMPARES.search(rest):
        return [], ""
    if rest.casefold().startswith("both "):  # "Are both A and B P"
        split = _AND.split(rest[5:], maxsplit=1)
        if len(split) < 2:
            return [], ""
        first, words = split[0], split[1].split()
        # the second name is the longest run of words that reads as a name, with a predicate after it
        for end in range(len(words) - 1, 0, -1):
            second = " ".join(words[:end]).rstrip(",")
            if _is_name(second):
                predicate = " ".join(words[end:])
                break
        else:
            return [], ""
    else:  # "Are A and B both P"
        pair = _BOTH.split(rest, maxsplit=1)
        if len(pair) < 2 or not pair[1].strip():
            return [], ""
        names = _AND.split(pair[0], maxsplit=1)
        if len(names) < 2:
            return [], ""
        (first, second), predicate = names, pair[1]
    first, second = first.strip().rstrip(","), second.strip().rstrip(",")
    if not (_is_name(first) and _is_name(second)) or first.casefold() == second.casefold():
        return [], ""
    return [first, second], predicate.strip()


# Question words that ask for one person, time, place or choice ("Who founded …?", "In which year …?").
_ONE_THING_OPENERS = frozenset({"who", "whom", "whose", "when", "where", "which"})
# "How many/much/long/old …" asks for a quantity, not an explanation.
QUANTITY_WORDS = frozenset("many much long old far big often large tall".split())  # noqa: SIM905
_LEADING_PREPOSITIONS = frozenset("in at on for from by of during to with under since".split())  # noqa: SIM905
# Words that ask for several things or an explanation, whatever the question word.
_MANY_OR_WHY = frozenset("every all list each both ways steps examples why explain describe compare".split())  # noqa: SIM905
_NOT_PLURAL = frozenset("was has is does series species news its this".split())  # noqa: SIM905


def asks_for_one_thing(question: str) -> bool:
    """Whether `question` asks for one name, date, place or number: it opens (after a preposition) with
    who, whom, when or where, with which, whose or what before a singular noun ("Which band …?", "What
    year …?"; not "Which PEPs …?" or "What is …?"), or with "how many/much/old …", or ends with such a
    question word ("… during what timeframe?"); and it asks for no list or explanation ("every", "all",
    "why" …)."""
    words = _words(question)
    if len(words) < 2 or _MANY_OR_WHY.intersection(words):
        return False
    if words[0] in _LEADING_PREPOSITIONS:
        words = words[1:]
    if words[0] == "how":
        return words[1] in QUANTITY_WORDS
    if words[0] in ("which", "whose", "what"):
        # "What year …", "Which band …": a noun after it; "What is …", "What does … do" may explain
        return words[1] not in _YES_NO_OPENERS and not _plural(words[1])
    if words[0] in _ONE_THING_OPENERS:
        return True
    # the question word at the end: "… managed Manchester United during what timeframe?"
    for at in range(max(0, len(words) - 4), len(words)):
        if words[at] in ("what", "which", "whom", "when", "where"):
            return at + 1 == len(words) or not _plural(words[at + 1])
    return False


# Verbs that open a request for every item of a kind ("List all …", "Enumerate …").
_LIST_VERBS = frozenset("list enumerate catalog catalogue itemize tabulate".split())  # noqa: SIM905
# Verbs that ask for items when "all", "every" or "each" follows ("Name every …", "Give all …").
_GATHER_VERBS = frozenset("name give find show identify collect gather map".split())  # noqa: SIM905
_WHOLE = re.compile(
    r"\b(?:complete|full|exhaustive|comprehensive)\s+(?:list|map|catalog(?:ue)?|inventory|index|set|overview)\b",
    re.IGNORECASE,
)


def asks_for_a_list(question: str) -> bool:
    """Whether `question` asks for every item of a kind: it opens with a listing verb ("List all
    Informational PEPs …", "Enumerate …"), asks for a complete list, map or inventory ("Make a complete
    map of the PEPs …"), or opens with "Name/Give/Find … every/all/each". A yes/no, how or why question
    is never one, whatever it contains ("Is there a complete list of …?")."""
    words = _words(question)
    if not words or is_yes_no(question) or words[0] in ("how", "why"):
        return False
    if words[0] in _LIST_VERBS or _WHOLE.search(question):
        return True
    return words[0] in _GATHER_VERBS and bool({"all", "every", "each"} & set(words[1:4]))


def _words(question: str) -> list[str]:
    """The question's words, case-folded, without the quotes and punctuation around them."""
    words = (w.strip("\"'“”‘’,.?!:;()").casefold() for w in question.split())
    return [w for w in words if w]


def _plural(noun: str) -> bool:
    return len(noun) > 3 and noun.endswith("s") and not noun.endswith("ss") and noun not in _NOT_PLURAL


def is_yes_no(question: str) -> bool:
    """Whether `question` opens with an English auxiliary ("Are both … ?", "Did X … ?"): a yes/no
    question."""
    words = question.strip().split(maxsplit=1)
    return bool(words) and words[0].casefold() in _YES_NO_OPENERS


def _is_name(text: str) -> bool:
    if len(text) >= 2 and text[0] in "\"“'" and text[-1] in "\"”'":
        return True
    words = text.split()
    if not 1 <= len(words) <= 6:
        return False
    starts = [w for w in words if w.casefold() not in _NAME_JOINERS]
    return (
        bool(starts)
        and all(w[0].isupper() or w[0].isdigit() for w in starts)
        and (words[0][0].isupper() or words[0][0].isdigit())
    )


_SENTENCE_END = re.compile(r"[.!?:;]\s+")
_IN_ONE_NAME = _NAME_JOINERS - {"and"}  # "A and B" is two names
_TOKEN = re.compile(r"[^\W\d_][\w'’-]*|\S")


def proper_names(question: str, *, opening: bool = False) -> list[str]:
    """The names a request spells with capitals, in order: runs of capitalized words that do not open a
    sentence, joined by name words such as "of" or "de" ("every PEP in the Packaging topic whose status
    is Deferred" names PEP, Packaging and Deferred; "PEPs that Łukasz Langa authored" names PEPs and
    Łukasz Langa). A request's names are what every item of its answer is about.

    `opening`: a sentence's first word starts a name too when the next word is capitalized and it is
    not a question or request word ("Andrew Jaspan was the co-founder of …?" names Andrew Jaspan, not
    Jaspan; "Which Nobel laureate …" still names no "Which")."""
    names: list[str] = []
    for sentence in _SENTENCE_END.split(question):
        tokens = _TOKEN.findall(sentence)
        run: list[str] = []
        for at, token in enumerate([*tokens, ""]):
            capital = token[:1].isupper() and (at > 0 or (opening and _opens_a_name(tokens)))
            if capital or (run and token.casefold() in _IN_ONE_NAME and at + 1 < len(tokens)):
                run.append(token)
                continue
            while run and run[-1].casefold() in _IN_ONE_NAME:
                run.pop()
            if run:
                names.append(" ".join(run))
            run = []
    return list(dict.fromkeys(names))


# Words that open a question or request rather than a name ("Which …", "List …", "The …").
_NOT_NAME_OPENERS = (
    _YES_NO_OPENERS
    | _ONE_THING_OPENERS
    | _LIST_VERBS
    | _GATHER_VERBS
    | _LEADING_PREPOSITIONS
    | frozenset("what how why the a an make every all each tell explain describe compare".split())  # noqa: SIM905
)


def _opens_a_name(tokens: list[str]) -> bool:
    """Whether a sentence's first two tokens are both capitalized words and the first is not one that
    opens a question or request."""
    return (
        len(tokens) > 1
        and tokens[1][:1].isupper()
        and tokens[0][:1].isupper()
        and tokens[0].casefold() not in _NOT_NAME_OPENERS
    )
