"""Child process: import each named module and render its pydoc text, one JSON line per module.

Run as `python -I -c <this source> NAME...` by `openheavy.corpus.pydocs`, never imported by openheavy:
importing arbitrary standard-library modules can print, read stdin, start threads or crash, and none of
that may touch the caller. It uses the standard library only.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import pydoc
import sys


def main(names: list[str]) -> None:
    # Records go to a private copy of stdout; fd 1 and 2 then point to /dev/null, so whatever a module
    # prints while importing (even from C code) cannot corrupt the JSON lines.
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    for name in names:
        try:
            module = importlib.import_module(name)
            # plaintext: no overstrike bold, which the default text renderer adds for terminals.
            text = pydoc.render_doc(module, renderer=pydoc.plaintext)  # type: ignore[attr-defined]
            # The docstring itself: pydoc.getdoc falls back to the comments at the top of the file.
            doc = module.__doc__ if isinstance(module.__doc__, str) else ""
            record = {
                "name": name,
                "summary": " ".join(inspect.cleandoc(doc).strip().split("\n\n")[0].split()),
                "url": _docs_url(module),
                "text": text,
            }
        except BaseException as exc:  # SystemExit and KeyboardInterrupt from imports count as failures
            record = {"name": name, "error": f"{type(exc).__name__}: {exc}"[:300]}
        out.write(json.dumps(record) + "\n")
        out.flush()


def _docs_url(module: object) -> str:
    """The online reference pydoc itself points to (it honours $PYTHONDOCS), or ""."""
    try:
        return pydoc.TextDoc().getdocloc(module) or ""
    except Exception:  # the helper is undocumented; its absence must not lose the module
        return ""


if __name__ == "__main__":
    main(sys.argv[1:])
