"""The default corpus, `pydocs`: the Python documentation that is already on the machine.

Two parts: the language reference topics of `pydoc_data.topics` (what `help("assert")` shows), and the
pydoc text of the standard library's public modules. Modules are imported and rendered in child
processes (`_pydoc_worker.py`) with a time limit, so a module that prints, blocks or crashes costs only
itself: it is skipped.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pkgutil
import re
import subprocess
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from openheavy.corpus.sources import SourceDoc
from openheavy.private_files import child_environment

# Bump when the rendering below changes, so that built `pydocs` indexes are rebuilt.
PYDOCS_VERSION = "1"

# Never imported: they open windows or browsers, print on import, or are tests and tooling rather than
# library documentation.
SKIPPED_MODULES = frozenset(
    {
        *("antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo"),
        *("test", "lib2to3", "ensurepip", "pydoc_data", "xxlimited", "xxlimited_35", "xxsubtype"),
        # Windows type tables and macOS loader internals: 100k characters of noise on any platform.
        *("ctypes.wintypes", "ctypes.macholib"),
    }
)
# Packages whose submodules are not indexed separately: `asyncio` re-exports every public name of its
# submodules (so they would be duplicates), `encodings` holds a hundred codec tables.
SKIPPED_SUBMODULES_OF = frozenset({"asyncio", "encodings"})

_WORKER = Path(__file__).with_name("_pydoc_worker.py")


def module_names() -> list[str]:
    """The public standard-library modules to document: `sys.stdlib_module_names` and the public
    submodules of those packages, found on disk without importing anything."""
    names: list[str] = []
    for top in sorted(sys.stdlib_module_names):
        if top.startswith("_") or top in SKIPPED_MODULES:
            continue
        try:
            spec = importlib.util.find_spec(top)
        except (ImportError, ValueError):
            continue
        if spec is None:
            continue
        names.append(top)
        if spec.submodule_search_locations and top not in SKIPPED_SUBMODULES_OF:
            names.extend(_submodules(list(spec.submodule_search_locations), top))
    return names


def _submodules(paths: list[str], prefix: str) -> list[str]:
    found: list[str] = []
    for info in pkgutil.iter_modules(paths):
        name = f"{prefix}.{info.name}"
        if info.name.startswith("_") or info.name in {"test", "tests"} or name in SKIPPED_MODULES:
            continue
        found.append(name)
        if info.ispkg:
            found.extend(_submodules([os.path.join(path, info.name) for path in paths], name))
    return found


# ------------------------------------------------------------------ topics


def topic_documents() -> list[SourceDoc]:
    """One document per language reference topic of `pydoc_data.topics`, id `topic:<name>`."""
    from pydoc_data.topics import topics  # 0.5 MB of text: load it only when building

    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    docs: list[SourceDoc] = []
    for name, text in sorted(topics.items()):
        first_line = text.strip().split("\n")[0].strip()
        docs.append(
            SourceDoc(
                id=f"topic:{name}",
                title=first_line or name,
                text=text,
                # Topics are labels inside the reference manual's pages; its search finds them.
                url=f"https://docs.python.org/{version}/search.html?q={quote(name)}",
                format="rst",
            )
        )
    return docs


# ------------------------------------------------------------------ modules


@dataclass(frozen=True)
class RenderedModule:
    """One module's pydoc text as the worker produced it."""

    name: str
    summary: str
    url: str
    text: str


_SECTION = re.compile(r"[A-Z][A-Z ]*[A-Z]")
# pydoc sections that are not documentation: the title line's source, the online-docs notice (the
# document's url points there) and the local file path.
_DROPPED_SECTIONS = frozenset({"NAME", "MODULE REFERENCE", "FILE"})
_CLASS = re.compile(r" {4}class (\w+)")
_FUNCTION = re.compile(r" {4}(\w+)(?: = \w+)?\(")
_EMPTY_CLASS_LINE = re.compile(r"\s*\|\s*")


def pydoc_to_markdown(text: str) -> str:
    """pydoc's plain text as Markdown headings over the original lines: `## Functions`, `### run()`,
    `### class Popen`, so that passages carry their section in their title.

    pydoc indents everything but its section names, so no documentation line can read as a heading.
    """
    out: list[str] = []
    section = ""
    for line in text.split("\n")[1:]:  # the first line is "Python Library Documentation: module x"
        if _SECTION.fullmatch(line):
            section = line
            if section not in _DROPPED_SECTIONS:
                out.append(f"\n## {section.title()}\n")
            continue
        if section in _DROPPED_SECTIONS:
            continue
        if section == "CLASSES" and (found := _CLASS.match(line)):
            out.append(f"\n### class {found[1]}\n")
        elif section == "FUNCTIONS" and (found := _FUNCTION.match(line)):
            out.append(f"\n### {found[1]}()\n")
        # Class bodies are drawn with a " |  " margin; its empty lines are paragraph breaks.
        out.append("" if _EMPTY_CLASS_LINE.fullmatch(line) else line.rstrip())
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip("\n") + "\n"


