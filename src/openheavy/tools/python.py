"""The `python` tool: run code in the sandbox (openheavy/sandbox.py) and show the model what it printed.

What the code printed is shown fenced and labelled as data: it can carry text from anywhere the code
read (pages pasted into it, crafted inputs), and the model must not take it as instructions. A run
that the sandbox refuses (no isolation available) raises `SandboxUnavailableError` rather than
running unconfined.

Shaped by what small models did with it (GSM8K traces of the embedded models, docs/results.md):
- The code is written in free text, not inside the JSON action. The action only picks `python`; the
  model is then asked for the script and writes it as it writes code anywhere, in a ```python block
  with its reasoning in comments or prose around it (`free_text_prompt`, `args_from_text`). Inside
  JSON, constrained decoding cannot put a raw line break in a string (a model closed the string after
  `def f(x):` and ran that one line); as a list of lines, or after reasoning written into a JSON field,
  the 1.5B model's programs still computed the wrong quantity far more often than its free chain of
  thought did (GSM8K: 0.38 against 0.56): format restrictions cost reasoning.
- An agent's runs are a notebook's cells: each run replays the agent's earlier runs that succeeded, so
  the names they defined stay defined (models wrote `print(total)` in a second run and got NameError).
- The value of a last bare expression is shown, as an interactive interpreter does, and when the code
  printed nothing, the names its last statement assigned: code often ended in `total = 40 * 21`.
- The observation shows no timing and no exit status of an ordinary run: models answered with them.
  A failure names its error and line, with a hint for the errors that need one, before the traceback.
- Running code that already ran, with the same output, is pointed out: models re-ran a script instead
  of answering from its output.
- A script that reuses a computing line of the write prompt's example (`share = 0.15 * 80`) is a copy of
  the example, not a script for the question: the 0.5B model ran the example on every GSM8K problem and
  answered 19.0. A copy is asked for again, and never run.
"""

from __future__ import annotations

import ast
import functools
import re
import textwrap
from dataclasses import dataclass, field

from pydantic import BaseModel, Field, field_validator

from openheavy.prompts import fence_untrusted, render_prompt
from openheavy.sandbox import CodeResult, Sandbox
from openheavy.tools.base import Observation, ToolContext
from openheavy.tools.sources import SourceBook
from openheavy.types import CodeRan, JsonSchema

# The longest script run: far beyond what a reply of `CODE_REPLY_MAX_TOKENS` holds.
CODE_MAX_CHARS = 8000
# The reply that holds the script: the model's reasoning and the code.
CODE_REPLY_MAX_TOKENS = 1024
# A fence line: three or more backticks and an optional language tag ("```python", "```output", "```").
_FENCE = re.compile(r"^[ \t]*```+[ \t]*([\w+.-]*)[ \t]*$")
_PYTHON_TAGS = frozenset({"python", "python3", "py"})
# The error a Python traceback ends with ("NameError: name 'x' is not defined" gives NameError), and the
# last line of the agent's own code it passed through. Read from stderr, which the code could forge: only
# an identifier and a number are taken from it, outside the fence.
_ERROR_NAME = re.compile(r"^(?:[A-Za-z_]\w*\.)*([A-Za-z_]\w*)(?::|$)")
_CODE_LINE = re.compile(r'File "<code>", line (\d+)')
# Errors whose cure small models miss, and the prompt that says it.
_HINTS = {
    "NameError": "tool_python_hint_name",
    "ModuleNotFoundError": "tool_python_hint_module",
    "ImportError": "tool_python_hint_module",
}


class PythonArgs(BaseModel):
    code: str = Field(min_length=1, max_length=CODE_MAX_CHARS)

    @field_validator("code", mode="before")
    @classmethod
    def _join_lines(cls, value: object) -> object:
        """Code given as a list of lines (as the action's schema asked for it before the script was
        written in free text) is joined; a string is taken as written."""
        if isinstance(value, list) and all(isinstance(line, str) for line in value):
            return "\n".join(value)
        return value


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """The fenced blocks of `text` in order, as (language tag, lowercased; "" for none, contents), an
    unclosed last one too (a reply cut at its token bound). Fences pair up line by line, so the closing
    fence of one block never opens the next: a model that wrote its code, then a made-up ```output block,
    then prose, has one block of code and one of output."""
    blocks: list[tuple[str, str]] = []
    tag: str | None = None  # the open block's tag; None outside a block
    lines: list[str] = []
    for line in text.splitlines():
        fence = _FENCE.match(line)
        if tag is None:
            if fence:
                tag, lines = fence[1].lower(), []
        elif fence and not fence[1]:
            blocks.append((tag, "\n".join(lines)))
            tag = None
        else:
            lines.append(line)
    if tag is not None:
        blocks.append((tag, "\n".join(lines)))
    return blocks


