"""The `python` tool: run code in the sandbox (openheavy/sandbox.py) and show the model what it printed.

What the code printed is shown fenced and labelled as data: it can carry text from anywhere the code
read (pages pasted into it, crafted inputs), and the model must not take it as instructions. A run
that the sandbox refuses (no isolation available) raises `SandboxUnavailableError` rather than
running unconfined.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from openheavy.prompts import fence_untrusted, render_prompt
from openheavy.sandbox import CodeResult, Sandbox
from openheavy.tools.base import Observation, ToolContext
from openheavy.tools.sources import SourceBook
from openheavy.types import CodeRan, JsonSchema

CODE_MAX_CHARS = 4000


class PythonArgs(BaseModel):
    code: str = Field(min_length=1, max_length=CODE_MAX_CHARS)


class PythonTool:
    """Runs a Python script in a sandbox: no network, a scratch directory, limits on time and memory."""

    name = "python"
    description = (
        "run a Python script (standard library; no network; files only in the working directory) "
        "and see what it prints: print() every value you need"
    )
    Args: type[BaseModel] = PythonArgs

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox

    def check(self) -> None:
        """Raise `SandboxUnavailableError` now, with what to install, if code could not run."""
        self.sandbox.check()

    def args_schema(self, sources: SourceBook) -> JsonSchema:
        return {
            "type": "object",
            "properties": {"code": {"type": "string", "minLength": 1, "maxLength": CODE_MAX_CHARS}},
            "required": ["code"],
        }

    def available(self, sources: SourceBook) -> bool:
        return True

    async def call(self, args: BaseModel, ctx: ToolContext) -> Observation:
        assert isinstance(args, PythonArgs)
        result = await self.sandbox.run(args.code)
        ctx.stream.emit(
            CodeRan(
                run_id=ctx.run_id,
                agent=ctx.agent,
                step=ctx.step,
                code=result.code,
                stdout=result.stdout,
                stderr=result.stderr,
                exit_status=result.exit_status,
                limit=result.limit,
                seconds=result.seconds,
                isolation=result.isolation,
            )
        )
        return Observation(describe_result(result))


def describe_result(result: CodeResult) -> str:
    """What the model is shown after a run: the outcome, then stdout and stderr fenced as data."""
    seconds = f"{result.seconds:.2f}"
    if result.limit:
        outcome = render_prompt(
            "tool_python_stopped",
            limit=result.limit_message(),
            exit_status=result.exit_status,
            seconds=seconds,
        )
    elif result.exit_status == 0:
        outcome = render_prompt("tool_python_ran", seconds=seconds)
    else:
        outcome = render_prompt("tool_python_failed", exit_status=result.exit_status, seconds=seconds)
    lines = [outcome.strip()]
    if not result.stdout and not result.stderr:
        lines.append(render_prompt("tool_python_silent").strip())
        return "\n".join(lines)
    # Fenced as untrusted data, each stream under a fresh tag: printed text cannot close the fence.
    for stream, text in (("stdout", result.stdout), ("stderr", result.stderr)):
        if text:
            label = render_prompt("tool_python_output_label", stream=stream).strip()
            lines.append(fence_untrusted(text.rstrip("\n"), label=label))
    return "\n".join(lines)
