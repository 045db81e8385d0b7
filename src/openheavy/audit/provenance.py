"""Prompt provenance: which instructions a model was given.

Two parts. The *prompt set*: every template of the installed openheavy (name, text, sha256) and one hash
over all of them, recorded when an audit starts. The *prompts seen*: read back from the runs' traces
(`ModelCalled` events hold every prompt as sent), the hash of every distinct system prompt, and which
templates the prompts were rendered from (a template counts as used when a prompt contains all of its
literal text of 16 or more characters). `openheavy audit prompts --vs OTHER` diffs two prompt sets.
"""

from __future__ import annotations

import difflib
import hashlib
import subprocess
from collections.abc import Iterable
from pathlib import Path

from pydantic import Field

import openheavy
from openheavy.errors import ConfigError
from openheavy.evals.store import SavedModel
from openheavy.prompts import list_prompts, load_prompt, template_text_parts
from openheavy.trace import TraceRecord

PROMPTS_PACKAGE_PATH = "src/openheavy/prompts"
_MIN_FRAGMENT = 16


def text_hash(text: str) -> str:
    """The sha256 of `text` (UTF-8), in hex."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class PromptSet(SavedModel):
    """Every prompt template of one openheavy version: name -> text, with where they came from."""

    source: str  # "openheavy 0.1.0 (installed)", a folder, a git revision, an audit directory
    templates: dict[str, str] = Field(default_factory=dict)

    @property
    def hashes(self) -> dict[str, str]:
        """Template name -> sha256 of its text."""
        return {name: text_hash(text) for name, text in sorted(self.templates.items())}

    @property
    def set_hash(self) -> str:
        """One hash for the whole set: changes when any template is added, removed or edited."""
        lines = "".join(f"{name}\t{digest}\n" for name, digest in self.hashes.items())
        return text_hash(lines)


class SystemPrompt(SavedModel):
    """A distinct system prompt seen in the traces."""

    sha256: str
    text: str
    calls: int
    purposes: list[str] = Field(default_factory=list)


class PromptsSeen(SavedModel):
    """What the traces of an audit's runs show was sent: system prompts and the templates used."""

    calls: int = 0
    system_prompts: list[SystemPrompt] = Field(default_factory=list)
    templates_used: dict[str, int] = Field(default_factory=dict)  # template -> model calls using it


def installed_prompt_set() -> PromptSet:
    """The templates of the openheavy that is running."""
    return PromptSet(
        source=f"openheavy {openheavy.__version__} (installed)",
        templates={name: load_prompt(name) for name in list_prompts()},
    )


def prompts_seen(traces: Iterable[Iterable[TraceRecord]], prompt_set: PromptSet) -> PromptsSeen:
    """The system prompts and templates in the `ModelCalled` events of `traces`."""
    fragments = {
        name: [f.strip() for f in template_text_parts(text) if len(f.strip()) >= _MIN_FRAGMENT]
        for name, text in prompt_set.templates.items()
    }
    systems: dict[str, SystemPrompt] = {}
    used: dict[str, int] = {}
    calls = 0
    for records in traces:
        for record in records:
            if record.kind != "ModelCalled":
                continue
            calls += 1
            payload = record.payload
            messages = [m for m in payload.get("messages") or [] if isinstance(m, dict)]
            purpose = str(payload.get("purpose", ""))
            for message in messages:
                if message.get("role") == "system":
                    text = str(message.get("content", ""))
                    digest = text_hash(text)
                    seen = systems.get(digest) or SystemPrompt(sha256=digest, text=text, calls=0)
                    purposes = seen.purposes if purpose in seen.purposes else [*seen.purposes, purpose]
                    systems[digest] = seen.model_copy(update={"calls": seen.calls + 1, "purposes": purposes})
            sent = "\n".join(str(m.get("content", "")) for m in messages)
            for name, parts in fragments.items():
                if parts and all(part in sent for part in parts):
                    used[name] = used.get(name, 0) + 1
    return PromptsSeen(
        calls=calls,
        system_prompts=sorted(systems.values(), key=lambda s: -s.calls),
        templates_used=dict(sorted(used.items())),
    )


