"""Every prompt openheavy sends lives here as a text file, loaded by name. Nothing hidden.

`openheavy prompts` prints them all.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files


def list_prompts() -> list[str]:
    """Names of all prompt templates, sorted."""
    return sorted(p.name[:-4] for p in files(__name__).iterdir() if p.name.endswith(".txt"))


@cache
def load_prompt(name: str) -> str:
    """The text of prompt `name` (a file `<name>.txt` in this package)."""
    path = files(__name__) / f"{name}.txt"
    if not path.is_file():
        raise KeyError(f"no prompt named {name!r}; known prompts: {', '.join(list_prompts())}")
    return path.read_text(encoding="utf-8")


def render_prompt(name: str, **values: object) -> str:
    """Prompt `name` with each `{key}` replaced by its value.

    Plain replacement rather than `str.format`, so prompts can show JSON examples with braces.
    """
    text = load_prompt(name)
    for key, value in values.items():
        text = text.replace("{" + key + "}", str(value))
    return text
