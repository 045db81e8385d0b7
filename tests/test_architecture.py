"""Imports flow one way (ARCHITECTURE.md): each module may import only the layers below it."""

from __future__ import annotations

import ast
from pathlib import Path

import openheavy

PACKAGE = Path(openheavy.__file__).parent

# Leaves every layer may use: data, errors, pure functions over model output, and owner-only file
# creation, each importing nothing.
BASE = {"types", "errors", "json_output", "normalize", "private_files"}
ALLOWED: dict[str, set[str]] = {
    "types": set(),
    "errors": set(),
    "prompts": {"errors"},
    "json_output": set(),
    "normalize": set(),
    "private_files": set(),
    "config": BASE,
    "citations": BASE,
    "models": BASE | {"config", "models"},
    "sqlite_migrations": BASE,
    "search": BASE | {"search", "sqlite_migrations"},
    "corpus": BASE | {"search", "corpus"},
    "tools": BASE | {"search", "tools", "prompts"},
    "trace": BASE | {"sqlite_migrations"},
    "display": BASE | {"trace"},
    "verify": BASE | {"models", "prompts"},
    "rank": BASE | {"models", "prompts", "verify"},
    "agent": BASE | {"models", "tools", "search", "prompts", "citations"},
    "direct": BASE | {"agent", "models", "prompts"},
    "slicing": set(),
    "heavy": BASE | {"agent", "verify", "rank", "models", "search", "prompts", "slicing", "citations"},
    "modes": BASE
    | {"config", "models", "search", "agent", "citations", "direct", "heavy", "rank", "verify", "modes"},
}
SHELLS = {"api", "cli", "evals", "server", "audit", "__init__", "__main__"}


def _layer(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0].removesuffix(".py")


def _internal_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("openheavy."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("openheavy."):
                    found.add(alias.name.split(".")[1])
    return found


def test_every_module_has_a_known_layer() -> None:
    for path in PACKAGE.rglob("*.py"):
        layer = _layer(path)
        assert layer in ALLOWED or layer in SHELLS, f"{path}: add layer {layer!r} to ALLOWED"


def test_imports_flow_one_way() -> None:
    violations = []
    for path in sorted(PACKAGE.rglob("*.py")):
        layer = _layer(path)
        if layer in SHELLS:
            continue
        for imported in _internal_imports(path) - ALLOWED[layer] - {layer}:
            violations.append(f"{path.relative_to(PACKAGE)} imports openheavy.{imported}")
    assert not violations, "\n".join(violations)


def test_the_checker_sees_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from openheavy.cli import app\nimport openheavy.heavy\n")
    assert _internal_imports(bad) == {"cli", "heavy"}
