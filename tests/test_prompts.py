"""Prompt templates: filled in one pass, so text from documents and questions reaches the model verbatim."""

from __future__ import annotations

import re

import pytest

from fakes import ListSink, MemorySearch, action
from openheavy.agent import ResearchAgent
from openheavy.errors import PromptTemplateError
from openheavy.models.scripted import ScriptedModel
from openheavy.prompts import fill_template, list_prompts, load_prompt, render_prompt, template_text_parts
from openheavy.search.cache import CachedSearch
from openheavy.types import EventStream

# A document that looks like a template: each of these was once replaced by the agent's own values.
TRICKY = "MARK-A {step} {question} {observation} {max_steps}{step} {{step}} {} {not valid} MARK-B"


async def test_a_document_with_placeholders_reaches_the_model_verbatim() -> None:
    model = ScriptedModel(
        [
            action("search", query="marker"),
            action("open", ref=1),
            action("answer", answer="It says MARK-A [1].", cite=[1]),
        ]
    )
    sink = ListSink()
    backend = MemorySearch({"tricky#1": ("marker {task} page", TRICKY)})
    agent = ResearchAgent(model, CachedSearch(backend), stream=EventStream([sink]), run_id="r", max_steps=3)
    question = "What does the page with {step} say? {observation}"
    task = "Read the {observation} page"
    result = await agent.run(question, task)
    assert result.answer == "It says MARK-A [1]."
    first, after_search, after_open = (call.messages for call in model.calls)
    assert f"Question: {question}" in first[1].content
    assert f"Your part of the work: {task}" in first[1].content
    # the search results (title and snippet) and the opened text, each shown with a different template
    assert "marker {task} page" in after_search[-1].content
    assert TRICKY[:60] in after_search[-1].content
    assert "(Action 1 of 3 done." in after_search[-1].content  # the template's own placeholders are filled
    [opened] = sink.of("DocumentOpened")
    assert opened.text_shown == TRICKY
    assert f"[1] marker {{task}} page (file:tricky#1)\n{TRICKY}\n" in after_open[-1].content
    assert "You have no actions left" in after_open[-1].content


def test_one_pass_never_reads_a_value_again() -> None:
    assert fill_template("{a} and {b}", a="{b}", b="{a}") == "{b} and {a}"


def test_braces_that_are_not_placeholders_stay_as_written() -> None:
    template = 'Reply with {"action": "answer", "cite": [n, ...]} for {who}; {} { x } {1a}'
    assert fill_template(template, who="you") == (
        'Reply with {"action": "answer", "cite": [n, ...]} for you; {} { x } {1a}'
    )


def test_a_placeholder_without_a_value_raises() -> None:
    with pytest.raises(PromptTemplateError, match=r"placeholder \{max_steps\} has no value"):
        render_prompt("agent_observation", observation="x", step=1)


def test_a_value_without_a_placeholder_raises() -> None:
    with pytest.raises(PromptTemplateError, match=r"prompt 'agent_final': value 'step' has no placeholder"):
        render_prompt("agent_final", observation="x", recap="", step=1)
    with pytest.raises(PromptTemplateError, match=r"\(\{a\}\)"):  # names what the template expects
        fill_template("{a}", a=1, b=2)


@pytest.mark.parametrize("name", list_prompts())
def test_every_prompt_fills_with_its_own_placeholders(name: str) -> None:
    text = load_prompt(name)
    placeholders = {key: f"<{key}>" for key in _placeholders(text)}
    filled = render_prompt(name, **placeholders)
    assert all(value in filled for value in placeholders.values())


def _placeholders(text: str) -> set[str]:
    return set(re.findall(r"\{([A-Za-z_][A-Za-z0-9_]*)\}", text))


def test_template_text_parts_are_the_literal_text_between_placeholders() -> None:
    # JSON braces are not placeholders, so they stay in the text; the names themselves are not text.
    template = 'Answer {question} as {"a": 1}, then {step_count}.'
    assert template_text_parts(template) == ["Answer ", ' as {"a": 1}, then ', "."]