def _code_blocks(text: str) -> list[str]:
    """The blocks of `text` that hold the script: those tagged Python, and untagged ones that parse as
    Python statements beyond a bare name (an untagged block of prose or output is not code); each cut to
    its runnable lines."""
    code = []
    for tag, block in fenced_blocks(text):
        if not block.strip():
            continue
        if tag in _PYTHON_TAGS:
            code.append(_runnable(block))
        elif not tag and _is_statements(runnable := _runnable(block)):
            code.append(runnable)
    return code


def _is_statements(text: str) -> bool:
    """Whether `text` parses as Python with at least one statement that does something: a lone name or
    constant ("Therefore", "42") parses too, and is prose or output."""
    try:
        body = ast.parse(text).body
    except (SyntaxError, ValueError):
        return False
    return any(
        not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Name | ast.Constant)) for node in body
    )


def _runnable(block: str) -> str:
    """A fenced block, dedented, without the prose a model wrote after it when it never closed the fence
    ("… print(total)\nThe answer is \\(\\boxed{14}\\)."): the longest run of its first lines that parses,
    or the block as written when none does (its error is then shown to the model)."""
    code = textwrap.dedent(block).strip("\n")
    lines = code.splitlines()
    for end in range(len(lines), 0, -1):
        if _is_python("\n".join(lines[:end])):
            return "\n".join(lines[:end])
    return code


@functools.cache
def _example_lines() -> frozenset[str]:
    """The computing lines (those with a number) of the example scripts in the write prompt, spaces
    normalized: read from the template itself, so the example has one home (read once: every script is
    checked against it, twice)."""
    blocks = _code_blocks(render_prompt(PythonTool.free_text_prompt))
    lines = (" ".join(line.split()) for block in blocks for line in block.splitlines())
    return frozenset(line for line in lines if any(ch.isdigit() for ch in line))


def copies_example(code: str) -> bool:
    """Whether `code` reuses a computing line of the write prompt's example: a copy of it, whatever the
    question (the example's numbers are its own question's)."""
    example = _example_lines()
    return any(" ".join(line.split()) in example for line in code.splitlines())


def _is_python(text: str) -> bool:
    try:
        ast.parse(text)
    except (SyntaxError, ValueError):
        return False
    return True


@dataclass(frozen=True)
class CodeCell:
    """One run of an agent's code: the step it ran at and what happened."""

    step: int
    result: CodeResult


@dataclass
class Notebook:
    """An agent's runs of code so far, in order: those that succeeded are replayed before the next."""

    cells: list[CodeCell] = field(default_factory=list)

    def succeeded(self) -> list[str]:
        """The code of every run that ended without an error or a limit, in order."""
        return [cell.result.code for cell in self.cells if cell.result.ok]

    def same_run(self, result: CodeResult) -> CodeCell | None:
        """The latest earlier run of the same code that printed the same, if any."""
        for cell in reversed(self.cells):
            earlier = cell.result
            if (earlier.code.strip(), earlier.stdout, earlier.stderr, earlier.exit_status) == (
                result.code.strip(),
                result.stdout,
                result.stderr,
                result.exit_status,
            ):
                return cell
        return None