def summary_line(paragraph: str, limit: int = 90) -> str:
    """The first sentence of a docstring's first paragraph, cut to `limit` characters at a word."""
    sentence = re.split(r"(?<=[.!?])\s", paragraph.strip(), maxsplit=1)[0]
    if len(sentence) <= limit:
        return sentence
    return sentence[:limit].rsplit(" ", 1)[0].rstrip(",;:") + "…"


def module_document(module: RenderedModule) -> SourceDoc:
    """The `SourceDoc` of one rendered module: id `module:<name>`, title `<name> — <summary>`."""
    summary = summary_line(module.summary)
    title = f"{module.name} — {summary}" if summary else module.name
    return SourceDoc(
        id=f"module:{module.name}",
        title=title,
        text=pydoc_to_markdown(module.text),
        url=module.url or f"pydoc:{module.name}",
        format="markdown",
    )


def render_modules(
    names: list[str],
    *,
    workers: int = 2,
    batch_size: int = 32,
    timeout: float = 60.0,
    progress: Callable[[int, int, str], None] | None = None,
) -> tuple[list[RenderedModule], list[str]]:
    """Import and render `names` in child processes: (rendered modules in `names` order, skipped names).

    Each child renders a batch and is killed after `timeout` seconds. Modules that fail to import or
    render are skipped; when a child dies or hangs, the module it was on is skipped and the rest of its
    batch runs again in a new child.
    """
    batches = [names[i : i + batch_size] for i in range(0, len(names), batch_size)]
    rendered: dict[str, RenderedModule] = {}
    skipped: list[str] = []
    done = 0
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="pydocs") as pool:
        futures = [pool.submit(_render_batch, batch, timeout) for batch in batches]
        for future in as_completed(futures):
            batch_rendered, batch_skipped = future.result()
            rendered.update((module.name, module) for module in batch_rendered)
            skipped.extend(batch_skipped)
            done += len(batch_rendered) + len(batch_skipped)
            if progress is not None:
                last = batch_rendered[-1].name if batch_rendered else ""
                progress(done, len(names), f"pydoc {last}")
    return [rendered[name] for name in names if name in rendered], sorted(skipped)


def _render_batch(names: list[str], timeout: float) -> tuple[list[RenderedModule], list[str]]:
    rendered: list[RenderedModule] = []
    skipped: list[str] = []
    pending = list(names)
    while pending:
        output, finished = _run_worker(pending, timeout)
        answered: set[str] = set()
        for line in output.splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by a killed child
                continue
            if not isinstance(record, dict) or record.get("name") not in pending:
                continue
            name = str(record["name"])
            answered.add(name)
            if "text" in record:
                rendered.append(
                    RenderedModule(name, str(record["summary"]), str(record["url"]), str(record["text"]))
                )
            else:
                skipped.append(name)
        pending = [name for name in pending if name not in answered]
        if pending and not finished:
            # The child hung or died on the first module it did not answer for: skip that one only.
            skipped.append(pending.pop(0))
        elif pending:
            skipped.extend(pending)  # the child exited normally without them; nothing to retry
            pending = []
    return rendered, skipped


def _run_worker(names: list[str], timeout: float) -> tuple[str, bool]:
    """Run one child on `names`: (its stdout, whether it exited cleanly within the time limit)."""
    # No display: nothing the imports do can open a window. -I: no user site, no $PYTHON* variables and
    # no current directory on sys.path, so a user's `random.py` cannot shadow the standard library.
    # Modules it imports run code: none of our secrets in its environment.
    env = {k: v for k, v in child_environment().items() if k not in {"DISPLAY", "WAYLAND_DISPLAY"}}
    command = [sys.executable, "-I", "-c", _WORKER.read_text(encoding="utf-8"), *names]
    try:
        completed = subprocess.run(
            command, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, env=env, check=False
        )
    except subprocess.TimeoutExpired as exc:
        return _decode(exc.stdout), False
    return _decode(completed.stdout), completed.returncode == 0


def _decode(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data


def pydocs_documents(
    progress: Callable[[int, int, str], None] | None = None,
    *,
    names: Iterable[str] | None = None,
    workers: int = 2,
    timeout: float = 60.0,
) -> list[SourceDoc]:
    """Every document of the `pydocs` corpus: reference topics, then one per standard-library module
    (`names`, default `module_names()`)."""
    modules, _skipped = render_modules(
        list(names) if names is not None else module_names(),
        workers=workers,
        timeout=timeout,
        progress=progress,
    )
    return topic_documents() + [module_document(module) for module in modules]
