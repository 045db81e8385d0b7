"""Direct mode: one model call, no tools. The baseline every other mode is compared to."""

from __future__ import annotations

from dataclasses import replace

from openheavy.answer_text import repair_free_text
from openheavy.models.base import ChatModel
from openheavy.models.recording import CallLabel, RecordingModel
from openheavy.prompts import load_prompt
from openheavy.types import AnswerEdited, Completion, EventStream, Message


async def answer_directly(
    question: str,
    model: ChatModel,
    *,
    stream: EventStream,
    run_id: str,
    max_tokens: int = 512,
    temperature: float | None = 0.0,
    seed: int | None = None,
) -> Completion:
    """Ask the model once, from its own knowledge. A degenerate repetition is cut, and text that
    `max_tokens` stopped is ended at its last sentence (an `AnswerEdited` event says so)."""
    messages = [Message("system", load_prompt("direct_system")), Message("user", question)]
    label = CallLabel(agent="direct", step=1, purpose="direct")
    recorder = RecordingModel(model, stream=stream, run_id=run_id, label=label)
    completion = await recorder.complete(messages, max_tokens=max_tokens, temperature=temperature, seed=seed)
    text, edits = repair_free_text(completion.text.strip(), cut_off=completion.finish_reason == "length")
    if not edits:
        return completion
    stream.emit(
        AnswerEdited(
            run_id=run_id,
            agent="direct",
            step=1,
            edits=[edit.to_record() for edit in edits],
            original=completion.text,
            text=text,
        )
    )
    return replace(completion, text=text)
