"""The house plan holds: imports run only leftwards along the data flow
(ARCHITECTURE.md), the presenting layers never import one another, and `core`
stays pure Python."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import casewatch

PACKAGE = Path(casewatch.__file__).parent

# Used by every step: settings read from the environment, a bulk-insert helper, value types.
SHARED = frozenset({"config", "bulk", "core"})
# Position along the flow: a step may import steps of lower rank only.
RANK = {
    "uscis": 1,
    "audit": 2,
    "accounts": 3,
    "cases": 4,
    "monitor": 5,
    "notify": 6,
    "maintenance": 7,
    "web": 8,
    "portal": 8,
    "api": 8,
    "settings": 9,
    "urls": 9,
    "wsgi": 9,
    "cli": 10,
    "__main__": 11,
}


def _imports(path: Path) -> Iterator[tuple[str, int]]:
    """Every `casewatch.<step>` a module imports, with its line."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "casewatch" and len(parts) > 1:
                yield parts[1], node.lineno


def _step(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def test_every_module_belongs_to_a_known_step() -> None:
    unknown = {
        _step(path)
        for path in PACKAGE.rglob("*.py")
        if _step(path) not in RANK and _step(path) not in SHARED and _step(path) != "__init__"
    }
    assert unknown == set(), "add the new folder to RANK or SHARED, and to ARCHITECTURE.md"


def test_imports_run_only_leftwards_along_the_flow() -> None:
    wrong = []
    for path in PACKAGE.rglob("*.py"):
        source = _step(path)
        for target, line in _imports(path):
            if target == source or target in SHARED or source in ("__init__",):
                continue
            if source in SHARED or RANK.get(target, 99) >= RANK.get(source, 0):
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {target}")
    assert wrong == [], "\n".join(wrong)


def test_core_knows_nothing_of_django_or_http() -> None:
    wrong = []
    for path in (PACKAGE / "core").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            wrong += [
                f"{path.name}:{node.lineno} {name}"
                for name in names
                if name.split(".")[0] in ("django", "httpx", "huey")
            ]
    assert wrong == []
