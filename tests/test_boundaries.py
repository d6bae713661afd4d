"""The emulator is self-contained: only the commands that run it import it."""

from __future__ import annotations

import ast
from pathlib import Path

import tcsms_poller

PACKAGE = Path(tcsms_poller.__file__).parent
ALLOWED = {"commands/demo.py", "commands/emulator.py"}


def _imported_modules(tree: ast.AST) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_only_the_demo_and_emulator_commands_import_the_emulator() -> None:
    importers = set()
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative.startswith("emulator/"):
            continue
        modules = _imported_modules(ast.parse(path.read_text(encoding="utf-8")))
        if any(name.split(".")[:2] == ["tcsms_poller", "emulator"] for name in modules):
            importers.add(relative)
    assert importers == ALLOWED
