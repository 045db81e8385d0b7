"""Program-aided samples for `rank`: the model writes a program for the question, the sandbox runs it,
and what the program prints last is the sample's answer (program-aided language models, PAL, voted as
self-consistency votes over chains of thought).

Why both kinds in one vote (`mixed_sampler`): the embedded coder models are right on different problems
in code and in prose. On the first 50 GSM8K problems the 0.5B model was right on 11 with its code and 9
in prose, only 2 of them the same, and the 1.5B model on 25 and 27, with 33 right by one or the other
(docs/results.md). A vote over samples of both kinds can take what each gets right; a program's
arithmetic is exact, so programs that read the problem the same way agree exactly.

A program that fails, or prints no answer, casts no vote: its sample comes back with an `error` (its
tokens counted) and rank leaves it out. Every run is a `CodeRan` event of its sample's agent.
"""

from __future__ import annotations

from openheavy.models.base import ChatModel
from openheavy.models.recording import CallLabel, RecordingModel
from openheavy.normalize import last_number_plain
from openheavy.prompts import fill_template, load_prompt
from openheavy.rank import Sampler, answer_sampler
from openheavy.sandbox import CodeResult, Sandbox
from openheavy.tools.python import CODE_REPLY_MAX_TOKENS, code_ran, script_in
from openheavy.types import EventStream, Message
from openheavy.verify import Sample

__all__ = ["mixed_sampler", "program_answer", "program_messages", "program_sampler"]


def program_messages(question: str) -> list[Message]:
    """The prompt every program sample gets (the rank prompt's system message, so a prefix cache keeps
    it once)."""
    return [
        Message("system", load_prompt("rank_system").strip()),
        Message("user", fill_template(load_prompt("rank_program").strip(), question=question)),
    ]


def program_answer(result: CodeResult) -> str:
    """The answer a run of a program gives: the last number it printed, written plainly ("104.0" gives
    "104"); else its last printed line; "" when it failed or printed nothing."""
    if not result.ok:
        return ""
    number = last_number_plain(result.stdout)
    if number is not None:
        return number
    return next((line.strip() for line in reversed(result.stdout.splitlines()) if line.strip()), "")


def _failure(result: CodeResult) -> str:
    """Why a run gave no answer, in a few words."""
    if result.limit:
        return f"the program was stopped: {result.limit_message()}"
    if result.exit_status != 0:
        last = next((line.strip() for line in reversed(result.stderr.splitlines()) if line.strip()), "")
        return f"the program failed (exit status {result.exit_status}): {last[:200]}"
    return "the program printed no answer"


def program_sampler(
    question: str,
    recorder: RecordingModel,
    sandbox: Sandbox,
    *,
    stream: EventStream,
    run_id: str,
    temperature: float,
    seed: int,
    greedy_index: int | None = None,
    max_tokens: int = CODE_REPLY_MAX_TOKENS,
) -> Sampler:
    """Sample `i`: one call with the program prompt and seed `seed + i` (greedy when `i` is
    `greedy_index`), its script run in `sandbox` as the python tool runs it; the answer is what the
    run printed last (`program_answer`). Its text is the reply and the program's output, which is what
    a judge reads."""
    messages = program_messages(question)

    async def sample(i: int) -> Sample:
        heat = 0.0 if i == greedy_index else temperature
        agent = f"sample-{i}"
        completion = await recorder.labelled(agent=agent, purpose="program").complete(
            messages, max_tokens=max_tokens, temperature=heat, seed=seed + i
        )

        def sample_with(text: str, answer: str, error: str | None) -> Sample:
            return Sample(
                index=i,
                text=text,
                answer=answer,
                error=error,
                usage=completion.usage,
                mean_logprob=completion.mean_logprob,
                seed=seed + i,
                temperature=heat,
                kind="program",
            )

        code = script_in(completion.text)
        if not code:
            return sample_with(completion.text, "", "the reply held no program")
        result = await sandbox.run(code, show_last=True)
        stream.emit(code_ran(result, run_id=run_id, agent=agent, step=0))
        answer = program_answer(result)
        text = f"{completion.text.rstrip()}\n\nThe program printed:\n{result.stdout.rstrip()}"
        error = None if answer else _failure(result)
        return sample_with(text, answer, error)

    return sample


def mixed_sampler(
    question: str,
    model: ChatModel,
    sandbox: Sandbox,
    *,
    stream: EventStream,
    run_id: str,
    temperature: float,
    seed: int,
    max_tokens: int,
    greedy_first: bool = True,
) -> Sampler:
    """Rank's samples in two kinds, alternating: even samples reason in prose (`answer_sampler`), odd
    ones write a program (`program_sampler`). With `greedy_first` the first of each kind (samples 0
    and 1) is greedy: the answers one call of each kind gives."""
    recorder = RecordingModel(model, stream=stream, run_id=run_id, label=CallLabel(purpose="sample"))
    prose = answer_sampler(
        question,
        recorder,
        temperature=temperature,
        seed=seed,
        max_tokens=max_tokens,
        greedy_index=0 if greedy_first else None,
    )
    program = program_sampler(
        question,
        recorder,
        sandbox,
        stream=stream,
        run_id=run_id,
        temperature=temperature,
        seed=seed,
        greedy_index=1 if greedy_first else None,
        max_tokens=max(max_tokens, CODE_REPLY_MAX_TOKENS),
    )

    async def sample(i: int) -> Sample:
        return await (prose if i % 2 == 0 else program)(i)

    return sample