class PromptDiff(SavedModel):
    """How two prompt sets differ."""

    ours: str
    theirs: str
    ours_hash: str
    theirs_hash: str
    added: list[str] = Field(default_factory=list)  # in ours only
    removed: list[str] = Field(default_factory=list)  # in theirs only
    changed: list[str] = Field(default_factory=list)
    diffs: dict[str, str] = Field(default_factory=dict)  # changed template -> unified diff

    @property
    def same(self) -> bool:
        return self.ours_hash == self.theirs_hash


def diff_prompt_sets(ours: PromptSet, theirs: PromptSet) -> PromptDiff:
    """Templates added, removed and changed from `theirs` to `ours`, with a unified diff of each change."""
    mine, other = ours.templates, theirs.templates
    changed = sorted(name for name in mine.keys() & other.keys() if mine[name] != other[name])
    diffs = {
        name: "".join(
            difflib.unified_diff(
                other[name].splitlines(keepends=True),
                mine[name].splitlines(keepends=True),
                fromfile=f"{theirs.source}: {name}",
                tofile=f"{ours.source}: {name}",
            )
        )
        for name in changed
    }
    return PromptDiff(
        ours=ours.source,
        theirs=theirs.source,
        ours_hash=ours.set_hash,
        theirs_hash=theirs.set_hash,
        added=sorted(mine.keys() - other.keys()),
        removed=sorted(other.keys() - mine.keys()),
        changed=changed,
        diffs=diffs,
    )


def render_prompt_diff(diff: PromptDiff) -> str:
    """The diff as markdown: the two set hashes, then what was added, removed and changed."""
    lines = [
        "# Prompt provenance diff",
        "",
        f"- ours: {diff.ours} — prompt set `{diff.ours_hash[:12]}`",
        f"- theirs: {diff.theirs} — prompt set `{diff.theirs_hash[:12]}`",
        "",
    ]
    if diff.same:
        return "\n".join([*lines, "The two prompt sets are identical.", ""])
    lines += [f"- added (ours only): {', '.join(diff.added) or 'none'}"]
    lines += [f"- removed (theirs only): {', '.join(diff.removed) or 'none'}"]
    lines += [f"- changed: {', '.join(diff.changed) or 'none'}", ""]
    for name, text in diff.diffs.items():
        lines += [f"## {name}", "", "```diff", text.rstrip("\n"), "```", ""]
    return "\n".join(lines)


def prompt_set_from(target: str) -> PromptSet:
    """The prompt set `target` names: a folder of `*.txt` templates, or a git revision of the openheavy
    source checkout that is running (`main`, `v0.1.0`, a commit). (An audit folder's own set is read by
    `openheavy.audit.store.prompt_set_of`.)"""
    path = Path(target)
    if path.is_dir():
        templates = {p.stem: p.read_text(encoding="utf-8") for p in sorted(path.glob("*.txt"))}
        if not templates:
            raise ConfigError(
                f"{target} holds neither an audit (audit.json) nor prompt templates (*.txt) — name an "
                "audit's --out folder, a prompts folder, or a git revision"
            )
        return PromptSet(source=f"folder {path.name}", templates=templates)
    return _git_prompt_set(target)


def _git_prompt_set(revision: str) -> PromptSet:
    root = Path(openheavy.__file__).resolve().parents[2]

    def git(*args: str) -> str:
        result = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, check=False, timeout=30
        )
        if result.returncode != 0:
            raise ConfigError(
                f"{revision!r} is not an audit folder, a prompts folder, or a git revision of the "
                f"openheavy checkout ({result.stderr.strip() or 'git failed'}) — name one of those"
            )
        return result.stdout

    try:
        names = git("ls-tree", "--name-only", f"{revision}:{PROMPTS_PACKAGE_PATH}").split()
    except FileNotFoundError:
        raise ConfigError(f"{revision!r} is not a folder, and git is not installed to read it") from None
    templates = {
        name[:-4]: git("show", f"{revision}:{PROMPTS_PACKAGE_PATH}/{name}")
        for name in names
        if name.endswith(".txt")
    }
    return PromptSet(source=f"git {revision}", templates=templates)
