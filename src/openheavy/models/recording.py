"""The one way the engine calls a model: `RecordingModel`, a `ChatModel` that wraps another.

Every call through it is reported in full as a `ModelCalled` event (prompt, schema, output, tokens,
cached tokens, seconds), labelled with who made it and why (`CallLabel`), and a call constrained to a
JSON schema gets the schema's bound as its `max_tokens` unless the caller set one. With a `Budget` (a
run gives one to the model every part of it wraps), each call is checked against the tokens and time
left before it starts and bounded by the time left while it runs. Agents, planner, synthesis, rank
samples and both judges call their model through it, so no call goes unrecorded or unbudgeted and no
caller re-implements either (in the style of pydantic-ai's wrapper models).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from openheavy.models.base import ChatModel, PrefixSharing
from openheavy.models.budget import Budget, estimate_prompt_tokens
from openheavy.models.slot_share import SharedPrefix
from openheavy.types import Completion, EventStream, JsonSchema, Message, ModelCalled

# The reply bound of a call that names none (no max_tokens, no schema): it is sent as the call's
# max_tokens when a budget must know what the call may spend.
DEFAULT_REPLY_TOKENS = 1024


@dataclass(frozen=True)
class CallLabel:
    """Who made a model call and why, as the trace shows it."""

    agent: str = ""  # "agent-1", "planner", "synthesizer", "sample-3", "judge", ...
    step: int = 0
    purpose: str = "call"  # "action", "answer", "plan", "synthesis", "sample", "judge", ...


class RecordingModel:
    """Wraps `model`: records every call on `stream` under `label` and bounds schema-constrained calls.

    `labelled(...)` returns the same wrapper with another label, for the next call:

        recorder = RecordingModel(model, stream=stream, run_id=run_id, label=CallLabel(agent="agent-1"))
        await recorder.labelled(step=2, purpose="action").complete(messages, json_schema=schema)

    Wrapping a `RecordingModel` wraps the model inside it, so a call is never recorded twice, and keeps
    its budget unless another is given. Without a stream (the eval judge runs outside any run) nothing
    is recorded, and the bounds still apply.
    """

    def __init__(
        self,
        model: ChatModel,
        *,
        stream: EventStream | None,
        run_id: str,
        label: CallLabel | None = None,
        budget: Budget | None = None,
    ) -> None:
        inner = model.budget if isinstance(model, RecordingModel) else None
        self.model: ChatModel = model.model if isinstance(model, RecordingModel) else model
        self.name = self.model.name
        self.stream = stream
        self.run_id = run_id
        self.label = label or CallLabel()
        self.budget: Budget | None = budget or inner

    def labelled(
        self, *, agent: str | None = None, step: int | None = None, purpose: str | None = None
    ) -> RecordingModel:
        """This wrapper with the given parts of its label changed."""
        label = CallLabel(
            agent=self.label.agent if agent is None else agent,
            step=self.label.step if step is None else step,
            purpose=self.label.purpose if purpose is None else purpose,
        )
        return RecordingModel(
            self.model, stream=self.stream, run_id=self.run_id, label=label, budget=self.budget
        )

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        json_schema: JsonSchema | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        seed: int | None = None,
    ) -> Completion:
        """Call the wrapped model and record the call.

        With a schema and no `max_tokens`, the limit is the longest output the schema allows: constrained
        decoding can run on inside a string until `max_tokens`, and a cut-off JSON string is lost output.
        """
        if json_schema is not None and max_tokens is None:
            max_tokens = output_token_bound(json_schema)
        if self.budget is None:
            completion = await self.model.complete(
                messages, json_schema=json_schema, max_tokens=max_tokens, temperature=temperature, seed=seed
            )
        else:
            reply_tokens = DEFAULT_REPLY_TOKENS if max_tokens is None else max_tokens
            completion = await self.budget.bounded(
                self.describe_call(),
                lambda: self.model.complete(
                    messages,
                    json_schema=json_schema,
                    max_tokens=reply_tokens,
                    temperature=temperature,
                    seed=seed,
                ),
                tokens=estimate_prompt_tokens(messages) + reply_tokens,
            )
            self.budget.charge(completion.usage)
        self._record(messages, json_schema, completion)
        return completion

    def _record(
        self, messages: Sequence[Message], json_schema: JsonSchema | None, completion: Completion
    ) -> None:
        """The call as a `ModelCalled` event, under this wrapper's label (nothing without a stream)."""
        if self.stream is None:
            return
        self.stream.emit(
            ModelCalled(
                run_id=self.run_id,
                agent=self.label.agent,
                step=self.label.step,
                purpose=self.label.purpose,
                messages=[{"role": m.role, "content": m.content} for m in messages],
                json_schema=json_schema,
                output=completion.text,
                prompt_tokens=completion.usage.prompt_tokens,
                completion_tokens=completion.usage.completion_tokens,
                cached_tokens=completion.usage.cached_tokens,
                seconds=completion.seconds,
            )
        )

    async def share_prefix(self, messages: Sequence[Message], copies: int) -> SharedPrefix | None:
        """Have the wrapped model compute `messages` once for `copies` requests that will start with them
        (`PrefixSharing`; None from any other model), recorded and charged as a call of its own."""
        model = self.model
        if not isinstance(model, PrefixSharing):
            return None
        if self.budget is None:
            shared = await model.share_prefix(messages, copies)
        else:
            shared = await self.budget.bounded(
                self.describe_call(),
                lambda: model.share_prefix(messages, copies),
                tokens=estimate_prompt_tokens(messages) + 1,
            )
        if shared is None:
            return None
        if self.budget is not None:
            self.budget.charge(shared.completion.usage)
        self._record(messages, None, shared.completion)
        return shared

    def describe_call(self) -> str:
        """The next call as budget messages name it: "agent-2's action call at step 3"."""
        agent, purpose = self.label.agent, self.label.purpose
        who = f"{agent}'s " if agent and agent != purpose else "the "
        step = f" at step {self.label.step}" if self.label.step else ""
        return f"{who}{purpose} call{step}"

    async def aclose(self) -> None:
        """Nothing to release: the wrapped model belongs to whoever made it, who closes it once."""


def output_token_bound(schema: JsonSchema) -> int:
    """An upper bound on the tokens of any JSON value `schema` allows (a token is at least one
    character; unbounded strings count 400 characters), plus room for the whitespace a grammar permits."""

    def chars(node: JsonSchema) -> int:
        if "anyOf" in node:
            return max(chars(option) for option in node["anyOf"])
        kind = node.get("type")
        if "enum" in node and kind != "array":
            return max((len(str(value)) + 2 for value in node["enum"]), default=4)
        if kind == "string":
            return int(node.get("maxLength", 400)) + 2
        if kind in ("integer", "number"):
            return 20
        if kind == "boolean":
            return 5
        if kind == "array":
            return 2 + int(node.get("maxItems", 16)) * (chars(node.get("items", {})) + 2)
        if kind == "object":
            properties = node.get("properties", {})
            return 2 + sum(len(key) + 4 + chars(value) for key, value in properties.items())
        return 400

    return int(chars(schema) * 1.1) + 32
