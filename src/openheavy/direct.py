"""Direct mode: one model call, no tools. The baseline every other mode is compared to."""

from __future__ import annotations

from openheavy.models.base import ChatModel
from openheavy.models.recording import CallLabel, RecordingModel
from openheavy.prompts import load_prompt
from openheavy.types import Completion, EventStream, Message


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
    """Ask the model once, from its own knowledge."""
    messages = [Message("system", load_prompt("direct_system")), Message("user", question)]
    label = CallLabel(agent="direct", step=1, purpose="direct")
    recorder = RecordingModel(model, stream=stream, run_id=run_id, label=label)
    return await recorder.complete(messages, max_tokens=max_tokens, temperature=temperature, seed=seed)
