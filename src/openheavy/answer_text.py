"""Checks and repairs of a model's free-text answer: degenerate repetition cut, text ended at a sentence,
the direct answer led with. Pure functions over strings; every repair is returned as an `Edit`, which the
caller records in the trace.

Greedy decoding by small models loops: one sentence, or a run of words, again and again until the length
bound stops it mid-word. The backend's anti-repetition sampling (llama.cpp's DRY) makes that rarer; this
module removes what is left, and `answer_problems` reports what a grader should count.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from openheavy.citations import cited_numbers, renumber_markers
from openheavy.normalize import normalize_answer
from openheavy.question_forms import names_candidates
from openheavy.search.terms import STOPWORDS

__all__ = [
    "Edit",
    "answer_problems",
    "attach_markers",
    "cut_repetition",
    "drop_copied_sentences",
    "drop_note_talk",
    "drop_restated_lead",
    "echoes_question",
    "end_at_sentence",
    "ends_mid_sentence",
    "ends_sentence",
    "join_split_sentence",
    "keep_named_subject",
    "lead_with",
    "leading_yes_no",
    "repair_free_text",
    "restates_question",
    "settle_short",
]

# A sentence shorter than this may repeat on purpose ("Yes." ... "Yes."); a longer one does not.
MIN_REPEATED_SENTENCE_WORDS = 5
# A run of words said again right after itself is a loop once the repeats hold this many words.
MIN_LOOP_WORDS = 8
MAX_LOOP_PERIOD = 40  # words in one turn of the loop

_FENCE = re.compile(r"^[ \t]*(```|~~~)", re.MULTILINE)
# The end of a sentence: . ! or ? (then closing quotes or brackets, then citation markers) before a
# space or the end. "subprocess.run" and "3.5" hold no sentence end: no space follows their dot.
_SENTENCE_END = re.compile(r"[.!?…][\"')\]]*(?:[ \t]*\[\d+(?:\s*,\s*\d+)*\])*(?=\s|$)")
_WORD = re.compile(r"\w+")
# Words whose dot ends no sentence: initials ("J. G. Farrell") are caught by their length.
_ABBREVIATIONS = frozenset({"e.g", "i.e", "etc", "vs", "mr", "mrs", "ms", "dr", "st", "jr", "sr", "no", "cf"})
_FINAL_END = re.compile(r"(?:[.!?…][\"')\]]*|\[\d+(?:\s*,\s*\d+)*\])\s*$")


@dataclass(frozen=True)
class Edit:
    """One repair of an answer's text, as the trace records it."""

    kind: str  # "repetition_cut", "sentence_end", "markers_added", "short_answer_led",
    # "short_answer_dropped", "short_answer_cut", "answer_dropped", "short_answer_from_code",
    # "answer_joined", "note_talk_cut", "yes_not_grounded", "choice_grounded" (`grounding`),
    # "short_answer_trimmed", "instructions_cut"
    detail: str
    removed_chars: int = 0

    def to_record(self) -> dict[str, object]:
        return {"kind": self.kind, "detail": self.detail, "removed_chars": self.removed_chars}


def _prose_spans(text: str) -> Iterator[tuple[int, int]]:
    """The spans of `text` outside fenced code blocks (code may repeat lines and ends no sentence)."""
    start, inside = 0, False
    for fence in _FENCE.finditer(text):
        if not inside:
            yield start, fence.start()
        else:
            line_end = text.find("\n", fence.end())
            start = len(text) if line_end < 0 else line_end + 1
        inside = not inside
    if not inside:
        yield start, len(text)


def _open_fence(text: str) -> bool:
    return len(_FENCE.findall(text)) % 2 == 1


def _sentences(text: str) -> Iterator[tuple[int, int]]:
    """The spans of the sentences of the prose of `text` (lines end sentences too)."""
    for start, end in _prose_spans(text):
        begin = start
        for match in re.finditer(_SENTENCE_END.pattern + r"|\n", text[start:end]):
            stop = start + match.end()
            if text[begin:stop].strip():
                yield begin, stop
            begin = stop
        if text[begin:end].strip():
            yield begin, end


