"""The tools a run can give its agents, by the names `RunOptions.tools` and `--tools` take.

`search` stands for the corpus tools (`search` and `open`: one is no use without the other); `python`
for the sandboxed Python tool. A run's agents share one set of tools: each tool keeps its per-agent
state in the `ToolContext`, and one `Sandbox` serves every agent of the run.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from openheavy.errors import ConfigError
from openheavy.sandbox import Sandbox
from openheavy.tools.base import Tool
from openheavy.tools.python import PythonTool
from openheavy.tools.research import OpenTool, SearchTool

# Name -> what it gives an agent (for help texts and error messages).
TOOL_NAMES: dict[str, str] = {
    "search": "search the corpus and open what it finds",
    "python": "run Python code in a sandbox",
}
DEFAULT_TOOLS: tuple[str, ...] = ("search",)
# Tools that work on the run's corpus: a question with no corpus runs without them.
CORPUS_TOOLS = frozenset({"search"})


def check_tool_names(names: Iterable[str]) -> None:
    """Raise `ConfigError` for an unknown, repeated or missing tool name."""
    names = list(names)
    known = ", ".join(TOOL_NAMES)
    unknown = [name for name in names if name not in TOOL_NAMES]
    if unknown:
        raise ConfigError(
            f"unknown tool(s) {', '.join(map(repr, unknown))}; agent tools are {known} "
            "(e.g. --tools search,python)"
        )
    if len(set(names)) < len(names):
        raise ConfigError(f"tools {', '.join(names)}: name each tool once")
    if not names:
        raise ConfigError(f"agents need at least one tool, of {known}; for no tools at all use mode direct")


def build_tools(names: Sequence[str], sandbox: Sandbox) -> list[Tool]:
    """The tools `names` stand for, in that order. The python tool's sandbox is checked now (about
    0.1 s), so a machine that cannot isolate code fails before the run's first model call."""
    check_tool_names(names)
    tools: list[Tool] = []
    for name in names:
        if name == "search":
            tools += [SearchTool(), OpenTool()]
        elif name == "python":
            python = PythonTool(sandbox)
            python.check()
            tools.append(python)
    return tools