class PythonTool:
    """Runs a Python script in a sandbox: no network, a scratch directory, limits on time and memory.
    An agent's runs share their names as a notebook's cells do (its `Notebook`, in the ToolContext)."""

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

    # The script is asked for after the action, in free text (see the module's notes).
    free_text_prompt = "tool_python_write"
    free_text_again_prompt = "tool_python_write_again"
    free_text_max_tokens = CODE_REPLY_MAX_TOKENS

    def args_schema(self, sources: SourceBook) -> JsonSchema:
        return {"type": "object", "properties": {}, "required": []}

    def args_from_text(self, text: str, *, last_try: bool = False) -> PythonArgs | None:
        """The script in a reply to `free_text_prompt`: its fenced code blocks, in order (an unclosed last
        one too), else the whole reply when it is Python. None when the reply holds no code (a model
        used to JSON actions answered with one) or when its script copies the prompt's example: the agent
        then asks once more; on that `last_try` the reply is taken as it is, and what running it gives
        (its error, or the refusal to run a copy) is what the model is shown."""
        if last_try:
            return PythonArgs(code=script_in(text) or text.strip()[:CODE_MAX_CHARS] or "pass")
        code = script_in(text)
        if not code or copies_example(code):
            return None
        return PythonArgs(code=code)

    def available(self, sources: SourceBook) -> bool:
        return True

    async def call(self, args: BaseModel, ctx: ToolContext) -> Observation:
        assert isinstance(args, PythonArgs)
        if copies_example(args.code):
            return Observation(render_prompt("tool_python_example_copied").strip())
        notebook = ctx.tool_state.setdefault(self.name, Notebook())
        assert isinstance(notebook, Notebook)
        replayed = notebook.succeeded()
        result = await self.sandbox.run(args.code, before=replayed, show_last=True)
        ctx.stream.emit(code_ran(result, run_id=ctx.run_id, agent=ctx.agent, step=ctx.step))
        text = describe_result(result, replayed=len(replayed))
        same = notebook.same_run(result)
        if same is not None:
            text += "\n" + render_prompt("tool_python_repeated", step=same.step).strip()
        notebook.cells.append(CodeCell(ctx.step, result))
        return Observation(text, repeated=same is not None, computed=result.stdout if result.ok else "")


def script_in(text: str) -> str:
    """The script in a model's free-text reply: its fenced code blocks, in order (an unclosed last one
    too; blocks tagged with another language, such as a made-up ```output, left out), each cut to the
    lines that parse; else the whole reply when it is Python (and not a JSON object). "" when the reply
    holds no code."""
    blocks = _code_blocks(text)
    if blocks:
        return "\n\n".join(blocks)[:CODE_MAX_CHARS]
    code = text.strip()
    return code[:CODE_MAX_CHARS] if code and not code.startswith("{") and _is_python(code) else ""


def code_ran(result: CodeResult, *, run_id: str, agent: str, step: int) -> CodeRan:
    """The trace event of one run of code."""
    return CodeRan(
        run_id=run_id,
        agent=agent,
        step=step,
        code=result.code,
        stdout=result.stdout,
        stderr=result.stderr,
        exit_status=result.exit_status,
        limit=result.limit,
        seconds=result.seconds,
        isolation=result.isolation,
    )


def describe_result(result: CodeResult, *, replayed: int = 0) -> str:
    """What the model is shown after a run: the outcome (for a failure: the error, its line and what to
    do), then stdout and stderr fenced as data. `replayed`: how many earlier runs ran again first."""
    if result.limit:
        outcome = render_prompt("tool_python_stopped", limit=result.limit_message()).strip()
        if replayed:
            outcome += " " + render_prompt("tool_python_stopped_replayed", runs=replayed).strip()
    elif result.exit_status == 0:
        outcome = render_prompt("tool_python_ran")
    else:
        outcome = _describe_failure(result)
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


def _describe_failure(result: CodeResult) -> str:
    """The failure in a line: the error and the line of the code it came from, read off the traceback,
    and what to do; the exit status only when there is no traceback (the code exited on its own)."""
    last = next((line.strip() for line in reversed(result.stderr.splitlines()) if line.strip()), "")
    error = _ERROR_NAME.match(last)
    lines = _CODE_LINE.findall(result.stderr)
    if error is None or not lines:
        return render_prompt("tool_python_exited", exit_status=result.exit_status)
    name = error[1]
    text = render_prompt("tool_python_failed", error=name, line=lines[-1]).strip()
    if name in _HINTS:
        text += " " + render_prompt(_HINTS[name]).strip()
    return text