def _repeated_sentence(text: str) -> tuple[int, str] | None:
    """Where a sentence of the prose first repeats an earlier one, with that sentence."""
    seen: set[str] = set()
    for start, end in _sentences(text):
        key = normalize_answer(renumber_markers(text[start:end], {}))
        if len(key.split()) < MIN_REPEATED_SENTENCE_WORDS:
            continue
        if key in seen:
            return start + len(text[start:end]) - len(text[start:end].lstrip()), text[start:end].strip()
        seen.add(key)
    return None


def _word_loop(text: str) -> tuple[int, str] | None:
    """Where a run of words said again right after itself (at least `MIN_LOOP_WORDS` words of repeats)
    starts its first repeat, with the words of one turn; None when there is no such run."""
    for span_start, span_end in _prose_spans(text):
        matches = list(_WORD.finditer(text, span_start, span_end))
        tokens = [m.group().casefold() for m in matches]
        for i in range(len(tokens)):
            for period in range(1, min(MAX_LOOP_PERIOD, (len(tokens) - i) // 2) + 1):
                turn, repeats = tokens[i : i + period], 0
                while turn == tokens[i + (repeats + 1) * period : i + (repeats + 2) * period]:
                    repeats += 1
                if repeats and repeats * period >= MIN_LOOP_WORDS:
                    return matches[i + period].start(), " ".join(turn)
    return None


def cut_repetition(text: str) -> tuple[str, Edit | None]:
    """`text` up to its first degenerate repetition (a sentence said again, or a run of words said again
    right after itself), with the `Edit`; `text` unchanged and None when it does not repeat itself.
    Fenced code is never searched: code may repeat lines on purpose."""
    found = [cut for cut in (_repeated_sentence(text), _word_loop(text)) if cut is not None]
    if not found:
        return text, None
    where, what = min(found)
    kept = text[:where].rstrip()
    return kept, Edit("repetition_cut", f"repeats: {what[:120]}", len(text) - len(kept))


# A displayed LaTeX formula closed at the very end of a text: "\\]", "$$", or "\\end{…}".
_CLOSED_MATH = re.compile(r"(?:\\\]|\$\$|\\end\{[a-z*]+\})$")


def ends_mid_sentence(text: str) -> bool:
    """Whether `text` stops inside a sentence: it does not end with a sentence end (a citation marker
    counts), a closed code block, a closed displayed formula, a list item or a heading. A bare short
    answer ("Paris", "yes", fewer than six words) never does."""
    stripped = text.rstrip()
    if not stripped:
        return False
    if _open_fence(stripped):
        return True
    last_line = stripped.splitlines()[-1].strip()
    if _FENCE.match(last_line) or re.match(r"([-*+]|\d+[.)]|#+)\s", last_line):
        return False
    if _CLOSED_MATH.search(stripped):  # a displayed formula, closed: "… is:\n\\[ \\boxed{324} \\]"
        return False
    if len(_WORD.findall(stripped)) < 6:
        return False
    return _FINAL_END.search(stripped) is None


def end_at_sentence(text: str) -> tuple[str, Edit | None]:
    """`text` ended at its last sentence boundary (a sentence end, a line end, or complete code lines
    with the code block closed), for text that a length bound or a cut left unfinished. When it has no
    boundary at all it is kept whole and marked with "…". None when it already ends well."""
    if not ends_mid_sentence(text):
        return text, None
    stripped = text.rstrip()
    boundary = 0
    for match in re.finditer(_SENTENCE_END.pattern + r"|\n", stripped):
        if match.end() < len(stripped):
            boundary = match.end()
    if boundary == 0:
        return stripped + " …", Edit("sentence_end", "no sentence boundary: marked as cut")
    kept = stripped[:boundary].rstrip()
    if _open_fence(kept):
        kept += "\n```"
    return kept, Edit("sentence_end", f"ended at the last sentence: …{kept[-60:]}", len(stripped) - len(kept))


def repair_free_text(text: str, *, cut_off: bool) -> tuple[str, list[Edit]]:
    """`text` with its degenerate repetition cut and, when that cut left it unfinished or it may have been
    stopped early (`cut_off`: a length bound, or an answer field the model may close mid-sentence),
    ended at its last sentence; with the edits made (none for text that needed none). Free text whose
    end is the final answer ("… #### 18", a direct answer) passes `cut_off` only when a bound cut it."""
    edits: list[Edit] = []
    text, cut = cut_repetition(text)
    if cut is not None:
        edits.append(cut)
    if cut is not None or cut_off:
        text, ended = end_at_sentence(text)
        if ended is not None:
            edits.append(ended)
    return text, edits


def lead_with(short: str, detail: str) -> tuple[str, Edit | None]:
    """The answer a reader sees: the short, direct answer first, then the explanation — unless the
    explanation already begins with it, or leading with it would make the answer say the same words
    twice in a row (a short answer that is a sentence the explanation opens with: "The state of Florida
    still has the largest number of stores" before "Florida still has the largest number of stores, …")."""
    short, detail = " ".join(short.split()), detail.strip()
    unmarked = normalize_answer(renumber_markers(detail, {}))
    if not short or unmarked.startswith(normalize_answer(renumber_markers(short, {}))):
        return detail, None
    if not detail:
        return short, None
    led = f"{short}\n\n{detail}"
    if cut_repetition(led)[1] is not None and cut_repetition(detail)[1] is None:
        return detail, None
    return led, Edit("short_answer_led", f"led with the short answer: {short}")


# "Yes" or "No" as a word of its own, then punctuation or the end: "No information was found" is not one.
_YES_NO = re.compile(r"^(yes|no)(?=[,.;:!]|$)", re.IGNORECASE)


def leading_yes_no(text: str) -> str | None:
    """ "Yes" or "No" when `text` opens with it as an answer ("Yes, both are magazines." -> "Yes"), else
    None: the answer to a yes/no question is that word, whatever the sentence after it restates."""
    match = _YES_NO.match(text.strip())
    return match[1] if match else None


# A short answer restates the question when it has at least this many words, every one of them the
# question's (or a form of one: "directed" for "direct"), and it repeats at least half of the question's
# words. "Louis Aragon" for "Which novelist, J. G. Farrell or Louis Aragon, wrote …?" is a choice, not a
# restatement: it covers little of the question; "The sum of squares is 385" adds the answer.
RESTATED_MIN_WORDS = 4
RESTATED_COVERAGE = 0.5  # of the question's words that the short answer repeats
_STEM_CHARS = 4  # words sharing a start this long, one the other's prefix, are forms of one word


# Function words a rephrasing adds ("To run a subprocess …" for "How do I run a subprocess …?").
_FILLER = frozenset({"to", "of", "in", "on", "for", "is", "are", "you", "can", "i"})


def _all_asked(words: Sequence[str], asked: set[str]) -> bool:
    """Whether every one of `words` (normalized) is a filler word or one of the question's `asked`."""
    return all(word in _FILLER or _from_question(word, asked) for word in words)


def _from_question(word: str, asked: set[str]) -> bool:
    if word in asked:
        return True
    return len(word) >= _STEM_CHARS and any(
        len(other) >= _STEM_CHARS and (word.startswith(other) or other.startswith(word)) for other in asked
    )


def restates_question(short: str, question: str) -> bool:
    """Whether `short` only repeats the question instead of answering it ("The movie Pitof directed which
    had an action-adventure tie-in video game" for "What movie did Pitof direct which had …?"): small
    models fill the short-answer field with the question's words when they have not found the answer."""
    words = normalize_answer(renumber_markers(short, {})).split()
    if _opens_question(words, question):
        return True
    asked = set(normalize_answer(question).split())
    if len(words) < RESTATED_MIN_WORDS or not asked or not _all_asked(words, asked):
        return False
    return len(asked & set(words)) / len(asked) >= RESTATED_COVERAGE


def echoes_question(short: str, question: str) -> bool:
    """Whether `short` holds no word of its own: every word is the question's (or a form of one), so it
    names nothing the question did not ("Pitof 2004 movie" for "What movie did Pitof direct … in 2004?",
    "1435" for "When was the palace founded at which Columba de Dunbar died in 1435?"), however short.
    Yes or no, and a candidate the question names ("Louis Aragon" for "Which novelist, J. G. Farrell or
    Louis Aragon, …?"), are answers."""
    said = normalize_answer(renumber_markers(short, {}))
    words = said.split()
    if not words or said in {"yes", "no"}:
        return False
    if not _all_asked(words, set(normalize_answer(question).split())):
        return False
    return said not in {normalize_answer(candidate) for candidate in names_candidates(question)}


def _opens_question(words: list[str], question: str) -> bool:
    """Whether `words` (normalized) are the question's own opening words: "write a detailed persuasive
    essay" for the request "Write a detailed persuasive essay arguing …" is its verb phrase, not an
    answer; unless the question opens with the candidates it names ("New York or Boston: which …?")."""
    opening = normalize_answer(question).split()
    if len(words) < 2 or words != opening[: len(words)]:
        return False
    return " ".join(words) not in {normalize_answer(candidate) for candidate in names_candidates(question)}


# Words that join a restated question to the answer after it ("Andrew Jaspan was the co-founder of …",
# "Art Laboe and Scout Tufankjian are both …"): a restated lead must end with one of them, so that a name
# that opens with the question's words ("New York University" for a question naming New York) is kept.
_COPULAS = frozenset({"is", "was", "are", "were", "be", "been", "has", "had", "have"})
_LINK_WORDS = _COPULAS | {"both", "of", "in", "on", "at", "by", "for", "to", "as", "from", "with", "into"}
# Words a restated lead may hold besides the question's own and the link words: articles and possessives.
_LEAD_FILLER = frozenset({"the", "a", "an", "his", "her", "its", "their"})
_ARTICLES = frozenset({"the", "a", "an"})
# A lead restates the question when it repeats at least this many of its content words.
RESTATED_LEAD_MIN_WORDS = 2
_TOKEN = re.compile(r"\S+")


def drop_restated_lead(short: str, question: str) -> tuple[str, Edit | None]:
    """`short` without a lead that only restates the question. Small models answer in a sentence that
    says the question again before the answer: "Andrew Jaspan was the co-founder of 'The Conversation'"
    for "Andrew Jaspan was the co-founder of what not-for-profit media outlet?", "The squadron was
    assigned to the USS Essex"; a reader asked for "'The Conversation'", and an exact-match grader or a
    vote across agents compares the answers, not the question's words around them.

    The lead is the longest run of opening words that are each the question's (or a form of one,
    `_from_question`), a link word ("was", "of", "both" …) or an article or possessive, holding at least
    `RESTATED_LEAD_MIN_WORDS` of the question's content words and a copula ("is", "was", "has" …: a
    statement, where "To split a shell command line into …" for "How do I split …?" begins the answer's
    sentence), and ending with a link word (the article before the answer stays with it). It is dropped
    only when what follows holds a word the question does not, and never for a question that offers
    candidates, or may ("Who was born first, X or Y?", "Who was a more acclaimed guitarist Stephen
    Christian or Joe Gooch?": its names are the answers, and "Joe Gooch is …" opens with one)."""
    asked = set(normalize_answer(question).split())
    if names_candidates(question) or "or" in asked:
        return short, None
    tokens = list(_TOKEN.finditer(short))
    lead_end = -1  # index of the lead's last token
    content = 0
    stated = False  # whether a copula came: the lead is a clause ("… was …"), not a phrase ("To split …")
    for index, token in enumerate(tokens):
        words = normalize_answer(token[0]).split()
        if not all(w in _LINK_WORDS or w in _LEAD_FILLER or _from_question(w, asked) for w in words):
            break
        content += sum(1 for w in words if w not in _LINK_WORDS and w not in _LEAD_FILLER)
        stated = stated or any(w in _COPULAS for w in words)
        if words and words[-1] in _LINK_WORDS and stated and content >= RESTATED_LEAD_MIN_WORDS:
            lead_end = index
    if lead_end < 0 or lead_end + 1 >= len(tokens):
        return short, None
    rest = short[tokens[lead_end + 1].start() :].strip()
    if all(
        _from_question(w, asked) or w in _LINK_WORDS | _LEAD_FILLER for w in normalize_answer(rest).split()
    ):
        return short, None
    lead = short[: tokens[lead_end].end()]
    return rest, Edit(
        "short_answer_trimmed", f'the short answer restated the question first: "{lead}"', len(lead)
    )


# The copula after a short answer's subject ("The Conversation is an independent … media outlet"), and
# questions whose answer is a value in the predicate, not the subject ("When was …", "How many …",
# "What year …": "Paul Manafort was born April 1, 1949" answers with its date).
_SUBJECT_COPULA = re.compile(r"\s+(?:is|was|are|were)\s+")
_ASKS_FOR_A_VALUE = re.compile(
    r"\b(?:when|where|how|why|what\s+(?:year|date|day|month|time|age|number|percentage|population))\b",
    re.IGNORECASE,
)
# The words a named subject may not begin with: pronouns and demonstratives name nothing.
_NOT_A_NAME = frozenset("he she it they we you i this that these those there here his her its their".split())  # noqa: SIM905
SUBJECT_MAX_WORDS = 6


def keep_named_subject(short: str, question: str) -> tuple[str, Edit | None]:
    """`short` cut to its subject when it is a sentence whose predicate restates the question about a
    subject the question does not name: "The Conversation is an independent, not-for-profit media
    outlet" for "Andrew Jaspan was the co-founder of what not-for-profit media outlet?" answers "The
    Conversation". Small models copy the read sentence that defines the answer; a reader, a vote
    across agents and an exact-match grader want the name. The mirror of `drop_restated_lead`, which
    drops a lead that restates the question before the answer.

    The subject is what comes before the first "is", "was", "are" or "were": at most
    `SUBJECT_MAX_WORDS` words, capitalized (a name), with no pronoun first and no content word of the
    question (or a form of one: then the question names it, "Paul Manafort was born …"). The predicate
    must hold one of the question's content words. Never for a question that asks for a value the
    predicate states (when, where, how, what year …)."""
    match = _SUBJECT_COPULA.search(short)
    if match is None or _ASKS_FOR_A_VALUE.search(question):
        return short, None
    subject = short[: match.start()].strip(" ,;:")
    words = normalize_answer(subject).split()
    if not subject[:1].isupper() or not words or len(words) > SUBJECT_MAX_WORDS or words[0] in _NOT_A_NAME:
        return short, None
    asked = set(normalize_answer(question).split()) - STOPWORDS
    if any(_from_question(word, asked) for word in words if word not in STOPWORDS):
        return short, None
    predicate = normalize_answer(short[match.end() :]).split()
    if not any(word not in STOPWORDS and _from_question(word, asked) for word in predicate):
        return short, None
    said = short[match.start() :].strip()
    return subject, Edit(
        "short_answer_trimmed", f'the short answer went on to restate the question: "{said}"', len(said)
    )


# Where a short answer cut at its length bound is ended, when no sentence ends in it: its first clause's.
_SHORT_CLAUSE_END = re.compile(r"\s*(?:[,;:(]|\s[-–—]\s)")


def ends_sentence(text: str, at: int) -> bool:
    """Whether the full stop (or ! ?) at `text[at]` ends a sentence: not after an initial ("J. G.", "(b.
    20 April 1952)") or a common abbreviation ("e.g.")."""
    before = text[:at].split()
    last = before[-1].casefold().lstrip("([{\"'") if before else ""
    return text[at] != "." or not (len(last) == 1 or last in _ABBREVIATIONS)


# A text that is wholly one "<…>" slot is a copy of a format's placeholder ("<the direct answer alone>"),
# never an answer: small models copy the example action of their instructions word for word.
_PLACEHOLDER = re.compile(r"^<[^<>\n]{1,80}>$")


def is_placeholder(text: str) -> bool:
    """Whether `text` only copies a format's placeholder ("<your answer>") instead of filling it."""
    return bool(_PLACEHOLDER.match(text.strip()))


# A short answer copies the instructions when it holds this many words in a row of the text the agent
# was instructed with (not the question, not the data it read): "The county shares the most words with
# the question." from the hint "[1] shares the most words with the question", seen on MuSiQue.
COPIED_RUN_WORDS = 6
# An answer's sentence copies the instructions when this share of its words stands in such runs.
COPIED_SENTENCE_SHARE = 0.75
# … counted over its words that are neither the question's nor the read data's, when this many are left.
COPIED_MIN_WORDS = 4
# The grammar stops a string short of its bound too: when no next token fits the characters left, the
# model may only close it ("… media outlet The Convers", 79 of 80). A string this close to the bound
# that does not end as a sentence or a quote does was stopped there (101 of 201 such short answers in
# the stored runs: "… drafted in the 7th round of the 1959 NFL Draft by the New").
BOUND_SLACK = 6
_CLOSED_END = tuple(".!?…)]\"'")
_UNTRUSTED_BLOCK = re.compile(r"<(data-[0-9a-f]{8})>.*?</\1>", re.DOTALL)
# Citation markers: "open [1] before you answer" is copied as "open [2] before you answer" too.
_MARKERS = re.compile(r"\[\d+(?:\s*,\s*\d+)*\]")


def _instruction_runs(instructions: Sequence[str], question: str) -> set[tuple[str, ...]]:
    """Every run of `COPIED_RUN_WORDS` words of the `instructions`, casefolded, with their fenced data
    blocks and the question's words removed first (quoting a document or the question is no copy)."""
    runs: set[tuple[str, ...]] = set()
    for prompt in instructions:
        for part in _UNTRUSTED_BLOCK.split(prompt)[::2]:  # split() also returns each block's tag
            for piece in part.split(question) if question else [part]:
                own = [w.casefold() for w in _WORD.findall(_MARKERS.sub(" ", piece))]
                runs.update(
                    tuple(own[i : i + COPIED_RUN_WORDS]) for i in range(len(own) - COPIED_RUN_WORDS + 1)
                )
    return runs


def copied_instructions(text: str, instructions: Sequence[str], question: str) -> str | None:
    """The first stretch of at least `COPIED_RUN_WORDS` words of `text` that stands, word for word, in the
    `instructions` (the run's own prompts: fenced data blocks and the question's words removed first, so
    that quoting a document or the question is no copy); None when there is none."""
    words = [w.casefold() for w in _WORD.findall(_MARKERS.sub(" ", text))]
    if len(words) < COPIED_RUN_WORDS:
        return None
    asked = {w.casefold() for w in _WORD.findall(question)}
    runs = _instruction_runs(instructions, question)
    n = COPIED_RUN_WORDS
    for i in range(len(words) - n + 1):
        run = tuple(words[i : i + n])
        if run in runs and not set(run) <= asked:
            end = i + n  # the copy goes on as long as each next word keeps a run of the instructions
            while end < len(words) and tuple(words[end - n + 1 : end + 1]) in runs:
                end += 1
            return " ".join(words[i:end])
    return None


def _copied_share(sentence: str, runs: set[tuple[str, ...]], own: set[str]) -> float:
    """The share of `sentence`'s words that are not `own` (the question's and the read data's: an
    answer's own words, whatever else says them too) inside a run of the instructions; 0 when fewer than
    `COPIED_MIN_WORDS` of its words are not its own."""
    words = [w.casefold() for w in _WORD.findall(_MARKERS.sub(" ", sentence))]
    n = COPIED_RUN_WORDS
    covered = [False] * len(words)
    for i in range(len(words) - n + 1):
        if tuple(words[i : i + n]) in runs:
            covered[i : i + n] = [True] * n
    told = [hit for word, hit in zip(words, covered, strict=True) if word not in own]
    return sum(told) / len(told) if len(told) >= COPIED_MIN_WORDS else 0.0


def drop_copied_sentences(
    text: str, instructions: Sequence[str], question: str, *, written: Sequence[str] = ()
) -> tuple[str, Edit | None]:
    """`text` without the sentences that copy what its writer was told rather than what it read: a small
    model carries an observation's hint into its answer ("The question asks about Ranger Rick too, and
    you have not read about it yet: open [1] before you answer.", HotpotQA-50 r13), which would reach the
    reader and the synthesizer's notes as if it were a finding. A sentence goes when, of its words that
    are neither the question's, nor in the data the writer read (fenced blocks of the `instructions`),
    nor in what it has `written` before (its earlier actions, which a message may quote back to it: "you
    wrote that … is still missing"), at least `COPIED_MIN_WORDS` are left and `COPIED_SENTENCE_SHARE`
    of them stand in runs of `COPIED_RUN_WORDS` words of the `instructions` (`copied_instructions`). So
    an answer that restates a sub-task it was given ("The director of this American crime film … is
    David Ayer.") stays: its words are the question's and the pages'. A text that is nothing but such
    sentences is left whole, so that a run never loses its only answer unseen."""
    runs = _instruction_runs(instructions, question)
    if not runs:
        return text, None
    own = {w.casefold() for piece in (question, *written) for w in _WORD.findall(piece)}
    for prompt in instructions:
        for block in _UNTRUSTED_BLOCK.finditer(prompt):
            own.update(w.casefold() for w in _WORD.findall(block[0]))
    spans = [
        (start, end)
        for start, end in _sentences(text)
        if _copied_share(text[start:end], runs, own) >= COPIED_SENTENCE_SHARE
    ]
    if not spans:
        return text, None
    kept_parts, last = [], 0
    for start, end in spans:
        kept_parts.append(text[last:start])
        last = end
    kept_parts.append(text[last:])
    kept = re.sub(r"[ \t]+\n", "\n", "".join(kept_parts)).strip()
    if not _WORD.search(_MARKERS.sub(" ", kept)):
        return text, None
    dropped = " ".join(text[start:end].strip() for start, end in spans)
    return kept, Edit(
        "instructions_cut", f'the answer copied its instructions: "{dropped}"', len(text) - len(kept)
    )


def filled_bound(short: str, max_chars: int) -> bool:
    """Whether the short answer was stopped by its length bound (`max_chars`, or within `BOUND_SLACK`
    of it without an ending), measured as written: the bound applies to the raw string."""
    return len(short) >= max_chars or (
        len(short) >= max_chars - BOUND_SLACK and not short.rstrip().endswith(_CLOSED_END)
    )


# A short answer of this many words is a sentence begun, not a bare answer.
SPLIT_SENTENCE_MIN_WORDS = 6
# Text that opens mid-sentence: a lower-case word, or a code span ("`subprocess.run()` function …").
_OPENS_MID_SENTENCE = re.compile(r"^(?:[a-z]|`(?!``))")
_SENTENCE_CLOSED = re.compile(r"[.!?…][\"')\]]*\s*$")


# The synthesizer's own scaffolding said to the reader: "Both notes agree that deep copy …". Its words
# are the prompt's (notes, agents, sources), whatever the question.
_NOTE_TALK = re.compile(
    r"^(?:both|all|the|these|(?:two|three|four|five|six|seven|eight) of the)\s+(?:\w+\s+)?"
    r"(?:notes|agents|sources)\s+(?:all\s+)?(?:agree|say|state|show|confirm|report)s?(?:\s+that)?\s*[:,]?\s+",
    re.IGNORECASE,
)


def drop_note_talk(text: str) -> tuple[str, Edit | None]:
    """`text` without an opening that talks about the notes rather than the question ("Both notes agree
    that deep copy creates …" -> "Deep copy creates …"): the reader asked about deep copy, not about
    the synthesizer's inputs, which the trace shows."""
    match = _NOTE_TALK.match(text.lstrip())
    if match is None:
        return text, None
    rest = text.lstrip()[match.end() :]
    if not rest:
        return text, None
    kept = rest[0].upper() + rest[1:]
    return kept, Edit(
        "note_talk_cut", f'the answer talked about its notes: "{match[0].strip()}"', match.end()
    )


def join_split_sentence(short: str, answer: str, *, max_chars: int) -> tuple[str, Edit | None]:
    """`answer` with the sentence its writer began in the short answer. Small models write the answer's
    first sentence from the "short" field on: the short answer stops at its bound ("To run a subprocess
    with a timeout and capture its output, use the `subprocess`'") and the answer goes on from there
    ("`subprocess.run()` function with the `timeout` parameter …"), so alone it opens mid-sentence. When
    the short answer is a sentence begun (`SPLIT_SENTENCE_MIN_WORDS` words or more, no sentence end)
    and the answer goes on with as many words, opening mid-sentence (a lower-case word or a code span,
    not a fenced block), the answer is the short one's
    words, less the last when the bound cut it (it may be cut mid-word), then the answer."""
    words = short.split()
    text = answer.lstrip()
    begun = len(words) >= SPLIT_SENTENCE_MIN_WORDS and not _SENTENCE_CLOSED.search(short)
    # "left-hand batsman" after a sentence in the short field is a bare answer, not the sentence's end
    goes_on = len(text.split()) >= SPLIT_SENTENCE_MIN_WORDS and _OPENS_MID_SENTENCE.match(text)
    if not begun or not goes_on:
        return answer, None
    kept = words[:-1] if filled_bound(short, max_chars) else words
    lead = " ".join(kept)
    return f"{lead} {text}", Edit("answer_joined", f'the answer went on from its short answer: "{lead}"')


def settle_short(
    short: str, question: str, *, max_chars: int, instructions: Sequence[str] = ()
) -> tuple[str, Edit | None]:
    """The short answer a run leads with, votes on and is graded on, from the one the model wrote:
    markers and extra spaces gone; a leading "Yes,"/"No," alone; "" when it only restates the question;
    and when it filled its schema's length bound (`max_chars`, or within `BOUND_SLACK` of it without an
    ending: the grammar stopped it mid-word), kept up
    to the end of its first sentence, else of its first clause, since the direct answer comes first
    ("Louis Aragon, who wrote … and was a leading member of the Sur" gives "Louis Aragon"), or dropped
    when it has none; "" when it copies a placeholder, or words of the writer's `instructions`
    (`copied_instructions`); without a lead that restates the question (`drop_restated_lead`), or cut
    to its subject when what follows it restates the question (`keep_named_subject`). What
    changed is the returned `Edit`."""
    filled = filled_bound(short, max_chars)
    short = " ".join(renumber_markers(short, {}).split())
    if is_placeholder(short):
        return "", Edit("short_answer_dropped", f"the short answer copies the format's placeholder: {short}")
    if copied_instructions(short, instructions, question) is not None:
        return "", Edit("short_answer_dropped", f'the short answer copies the instructions: "{short}"')
    yes_no = leading_yes_no(short)
    if yes_no is not None:
        return yes_no, None
    if filled:
        ends = [m.end() for m in _SENTENCE_END.finditer(short) if ends_sentence(short, m.start())]
        # A clause mark the bound stopped right after ends nothing known: "… recursively copies all,"
        # may have gone on "… all nested objects".
        ends = ends or [m.start() for m in _SHORT_CLAUSE_END.finditer(short) if short[m.end() :].strip()]
        kept = short[: ends[0]].strip() if ends else ""
    else:
        kept = short
    # after the cut: the first clause of "To run a subprocess with a timeout …, use …" only restates
    if restates_question(kept, question) or (filled and not kept):
        why = "repeats the question" if kept else f"was cut at {max_chars} characters"
        return "", Edit("short_answer_dropped", f"the short answer {why}: {short}")
    kept, trimmed = drop_restated_lead(kept, question)
    if trimmed is None:
        kept, trimmed = keep_named_subject(kept, question)
    if not filled:
        return kept, trimmed
    lead = " and its lead restating the question dropped" if trimmed is not None else ""
    return kept, Edit(
        "short_answer_cut",
        f"the short answer was cut at {max_chars} characters{lead}: kept {kept!r}",
        len(short) - len(kept),
    )


def attach_markers(text: str, titles: Mapping[int, str]) -> tuple[str, Edit | None]:
    """`text` with a marker `[n]` for each cited source `n` (`titles`: number -> title) that it never
    marks, for answers whose writer listed its sources but marked no claim. The marker goes at the end
    of the sentence that names the most words of that source's title which the other cited titles do not
    share; when no sentence names any, it stands after the last sentence on its own (supporting the
    answer as a whole, not one claim)."""
    unmarked = [number for number in titles if number not in cited_numbers(text)]
    sentences = list(_sentences(text))
    if not unmarked or not sentences:
        return text, None
    words = {n: {w.casefold() for w in _WORD.findall(title) if len(w) > 2} for n, title in titles.items()}
    inside: dict[int, list[int]] = {}  # sentence index -> numbers to mark at its end
    after: list[int] = []  # numbers to mark after the last sentence
    for number in unmarked:
        others = set().union(*(w for n, w in words.items() if n != number))
        distinctive = (words[number] - others) or words[number]
        overlaps = [
            len(distinctive & {w.casefold() for w in _WORD.findall(text[start:end])})
            for start, end in sentences
        ]
        best = max(range(len(sentences)), key=lambda i: (overlaps[i], -i))
        if overlaps[best]:
            inside.setdefault(best, []).append(number)
        else:
            after.append(number)
    if after:
        end = sentences[-1][0] + len(text[slice(*sentences[-1])].rstrip())
        text = text[:end] + " [" + ", ".join(map(str, after)) + "]" + text[end:]
    for index in sorted(inside, reverse=True):
        start, end = sentences[index]
        sentence = text[start:end].rstrip()
        tail = re.search(r"[.!?…][\"')\]]*$", sentence)
        at = start + (tail.start() if tail else len(sentence))
        text = text[:at].rstrip() + " [" + ", ".join(map(str, inside[index])) + "]" + text[at:]
    numbers = ", ".join(f"[{n}]" for n in unmarked)
    return text, Edit("markers_added", f"cited {numbers} without a marker in the text: markers added")


def answer_problems(text: str) -> list[str]:
    """What is wrong with a final answer's form, for graders' reports: "ends mid-sentence", "repeats
    itself". Empty when neither."""
    problems = []
    if ends_mid_sentence(text):
        problems.append("ends mid-sentence")
    if cut_repetition(text)[1] is not None:
        problems.append("repeats itself")
    return problems
