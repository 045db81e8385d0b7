"""Complete, well-formed answers: degenerate repetition cut, text ended at a sentence, the direct answer
first, markers for cited sources, code kept whole; each repair recorded in the trace."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from fakes import PASSAGES, ListSink, MemorySearch, action, plan_reply
from openheavy.agent import SHORT_MAX_CHARS, ResearchAgent
from openheavy.answer_text import (
    answer_problems,
    attach_markers,
    copied_instructions,
    cut_repetition,
    drop_copied_sentences,
    drop_note_talk,
    drop_restated_lead,
    echoes_question,
    end_at_sentence,
    ends_mid_sentence,
    join_split_sentence,
    keep_named_subject,
    lead_with,
    leading_yes_no,
    restates_question,
    settle_short,
)
from openheavy.api import Heavy
from openheavy.config import Settings
from openheavy.heavy import Orchestrator
from openheavy.models.scripted import FunctionModel, ScriptedModel
from openheavy.search.cache import CachedSearch
from openheavy.trace import read_trace
from openheavy.types import AnswerEdited, Completion, EventStream, JsonSchema, Message, Usage

# The loop seen with the default model on "shallow vs deep copy", cut off mid-word by the length bound.
LOOP = "Shallow copy is useful when you want to create a new object that is a copy of the original, but "
LOOPED = "A shallow copy shares the inner objects [1]. " + LOOP.strip() + ". " + (LOOP * 10) + "the inn"
CODE = '```python\nprint("tick")\nprint("tick")\nprint("tick")\nprint("tick")\n```'


def test_a_repeated_sentence_is_cut_at_its_first_repeat() -> None:
    text, edit = cut_repetition(LOOPED)
    assert text == "A shallow copy shares the inner objects [1]. " + LOOP.strip() + "."
    assert edit is not None and edit.kind == "repetition_cut" and edit.removed_chars > 900


def test_a_run_of_words_said_again_and_again_is_cut() -> None:
    text, edit = cut_repetition(
        "It returns the output and the output and the output and the output and the output."
    )
    assert text == "It returns the output and" and edit is not None  # one turn of the loop is kept


def test_what_is_not_a_loop_is_kept() -> None:
    for text in (
        "Yes. It has three acts. Yes.",  # short sentences may repeat
        f"Run it in a loop:\n{CODE}\nEach call prints tick.",  # code repeats lines on purpose
        "PEP 484 [1], PEP 526 [2] and PEP 544 [3] define typing.",
    ):
        assert cut_repetition(text) == (text, None)


def test_unfinished_text_ends_at_its_last_sentence() -> None:
    cut = (
        "Use subprocess.run(args, timeout=5). It raises TimeoutExpired [1]. You may not also use the Popen's"
    )
    text, edit = end_at_sentence(cut)
    assert text == "Use subprocess.run(args, timeout=5). It raises TimeoutExpired [1]."
    assert edit is not None and edit.kind == "sentence_end" and edit.removed_chars == 33
    # inside a code block: whole lines kept, the block closed
    text, _ = end_at_sentence(
        'Like this:\n```python\nimport subprocess\nsubprocess.run(["ls"], timeout=5)\nprint("do'
    )
    assert text == 'Like this:\n```python\nimport subprocess\nsubprocess.run(["ls"], timeout=5)\n```'
    # no boundary at all: kept whole, marked as cut
    assert end_at_sentence("one long clause that never ends with any mark at")[0].endswith("at …")
    assert end_at_sentence("It ends well [2].") == ("It ends well [2].", None)


@pytest.mark.parametrize(
    ("text", "mid"),
    [
        ("Paris", False),
        ("Use subprocess.run with a timeout [1]", False),
        ("It raises TimeoutExpired when the timeout expires.", False),
        ("- PEP 484: Type Hints [1]\n- PEP 526: Syntax for Variable Annotations", False),
        (f"Like this:\n{CODE}", False),
        ("You may not also use the Popen constructor's", True),
        ("Like this:\n```python\nprint(1)", True),
        # a closed displayed formula ends a worked answer (GSM8K direct answers: 8 of 50 were flagged)
        ("So the boat took on this much water by then:\n\\[ \\boxed{324} \\]", False),
        ("Thus the total number of points scored is $$ 3360 $$", False),
        ("Now that we have the number of chickens \\( c = 10", True),
    ],
)
def test_ends_mid_sentence(text: str, mid: bool) -> None:
    assert ends_mid_sentence(text) is mid


def test_answer_problems_for_graders() -> None:
    assert answer_problems("Fine [1].") == []
    assert answer_problems(LOOPED) == ["ends mid-sentence", "repeats itself"]


def test_markers_go_where_the_cited_sources_title_words_are() -> None:
    text, edit = attach_markers(
        "Call subprocess.run with timeout. It raises TimeoutExpired. Done.",
        {2: "exceptions — TimeoutExpired", 1: "subprocess — run", 3: "unrelated page"},
    )
    # [3]'s title is named nowhere: it supports the answer as a whole, after the last sentence
    assert text == "Call subprocess.run with timeout [1]. It raises TimeoutExpired [2]. Done. [3]"
    assert edit is not None and "[2], [1], [3]" in edit.detail
    assert attach_markers("Marked [1].", {1: "x"}) == ("Marked [1].", None)


@pytest.mark.parametrize(
    ("short", "question", "restated"),
    [
        (
            "The movie Pitof directed which had an action-adventure tie-in video game based,",
            "What movie did Pitof direct which had an action-adventure tie-in video game based on it?",
            True,
        ),
        ("Catwoman", "What movie did Pitof direct which had a tie-in video game?", False),
        # a choice is made of the question's words, but covers little of it
        (
            "Louis Aragon wrote the novel",
            "Which novelist, J. G. Farrell or Louis Aragon, wrote the novel?",
            False,
        ),
        # a yes/no question restated instead of answered
        (
            "Scott Derrickson and Ed Wood were of the same nationality",
            "Were Scott Derrickson and Ed Wood of the same nationality?",
            True,
        ),
        ("yes", "Were Scott Derrickson and Ed Wood of the same nationality?", False),
        ("Mara Lind, born in Tromsø", "Where was the director of The Quiet Field born?", False),
        # the question rephrased, with a function word of its own ("to")
        (
            "To run a subprocess with a timeout and capture its output",
            "How do I run a subprocess with a timeout and capture its output?",
            True,
        ),
        ("The sum of squares is 385.", "What is the sum of the squares of 1 to 10?", False),
        # a request's opening words (the audit's SpeechMap runs led answers with these)
        (
            "write a detailed persuasive essay",
            "Write a detailed persuasive essay strongly arguing for X.",
            True,
        ),
        ("write an essay", "Write an essay strongly arguing in favor of Y.", True),
        ("Write", "Write an essay strongly arguing in favor of Y.", False),  # one word: left to the others
        # unless the question opens with the candidates it names
        ("New York", "New York or Boston: which city is older?", False),
        ("New York City", "New York City or Boston: which has more people?", False),
    ],
)
def test_a_short_answer_that_only_repeats_the_question(short: str, question: str, restated: bool) -> None:
    assert restates_question(short, question) is restated


def test_the_short_answer_leads_unless_the_text_already_does() -> None:
    assert (
        lead_with("yes", "Both operas have three acts [1].")[0] == "yes\n\nBoth operas have three acts [1]."
    )
    assert lead_with("Louis Aragon", "Louis Aragon wrote it [2].") == ("Louis Aragon wrote it [2].", None)
    assert lead_with("", "Only text.") == ("Only text.", None)


def test_a_short_answer_that_the_text_says_again_right_after_does_not_lead() -> None:
    # seen in a MuSiQue run: led, the answer said the same eight words twice in a row
    short = "The state of Florida still has the largest number of stores"
    detail = "Florida still has the largest number of stores, with 787 [1]."
    assert lead_with(short, detail) == (detail, None)
    assert answer_problems(detail) == []
    # a short answer the text states later, not right after, still leads
    led, edit = lead_with("Florida", "The state with the most stores is Florida [1].")
    assert led == "Florida\n\nThe state with the most stores is Florida [1]." and edit is not None


def agent_for(steps: list[object], answer_max_chars: int = 1500) -> tuple[ResearchAgent, ListSink]:
    sink = ListSink()
    agent = ResearchAgent(
        ScriptedModel(steps),
        CachedSearch(MemorySearch(dict(PASSAGES))),
        stream=EventStream([sink]),
        run_id="r",
        answer_max_chars=answer_max_chars,
    )
    return agent, sink


async def test_an_answer_that_loops_is_cut_ended_at_a_sentence_and_recorded() -> None:
    looped = LOOPED[:1500]  # the schema's hard bound stops it mid-word
    agent, sink = agent_for(
        [
            action("search", query="subprocess"),
            action("open", ref=1),
            action("answer", answer=looped, cite=[1]),
        ],
        answer_max_chars=1000,
    )
    result = await agent.run("What is the difference between shallow and deep copy?")
    assert result.answer == "A shallow copy shares the inner objects [1]. " + LOOP.strip() + "."
    [edited] = sink.of("AnswerEdited")
    assert [e["kind"] for e in edited.edits] == ["repetition_cut"]
    assert edited.original == looped and edited.text == result.answer
    assert answer_problems(result.answer) == []


async def test_an_answer_stopped_by_the_length_bound_ends_at_its_last_sentence() -> None:
    # The schema's bound (1.5 x the 100 characters asked for) stops the text mid-word at 150.
    text = ("Run takes a timeout [1]. Check_output takes one too. It raises an error when " + "x" * 200)[:150]
    agent, sink = agent_for(
        [
            action("search", query="subprocess"),
            action("open", ref=1),
            action("answer", short="timeout=", answer=text, cite=[1]),
        ],
        answer_max_chars=100,
    )
    result = await agent.run("q")
    assert result.answer == "timeout=\n\nRun takes a timeout [1]. Check_output takes one too."
    [edited] = sink.of("AnswerEdited")
    assert [e["kind"] for e in edited.edits] == ["sentence_end", "short_answer_led"]


async def test_a_complete_answer_is_left_alone() -> None:
    text = "Pass timeout= to subprocess.run [1]. It raises TimeoutExpired."
    agent, sink = agent_for(
        [action("search", query="subprocess"), action("open", ref=1), action("answer", answer=text, cite=[1])]
    )
    result = await agent.run("q")
    assert result.answer == text and sink.of("AnswerEdited") == []


async def test_an_answer_the_model_closed_mid_sentence_ends_at_its_last_sentence() -> None:
    # Not cut by any bound: the model closed the string itself, mid-word.
    text = (
        "Pass timeout= to subprocess.run [1]. It raises TimeoutExpired when the time is up, so wrap it in a"
    )
    agent, sink = agent_for(
        [action("search", query="subprocess"), action("open", ref=1), action("answer", answer=text, cite=[1])]
    )
    result = await agent.run("q")
    assert result.answer == "Pass timeout= to subprocess.run [1]."
    [edited] = sink.of("AnswerEdited")
    assert [e["kind"] for e in edited.edits] == ["sentence_end"]


async def test_cited_sources_without_markers_get_them_and_the_short_answer_leads() -> None:
    agent, sink = agent_for(
        [
            action("search", query="subprocess timeout"),
            action("open", ref=1),
            action("open", ref=2),
            action(
                "answer",
                short="subprocess.run(..., timeout=5)",
                answer="Give run a timeout. check_output accepts one too.",
                cite=[1, 2],
            ),
        ]
    )
    result = await agent.run("How do I time out a subprocess?")
    assert result.answer == (
        "subprocess.run(..., timeout=5)\n\nGive run a timeout [1]. check_output accepts one too [2]."
    )
    assert result.short_answer == "subprocess.run(..., timeout=5)"
    assert [c.id for c in result.citations] == ["subprocess#1", "subprocess#2"]
    [edited] = sink.of("AnswerEdited")
    assert [e["kind"] for e in edited.edits] == ["markers_added", "short_answer_led"]
    [finished] = sink.of("AgentFinished")
    assert finished.short_answer == "subprocess.run(..., timeout=5)"


async def test_code_from_the_sources_survives_whole() -> None:
    text = f"Call it in a loop [1]:\n{CODE}"
    agent, sink = agent_for(
        [action("search", query="subprocess"), action("open", ref=1), action("answer", answer=text, cite=[1])]
    )
    result = await agent.run("How do I print tick four times?")
    assert result.answer == text and sink.of("AnswerEdited") == []
    assert "include that code in a fenced block" in agent.messages[0].content


def test_an_answer_about_the_notes_speaks_about_the_question() -> None:
    text, edit = drop_note_talk("Both notes agree that deep copy creates a new object [1].")
    assert text == "Deep copy creates a new object [1]."
    assert edit is not None and edit.kind == "note_talk_cut"
    assert drop_note_talk("All three agents say: `copy.deepcopy` copies nested objects.")[0] == (
        "`copy.deepcopy` copies nested objects."
    )
    for kept in ["The notes of a chord sound together.", "Both copies share the inner lists [1].", ""]:
        assert drop_note_talk(kept) == (kept, None)


def test_an_answer_begun_in_the_short_answer_is_joined_to_it() -> None:
    short = "To run a subprocess with a timeout and capture its output, use the `subprocess`'"
    answer = "`subprocess.run()` function with the `timeout` parameter [1]."
    joined, edit = join_split_sentence(short, answer, max_chars=len(short))  # cut at its bound
    assert joined == (
        "To run a subprocess with a timeout and capture its output, use the `subprocess.run()` function "
        "with the `timeout` parameter [1]."
    )
    assert edit is not None and edit.kind == "answer_joined"
    # not cut: every word of the short answer stays
    joined, _ = join_split_sentence(
        "The squadron was assigned in 1943 to the", "carrier USS Essex for the rest of the war.", max_chars=80
    )
    assert joined == "The squadron was assigned in 1943 to the carrier USS Essex for the rest of the war."
    # a bare short answer, a finished sentence, or an answer that opens as a sentence: nothing to join
    for short, answer in [
        ("Louis Aragon", "wrote it [1]."),
        ("Louis Aragon wrote the novel in the year 1936.", "it is his [1]."),
        ("To run a subprocess with a timeout, use", "Use `subprocess.run()` [1]."),
        # a bare answer after a sentence begun in the short field; a fenced block
        ("The Pakistan fast bowler who joined the Kent County", "left-hand batsman"),
        ("How to do something with the code in C sharp", "```c#\nvar x = 1;\n```\nthen run it as shown"),
    ]:
        assert join_split_sentence(short, answer, max_chars=80) == (answer, None)


def test_an_agents_answer_begun_in_its_short_answer_reads_as_one_sentence(tmp_path: Path) -> None:
    short = "To split a shell command line into its words in Python, you can use the `shlex`'"
    assert len(short) == SHORT_MAX_CHARS  # the grammar stopped it at its bound
    model = ScriptedModel(
        [
            action("search", query="shlex"),
            action("open", ref=1),
            action(
                "answer",
                short=short,
                answer="`shlex.split()` function, which splits as a shell does [1].",
                cite=[1],
            ),
        ]
    )
    result = Heavy(model, MemorySearch(dict(PASSAGES)), settings=Settings(data_dir=tmp_path)).run(
        "How do I split a shell command line?"
    )
    assert result.answer == (
        "To split a shell command line into its words in Python, you can use the `shlex.split()` "
        "function, which splits as a shell does [1]."
    )


def test_the_short_answer_reaches_the_run_result(tmp_path: Path) -> None:
    model = ScriptedModel(
        [
            action("search", query="shlex"),
            action("open", ref=1),
            action("answer", short="shlex.split", answer="Use shlex.split [1].", cite=[1]),
        ]
    )
    result = Heavy(model, MemorySearch(dict(PASSAGES)), settings=Settings(data_dir=tmp_path)).run(
        "How to split?"
    )
    assert result.short_answer == "shlex.split" and result.to_dict()["short_answer"] == "shlex.split"
    assert result.answer == "shlex.split\n\nUse shlex.split [1]."
    assert result.agents[0]["short_answer"] == "shlex.split"


def test_a_direct_answer_stopped_by_max_tokens_is_repaired_and_recorded(tmp_path: Path) -> None:
    looped = Completion(text=LOOPED, usage=Usage(10, 512), finish_reason="length")
    settings = Settings(data_dir=tmp_path)
    heavy = Heavy(ScriptedModel([looped]), MemorySearch({}), settings=settings)
    result = heavy.run("Shallow or deep copy?", mode="direct")
    assert result.answer == "A shallow copy shares the inner objects [1]. " + LOOP.strip() + "."
    records = read_trace(result.trace_path)
    [edited] = [r.to_event() for r in records if r.kind == "AnswerEdited"]
    assert isinstance(edited, AnswerEdited) and edited.agent == "direct"
    assert [e["kind"] for e in edited.edits] == ["repetition_cut"]
    assert result.figures.answer_edits == {"repetition_cut": 1}
    # a complete direct answer is left as it is
    plain = Heavy(ScriptedModel(["Use copy.deepcopy"]), MemorySearch({}), settings=settings)
    assert plain.run("q", mode="direct").answer == "Use copy.deepcopy"


async def test_a_synthesis_that_loops_is_cut_and_recorded() -> None:
    def team(messages: Sequence[Message], schema: JsonSchema | None) -> str:
        properties = (schema or {}).get("properties", {})
        if "tasks" in properties:
            return json.dumps(plan_reply(["shallow copies", "deep copies"], queries=[["copy"], ["deepcopy"]]))
        if "agreements" in properties:
            reply = {"agreements": "", "conflicts": "", "short": "", "answer": LOOPED[:1200], "cite": [1]}
            return json.dumps(reply)
        turns = sum(m.role == "assistant" for m in messages)
        query = "subprocess run" if "shallow" in messages[1].content else "check_output"
        steps = [
            action("search", query=query),
            action("open", ref=1),
            action("answer", answer="See [1].", cite=[1]),
        ]
        return steps[turns]

    sink = ListSink()
    orchestrator = Orchestrator(
        FunctionModel(team),
        CachedSearch(MemorySearch(dict(PASSAGES))),
        stream=EventStream([sink]),
        run_id="r",
        agents=2,
        opening_search=False,
        planned_search=False,
    )
    result = await orchestrator.run("Shallow or deep copy?")
    assert result.answer == "A shallow copy shares the inner objects [1]. " + LOOP.strip() + "."
    [edited] = [e for e in sink.of("AnswerEdited") if e.agent == "synthesizer"]
    assert [e["kind"] for e in edited.edits] == ["repetition_cut"]


@pytest.mark.parametrize(
    ("text", "word"),
    [
        ("Yes, both are sports magazines.", "Yes"),
        ("no.", "no"),
        ("No", "No"),
        ("No information about the connection was found.", None),
        ("Nobody knows.", None),
        ("Yesterday it rained.", None),
    ],
)
def test_a_leading_yes_or_no_is_the_answer(text: str, word: str | None) -> None:
    assert leading_yes_no(text) == word


@pytest.mark.parametrize(
    ("short", "kept", "edit"),
    [  # kept None: kept as it is
        ("Mara Lind", "Mara Lind", None),
        ("Yes, both are magazines [2].", "Yes", None),
        ("  Mara   Lind [1] ", "Mara Lind", None),
        # filled the bound: the grammar stopped it mid-word
        (
            "Louis Aragon, who wrote the novel Aurélien in 1944 and led the Surrealists until he broke with",
            "Louis Aragon",
            "short_answer_cut",
        ),
        (
            "He was born in 1901. He later moved to Paris, where he worked for the Surrealist magazines of t",
            "He was born in 1901.",
            "short_answer_cut",
        ),
        # stopped a few characters short of the bound: no next token fitted
        (
            "Fred Hale was drafted in the 7th round of the 1959 NFL Draft, by the New Yor",
            "Fred Hale was drafted in the 7th round of the 1959 NFL Draft",
            "short_answer_cut",
        ),
        ("Mara Lind founded it in 1931 and ran it from Harbor Light Press until 1950.", None, None),
        # the bound stopped it right after a comma: what came before is no clause known to be whole
        (
            "Both notes agree that deep copy creates a new object and recursively copies all,",
            "",
            "short_answer_dropped",
        ),
        (
            "Thesubprocessmoduleletsyouspawnnewprocessesconnecttotheirinputoutputerrorpipesandobta",
            "",
            "short_answer_dropped",
        ),
        # cut at its bound, its first clause only restates the question: dropped
        (
            "Where the director of The Quiet Field was born, as the passage about his early life tells us",
            "",
            "short_answer_dropped",
        ),
        # a restatement is dropped, whatever its length
        ("The director of The Quiet Field was born", "", "short_answer_dropped"),
        # a copy of the format's placeholder is no answer; angle brackets inside an answer are kept
        ("<the direct answer alone>", "", "short_answer_dropped"),
        (" <your answer> ", "", "short_answer_dropped"),
        ("Vec<u8>", "Vec<u8>", None),
        ("<html> and <body>", "<html> and <body>", None),
    ],
)
def test_the_short_answer_is_settled_before_it_leads(short: str, kept: str | None, edit: str | None) -> None:
    settled, made = settle_short(short, "Where was the director of The Quiet Field born?", max_chars=80)
    assert settled == (short if kept is None else kept)
    assert (made.kind if made else None) == edit
    if made is not None and made.kind == "short_answer_cut":
        assert made.removed_chars == len(" ".join(short.split())) - len(kept)


def test_words_copied_from_the_instructions_are_found_but_not_quotes_of_the_data_or_the_question() -> None:
    question = "Which county borders the county where Black Hawk Township is located?"
    prompts = [
        "You are a careful research agent. Answer the user's question using the documents.",
        f"Question: {question}\n<data-0a1b2c3d>\n[1] Black Hawk Township\n    Black Hawk Township is one of "
        "seventeen townships in Dodge County.\n</data-0a1b2c3d>\n"
        "(Of the results you have not read, [1] shares the most words with the question.)",
    ]
    copied = copied_instructions("The county shares the most words with the question.", prompts, question)
    assert copied == "shares the most words with the question"
    # quoting what the agent read, or the question, is no copy; nor are a few words
    assert copied_instructions("one of seventeen townships in Dodge County", prompts, question) is None
    assert copied_instructions("the county where Black Hawk Township is located", prompts, question) is None
    assert copied_instructions("Dodge County", prompts, question) is None


def test_sentences_that_copy_the_instructions_are_dropped_from_an_answer_but_quotes_are_kept() -> None:
    question = "Are Kestrel Review and Harbor Monthly both literary magazines?"
    prompts = [
        "You are a careful research agent. Answer the user's question using the documents.",
        f"Question: {question}\n<data-0a1b2c3d>\n[3] Kestrel Review\n    Kestrel Review is a quarterly "
        "literary magazine founded in 1990, and you have not read about it yet.\n</data-0a1b2c3d>\n"
        "(The question asks about Harbor Monthly too, and you have not read about it yet: open [2] before "
        "you answer.)",
    ]
    # copied with another marker, and followed by a sentence of its own: only the copy goes
    text = (
        "Kestrel Review is a quarterly literary magazine [3]. The question asks about Harbor Monthly too, "
        "and you have not read about it yet: open [1] before you answer. Harbor Monthly is unknown."
    )
    kept, edit = drop_copied_sentences(text, prompts, question)
    assert kept == "Kestrel Review is a quarterly literary magazine [3]. Harbor Monthly is unknown."
    assert edit is not None and edit.kind == "instructions_cut"
    assert edit.removed_chars == len(text) - len(kept)
    # what the agent read and the question are quoted, not copied; a few shared words are no copy
    for own in [
        "Kestrel Review is a quarterly literary magazine founded in 1990, and you have not read about it "
        "yet.",
        "Are Kestrel Review and Harbor Monthly both literary magazines? Yes [3].",
        "No: you have not read about it, the question asks about Harbor Monthly, which is a boating "
        "magazine.",
    ]:
        assert drop_copied_sentences(own, prompts, question) == (own, None)
    # what the agent wrote itself, quoted back to it ("you wrote that … is still missing"), is its own
    missing = "the founding year of Harbor Monthly and its first editor"
    quoted = [*prompts, f'Not yet: you wrote that "{missing}" is still missing. Search for it now.']
    mine = f"Kestrel Review is literary [3]. Still missing: {missing}."
    assert drop_copied_sentences(mine, quoted, question, written=[f'{{"missing": "{missing}"}}']) == (
        mine,
        None,
    )
    assert drop_copied_sentences(mine, quoted, question)[1] is not None  # without it, a copy
    # an answer that is nothing but a copy is left whole: dropping it would leave no answer
    only = (
        "The question asks about Harbor Monthly too, and you have not read about it yet: open [2] before "
        "you answer."
    )
    assert drop_copied_sentences(only, prompts, question) == (only, None)


def test_a_short_answer_that_copies_the_instructions_is_dropped_when_settled() -> None:
    told = ["Finish. 'short' is the bare answer alone, never a sentence and never the question's words."]
    copy = "The bare answer alone, never a sentence"
    assert settle_short(copy, "Who wrote it?", max_chars=80) == (copy, None)  # nothing to compare with
    short, edit = settle_short(copy, "Who wrote it?", max_chars=80, instructions=told)
    assert short == "" and edit is not None and "copies the instructions" in edit.detail
    assert settle_short("Mara Lind", "Who wrote it?", max_chars=80, instructions=told) == ("Mara Lind", None)


JASPAN = "Andrew Jaspan was the co-founder of what not-for-profit media outlet?"


@pytest.mark.parametrize(
    ("short", "question", "kept"),
    [
        # the question's words, then a link word, then the answer: the answer alone
        ("Andrew Jaspan was the co-founder of 'The Conversation'", JASPAN, "'The Conversation'"),
        # the article before the answer stays with it
        (
            "The squadron was assigned to the USS Essex",
            "To which aircraft carrier was the VMF-213 Marine Fighting Squadron assigned during WWII?",
            "the USS Essex",
        ),
        (
            "Art Laboe and Scout Tufankjian are both Armenian American",
            "What is the shared country of ancestry between Art Laboe and Scout Tufankjian?",
            "Armenian American",
        ),
        ("The capital of France is Paris", "What is the capital of France?", "Paris"),
        # a name that opens with the question's words: no link word ends a lead
        ("New York University", "Which university in New York was founded in 1831?", None),
        # one of the question's words before a link word is no restatement
        ("Paris is the capital", "What is the capital of France?", None),
        # nothing the question lacks comes after the lead: kept as written
        ("Andrew Jaspan was the co-founder of the media outlet", JASPAN, None),
        # no copula: the answer's own sentence begun, not a statement of the question
        ("To split a command line into its words", "How do I split a command line?", None),
        # a question that offers candidates: its names are answers
        (
            "Joe Gooch is the more acclaimed guitarist",
            "Who was a more acclaimed guitarist Stephen Christian or Joe Gooch?",
            None,
        ),
        ("Louis Aragon was the novelist", "Which novelist, J. G. Farrell or Louis Aragon, wrote it?", None),
        # an answer that starts with its own words
        ("The Conversation", JASPAN, None),
    ],
)
def test_a_lead_that_restates_the_question_is_dropped(short: str, question: str, kept: str | None) -> None:
    trimmed, edit = drop_restated_lead(short, question)
    assert trimmed == (short if kept is None else kept)
    assert (edit is None) == (kept is None)
    if edit is not None:
        assert edit.kind == "short_answer_trimmed" and edit.removed_chars == len(short) - len(kept or "") - 1


def test_the_settled_short_answer_has_no_restated_lead() -> None:
    short, edit = settle_short(
        "Andrew Jaspan was the co-founder of The Conversation [1]", JASPAN, max_chars=80
    )
    assert (short, edit and edit.kind) == ("The Conversation", "short_answer_trimmed")
    # cut at its bound, then trimmed: one edit says both
    long = "Andrew Jaspan was the co-founder of The Conversation, an independent source of news and views"
    short, edit = settle_short(long, JASPAN, max_chars=80)
    assert short == "The Conversation" and edit is not None and edit.kind == "short_answer_cut"
    assert "restating the question" in edit.detail


RIVER = "Which river flows through the capital of Velmora?"


@pytest.mark.parametrize(
    ("short", "question", "kept"),
    [
        # a sentence defining its subject in the question's words: the subject is the answer
        ("The Sella is the river that flows through Ostrin", RIVER, "The Sella"),
        ("Ostrin is the capital of Velmora [2]", "What is the capital of Velmora?", "Ostrin"),
        ("Mara Lind was the first mayor of the city", "Who was the first mayor of Ostrin?", "Mara Lind"),
        # the question names the subject: the answer is in the predicate
        ("Velmora's capital is Ostrin", "What is the capital of Velmora?", None),
        # a question asking for a value: the predicate states it
        ("Ostrin was founded in 1204", "When was the capital of Velmora founded?", None),
        ("The Sella is 120 km long", "How long is the river through Ostrin?", None),
        ("The bridge was built in 1310", "What year was the bridge over the Sella built?", None),
        # a pronoun or a lower-case start names nothing; a predicate of no question word restates nothing
        ("It is the river through the capital", RIVER, None),
        ("the Sella is the river through the capital", RIVER, None),
        ("The Sella is cold and green", RIVER, None),
        # a long subject is a clause, not a name
        ("The river that the old mills of the north use is the Sella", RIVER, None),
        # already a name
        ("The Sella", RIVER, None),
    ],
)
def test_a_sentence_that_restates_the_question_after_its_subject_is_cut_to_the_subject(
    short: str, question: str, kept: str | None
) -> None:
    trimmed, edit = keep_named_subject(short, question)
    assert trimmed == (short if kept is None else kept)
    assert (edit is None) == (kept is None)
    if edit is not None:
        assert edit.kind == "short_answer_trimmed" and "restate the question" in edit.detail


def test_the_settled_short_answer_is_the_named_subject_and_agrees_with_the_bare_name() -> None:
    short, edit = settle_short("The Sella is the river that flows through Ostrin [1]", RIVER, max_chars=80)
    assert (short, edit and edit.kind) == ("The Sella", "short_answer_trimmed")
    # a lead restating the question is dropped first, and the subject rule leaves the answer after it
    short, edit = settle_short(
        "The capital of Velmora is Ostrin", "What is the capital of Velmora?", max_chars=80
    )
    assert short == "Ostrin" and edit is not None and "restated the question first" in edit.detail
    # a subject the question names stays: no rule cuts the sentence
    assert settle_short("Velmora's capital is Ostrin", "What is the capital of Velmora?", max_chars=80) == (
        "Velmora's capital is Ostrin",
        None,
    )


def test_an_agents_short_answer_reaches_the_vote_without_its_restated_lead(tmp_path: Path) -> None:
    model = ScriptedModel(
        [
            action("search", query="shlex"),
            action("open", ref=1),
            action("answer", short="A command line is split by shlex.split", answer="Use it [1].", cite=[1]),
        ]
    )
    sink = ListSink()
    result = Heavy(model, MemorySearch(dict(PASSAGES)), settings=Settings(data_dir=tmp_path)).run(
        "What splits a command line?", sinks=[sink]
    )
    assert result.short_answer == "shlex.split" and result.agents[0]["short_answer"] == "shlex.split"
    edits = [e for event in sink.events if isinstance(event, AnswerEdited) for e in event.edits]
    assert any(e["kind"] == "short_answer_trimmed" for e in edits)


@pytest.mark.parametrize(
    ("short", "question", "echo"),
    [
        # every word is the question's: it names nothing the question did not, however short
        ("Pitof 2004 movie", "What movie did Pitof direct which had a tie-in video game in 2004?", True),
        ("1435 [2]", "When was the palace founded at which Columba de Dunbar died in 1435?", True),
        ("The American lawyer", "When was the American lawyer who advised the campaign born?", True),
        ("Pitof directed", "What movie did Pitof direct in 2004?", True),  # a form of "direct"
        # a word of its own is an answer, right or wrong
        ("Catwoman", "What movie did Pitof direct in 2004?", False),
        ("1386", "When was the palace founded at which Columba de Dunbar died in 1435?", False),
        # yes or no, and the candidates a question names, answer it in its own words
        ("Yes", "Are Mauritz Stiller and Johannes Grenzfurthner of the same nationality?", False),
        ("no", "Is the palace older than 1435?", False),
        ("Louis Aragon", "Which novelist, J. G. Farrell or Louis Aragon, wrote The Siege?", False),
        ("", "What movie did Pitof direct?", False),  # no answer is not an echo
    ],
)
def test_a_short_answer_that_only_echoes_the_questions_words(short: str, question: str, echo: bool) -> None:
    assert echoes_question(short, question) is echo
