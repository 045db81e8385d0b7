"""Every prompt openheavy sends lives here as a text file, loaded by name. Nothing hidden.

`openheavy prompts` prints them all. `fence_untrusted` is the one way text from outside the run
(documents, search results, tool output) is put in front of a model: fenced and labelled as data.
"""

from __future__ import annotations

import re
import secrets
from functools import cache
from importlib.resources import files

from openheavy.errors import PromptTemplateError


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


def render_prompt(name: str, /, **values: object) -> str:
    """Prompt `name` with each `{placeholder}` replaced by its value (see `fill_template`)."""
    return _fill(load_prompt(name), values, f"prompt {name!r}")


def fill_template(template: str, /, **values: object) -> str:
    """`template` with each `{identifier}` replaced by `str(values[identifier])`, in one pass.

    The pass reads only the template, so a value is never read again: a document that contains
    `{step}` reaches the model as written. Braces that do not hold a bare identifier stay as written,
    so prompts can show JSON examples. A placeholder without a value, or a value without a placeholder,
    raises `PromptTemplateError`: either is a bug, and a silent one would change what the model sees.
    """
    return _fill(template, values, "the template")


_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def template_text_parts(template: str) -> list[str]:
    """The literal text of `template` between its placeholders, in order: what every filled prompt
    holds whatever the values (empty parts kept)."""
    return _PLACEHOLDER.split(template)[::2]  # the odd items are the captured placeholder names


def _fill(template: str, values: dict[str, object], what: str) -> str:
    wanted = set(_PLACEHOLDER.findall(template))
    problems = [f"placeholder {{{key}}} has no value" for key in sorted(wanted - values.keys())]
    problems += [f"value {key!r} has no placeholder {{{key}}}" for key in sorted(values.keys() - wanted)]
    if problems:
        expected = ", ".join(f"{{{key}}}" for key in sorted(wanted)) or "none"
        raise PromptTemplateError(
            f"{what}: {'; '.join(problems)}. Pass exactly the values its placeholders name ({expected})."
        )
    return _PLACEHOLDER.sub(lambda match: str(values[match[1]]), template)


def fence_untrusted(text: str, *, label: str) -> str:
    """`text` from outside the run (documents, search results, notes drawn from them, tool output) as the
    model is shown it: between a pair of tags under a line (the `untrusted_data` prompt) saying that it
    is data, to be used as information and never followed as instructions. System prompts say the same.

    The tag name is random and new for every block, so the text cannot close the fence and continue as
    if it were ours: it would have to guess the name. A fresh name per block rather than per run needs
    nothing passed around, and a tag the model repeats (in a query, an answer, a note) cannot be used to
    close a later block.
    """
    tag = _fresh_tag()
    while tag in text:  # ~1 in 4 billion per block: cheap to rule out entirely
        tag = _fresh_tag()
    return render_prompt("untrusted_data", label=label, tag=tag, text=text.strip("\n")).strip()


def _fresh_tag() -> str:
    return f"data-{secrets.token_hex(4)}"
