"""Imports flow one way: each module may import only the layers below it (docs/architecture.md).

Every import form counts: `import openheavy.x`, `from openheavy.x import y`, `from openheavy import x`,
relative imports (`from .x import y`, `from .. import x`) and `importlib.import_module("openheavy.x")`
(any string constant naming an openheavy module, so lazy-import tables are seen too).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import openheavy

PACKAGE = Path(openheavy.__file__).parent
DOC = Path(__file__).parents[1] / "docs" / "architecture.md"

# Leaves every layer may use: data, errors, pure functions over model output and option values, and
# owner-only file creation, each importing nothing.
BASE = {"types", "errors", "json_output", "normalize", "option_lists", "private_files"}
CORE: dict[str, set[str]] = {
    "types": set(),
    "errors": set(),
    "prompts": {"errors"},
    "json_output": set(),
    "normalize": set(),
    "option_lists": set(),
    "private_files": {"errors"},
    "config": BASE,
    "citations": BASE,
    "answer_text": BASE | {"citations", "question_forms", "search"},
    "question_forms": BASE,
    "grounding": BASE | {"search"},
    "evidence": BASE | {"search"},
    "models": BASE | {"config", "models"},
    "sqlite_migrations": BASE,
    "pdf": set(),
    "net": BASE | {"net", "pdf"},
    # web backends read their keys and the allow-list from the settings, and pages through net
    "search": BASE | {"search", "sqlite_migrations", "net", "config"},
    "corpus": BASE | {"search", "corpus", "pdf"},
    "sandbox": BASE | {"config"},
    "tools": BASE | {"search", "tools", "prompts", "sandbox"},
    "trace": BASE | {"sqlite_migrations"},
    "display": BASE | {"trace", "display"},
    "verify": BASE | {"models", "prompts", "verify"},
    "rank": BASE | {"models", "prompts", "verify", "answer_text"},
    "program_aided": BASE | {"models", "prompts", "rank", "sandbox", "tools", "verify"},
    "agent": BASE
    | {"models", "tools", "search", "prompts", "citations", "answer_text", "question_forms", "grounding"}
    | {"evidence", "dated_choice"},
    "direct": BASE | {"agent", "models", "prompts", "answer_text"},
    "partition": BASE,
    "planning": BASE | {"partition", "search", "question_forms"},
    "aggregation": BASE | {"agent", "citations", "partition", "verify", "answer_text", "search"},
    "item_check": BASE | {"agent", "models", "prompts", "search", "question_forms"},
    "dated_choice": BASE | {"question_forms", "search"},
    "heavy": BASE
    | {"agent", "verify", "rank", "models", "search", "tools", "prompts", "citations"}
    | {"partition", "planning", "aggregation", "item_check", "dated_choice", "answer_text", "question_forms"},
    "modes": BASE
    | {"config", "models", "search", "tools", "agent", "citations", "direct", "heavy", "rank"}
    | {"verify", "modes", "planning", "program_aided"},
}
# The shells sit on top of the core, in this order: each may import the whole core and the shells
# before it, never one after it (the library must not need the CLI, an eval must not need a server).
SHELL_ORDER = ["api", "__init__", "evals", "audit", "server", "cli", "__main__"]
ALLOWED: dict[str, set[str]] = dict(CORE)
for position, shell in enumerate(SHELL_ORDER):
    ALLOWED[shell] = set(CORE) | set(SHELL_ORDER[: position + 1])
_MODULE_NAME = re.compile(r"openheavy(?:\.\w+)+")


def _layer(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def _module_of(path: Path) -> list[str]:
    """The dotted package path of `path`, e.g. ["openheavy", "models"] for models/base.py."""
    parts = ["openheavy", *path.relative_to(PACKAGE).with_suffix("").parts]
    return parts if path.name == "__init__.py" and parts.pop() else parts[:-1]


def _internal_imports(path: Path, package: list[str] | None = None) -> set[str]:
    """The top-level openheavy layers that `path` imports, in any form. `package` is the dotted
    package the file belongs to (found from its place in the tree when not given)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    if package is None:
        package = _module_of(path) if path.is_relative_to(PACKAGE) else ["openheavy"]
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            names.append(module)
            if module == "openheavy":  # `from openheavy import cli`: the names are modules or re-exports
                names += [f"openheavy.{alias.name}" for alias in node.names]
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and _MODULE_NAME.fullmatch(node.value)
        ):
            names.append(node.value)
    layers = {name.split(".")[1] for name in names if name.startswith("openheavy.")}
    # `from openheavy import Heavy` names a re-export of the package root, not a layer
    return {layer for layer in layers if (PACKAGE / layer).is_dir() or (PACKAGE / f"{layer}.py").exists()}


def test_every_module_has_a_known_layer() -> None:
    for path in PACKAGE.rglob("*.py"):
        assert _layer(path) in ALLOWED, f"{path}: add layer {_layer(path)!r} to ALLOWED"


def test_imports_flow_one_way() -> None:
    violations = []
    for path in sorted(PACKAGE.rglob("*.py")):
        layer = _layer(path)
        for imported in _internal_imports(path) - ALLOWED[layer] - {layer}:
            violations.append(f"{path.relative_to(PACKAGE)} ({layer}) imports openheavy.{imported}")
    assert not violations, "\n".join(violations)


def test_the_checker_sees_every_import_form(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import importlib\n"
        "from openheavy.cli import app\n"
        "import openheavy.heavy\n"
        "from openheavy import api\n"
        "from openheavy import Heavy\n"
        "evals = importlib.import_module('openheavy.evals.harness')\n"
    )
    assert _internal_imports(bad) == {"cli", "heavy", "api", "evals"}


def test_relative_imports_are_resolved(tmp_path: Path) -> None:
    # as if the file were openheavy/verify/vote.py: `.` is openheavy.verify, `..` is openheavy
    module = tmp_path / "vote.py"
    module.write_text("from . import base\nfrom ..heavy import Orchestrator\nfrom .. import cli\n")
    assert _internal_imports(module, ["openheavy", "verify"]) == {"verify", "heavy", "cli"}
    assert _module_of(PACKAGE / "verify" / "vote.py") == ["openheavy", "verify"]
    assert _module_of(PACKAGE / "verify" / "__init__.py") == ["openheavy", "verify"]


def test_the_shells_are_checked_too() -> None:
    assert "cli" not in ALLOWED["evals"] and "server" not in ALLOWED["api"]
    assert "evals" in ALLOWED["cli"] and "api" in ALLOWED["evals"]


def test_the_design_doc_describes_every_layer() -> None:
    """docs/architecture.md is the human version of these rules: it names every layer."""
    text = DOC.read_text(encoding="utf-8")
    table = {m.group(1) for m in re.finditer(r"^\| `([\w_]+)/?(?:\.py)?`", text, flags=re.M)}
    missing = set(ALLOWED) - table - {"__init__", "__main__"}
    assert not missing, f"docs/architecture.md does not describe the layers {sorted(missing)}"
