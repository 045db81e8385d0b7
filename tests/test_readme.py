"""The README stays true: every `openheavy` command in its tour exists and takes the flags shown."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from openheavy.cli import app

README = Path(__file__).parent.parent / "README.md"


def tour_commands() -> list[list[str]]:
    text = README.read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith("openheavy "):
                commands.append(shlex.split(line)[1:])
    return commands


def test_the_readme_shows_the_commands() -> None:
    names = {command[0] for command in tour_commands()}
    assert names >= {"ask", "compare", "index", "corpora", "runs", "trace", "prompts", "eval"}


@pytest.mark.parametrize("command", tour_commands(), ids=lambda c: " ".join(c)[:60])
def test_each_readme_command_and_flag_exists(command: list[str]) -> None:
    result = CliRunner().invoke(app, [command[0], "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    for flag in (word.split("=")[0] for word in command[1:] if word.startswith("--")):
        assert flag in result.output, f"`openheavy {command[0]}` has no {flag}"


def test_make_targets_named_in_the_readme_exist() -> None:
    makefile = (README.parent / "Makefile").read_text(encoding="utf-8")
    for target in re.findall(r"^make (\w+)", README.read_text(encoding="utf-8"), flags=re.M):
        assert re.search(rf"^{target}:", makefile, flags=re.M), f"no make target {target}"
