"""`connector.automation` stands before the runtime: the config and the plugin API load alone.

Reading the file, validating it and declaring triggers and actions needs none of
the running connector (dispatch, journal, ingress, delivery, cli, app), no HTTP
client and no provider client: each module is imported in a fresh interpreter
and what it pulled in is listed. The source is read too, so an import hidden
under TYPE_CHECKING or inside a function cannot bring the circle back.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import connector.automation

PACKAGE_DIR = Path(connector.automation.__path__[0])
MODULES = sorted(
    f"connector.automation.{path.stem}"
    for path in PACKAGE_DIR.glob("*.py")
    if path.stem != "__init__"
)

# The running connector, and what only it needs.
RUNTIME_PACKAGES = (
    "connector.dispatch",
    "connector.journal",
    "connector.ingress",
    "connector.delivery",
    "connector.cli",
    "connector.app",
)
HEAVY = (
    "aiohttp",
    "pydantic",
    "connector.events",
    "connector.providers.finetuning.client",
    "connector.providers.finetuning.models",
    "connector.providers.tempolor.client",
    "connector.providers.tempolor.models",
)

_PROBE = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
print(json.dumps(sorted(sys.modules)))
"""


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def test_the_package_has_the_modules_this_test_walks() -> None:
    names = {name.rsplit(".", 1)[1] for name in MODULES}
    assert {"model", "loader", "problems", "validate", "schema", "specs", "registry"} <= names


@pytest.mark.parametrize("module", MODULES)
def test_importing_a_module_loads_nothing_of_the_runtime(module: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, module],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout)
    assert module in loaded
    pulled = [name for name in loaded if _within(name, RUNTIME_PACKAGES + HEAVY)]
    assert pulled == [], f"{module} loads {pulled}"


def _imported_names(tree: ast.AST) -> list[str]:
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


@pytest.mark.parametrize("module", MODULES)
def test_no_import_of_the_runtime_even_for_type_checking(module: str) -> None:
    path = PACKAGE_DIR / f"{module.rsplit('.', 1)[1]}.py"
    imported = _imported_names(ast.parse(path.read_text(encoding="utf-8")))
    assert imported, f"{module} imports nothing at all: is this the right file?"
    assert [name for name in imported if _within(name, RUNTIME_PACKAGES)] == []
