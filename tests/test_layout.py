"""The package's shape, kept true by tests: the README's layout table matches the tree,
pyproject lists every package, imports go one way (no circle, no layer reaching up),
modules stay readable in size, and nothing cites a document outside the repo."""

from __future__ import annotations

import ast
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "connector"
README = ROOT / "README.md"
# Installed inside the package (pyproject's package-dir), kept at the repo's top for authors.
PLUGIN_FOLDERS = {
    "connector.triggers": ROOT / "triggers",
    "connector.actions": ROOT / "actions",
    "connector.examples": ROOT / "examples",  # package data: ftconnect demo reads demo.yaml
}
LONG_MODULE = 550  # lines: "about 500"; a longer module says why at its top
LONG_REASON = "Over 500 lines because"


def _packages() -> dict[str, Path]:
    """Every package of the distribution: dotted name -> folder."""
    found = {
        ".".join(init.parent.relative_to(ROOT).parts): init.parent
        for init in PACKAGE.rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    found.update(PLUGIN_FOLDERS)
    return found


def _modules() -> Iterator[tuple[str, Path]]:
    """Every module of the distribution: dotted name, file."""
    for package, folder in _packages().items():
        for file in sorted(folder.glob("*.py")):
            name = package if file.name == "__init__.py" else f"{package}.{file.stem}"
            yield name, file


# -- the README's layout table -------------------------------------------------------------


def _layout_rows() -> dict[str, str]:
    """The layout table: first cell (a path in backticks) -> second cell."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[0].startswith("`"):
            rows[cells[0].strip("`")] = cells[1]
    return rows


def test_the_readme_layout_table_lists_every_module_of_every_package() -> None:
    rows = _layout_rows()
    for folder in _packages().values():
        path = f"{folder.relative_to(ROOT).as_posix()}/"
        assert path in rows, f"README's layout table has no row for {path}"
        listed = set(re.findall(r"`([A-Za-z_0-9]+\.py)`", rows[path]))
        on_disk = {f.name for f in folder.glob("*.py")} - {"__init__.py", "__main__.py"}
        assert listed == on_disk, (
            f"README's row for {path}: missing {sorted(on_disk - listed)}, "
            f"gone {sorted(listed - on_disk)}"
        )


def test_every_path_in_the_layout_table_exists() -> None:
    for path in _layout_rows():
        assert (ROOT / path).exists(), f"README's layout table names {path}, which does not exist"


def test_pyproject_lists_exactly_the_packages_of_the_tree() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    setuptools = pyproject["tool"]["setuptools"]
    assert sorted(setuptools["packages"]) == sorted(_packages())
    mapped = {name: ROOT / folder for name, folder in setuptools["package-dir"].items()}
    assert mapped == PLUGIN_FOLDERS


# -- imports -------------------------------------------------------------------------------


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(name: str, file: Path, *, top_level_only: bool) -> set[str]:
    """The connector modules `name` imports: those run at import time (imports under
    `if TYPE_CHECKING:` never run), or all of them, annotations' imports included."""
    tree = ast.parse(file.read_text(encoding="utf-8"), str(file))
    package = name if file.name == "__init__.py" else name.rpartition(".")[0]
    skipped: set[int] = set()
    if top_level_only:
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and _is_type_checking(node):
                skipped.update(id(inner) for inner in ast.walk(node))
        # What runs on import: the module body and the blocks it opens, not functions.
        nodes: list[ast.AST] = []
        pending: list[ast.stmt] = list(tree.body)
        while pending:
            node = pending.pop()
            nodes.append(node)
            if isinstance(node, ast.If | ast.Try | ast.With | ast.ClassDef):
                for field in ("body", "orelse", "finalbody"):
                    pending.extend(getattr(node, field, []))
                for handler in getattr(node, "handlers", []):
                    pending.extend(handler.body)
    else:
        nodes = list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{anchor}.{base}" if base else anchor
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    modules = dict(_modules())
    return {m for m in found if m in modules and m != name}


def test_module_level_imports_have_no_circle() -> None:
    modules = dict(_modules())
    graph = {name: _imports(name, file, top_level_only=True) for name, file in modules.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                circle = [*stack[stack.index(nxt) :], nxt]
                pytest.fail(f"import circle: {' -> '.join(circle)}")
            if nxt not in state:
                walk(nxt)
        stack.pop()
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            walk(name)


# Which layers a layer must never import, even inside a function. Reading down the
# event path: providers know nothing of automations; automations are declarations
# that know no runtime; plugins use their contexts, never the runtime or the CLI;
# only the CLI imports the CLI; only the CLI builds a connector through `app`.
FORBIDDEN = {
    "connector.errors": ("connector.",),
    "connector.redaction": ("connector.",),
    "connector.providers": (
        "connector.automation",
        "connector.dispatch",
        "connector.api",
        "connector.journal",
        "connector.ingress",
        "connector.delivery",
        "connector.cli",
        "connector.app",
        "connector.triggers",
        "connector.actions",
        "connector.sandbox",
        "connector.events",
        "connector.endpoint",
        "connector.plugin",
    ),
    "connector.automation": (
        "connector.dispatch",
        "connector.api",
        "connector.journal",
        "connector.ingress",
        "connector.delivery",
        "connector.cli",
        "connector.app",
        "connector.sandbox",
    ),
    "connector.journal": (
        "connector.dispatch",
        "connector.api",
        "connector.ingress",
        "connector.delivery",
        "connector.automation",
        "connector.cli",
        "connector.app",
        "connector.sandbox",
    ),
    # The stand-in for the providers' servers: it shares no code with the client side.
    "connector.sandbox": ("connector.",),
    "connector.events": (
        "connector.automation",
        "connector.journal",
        "connector.ingress",
        "connector.dispatch",
        "connector.api",
        "connector.delivery",
        "connector.cli",
        "connector.app",
        "connector.sandbox",
    ),
    "connector.delivery": (
        "connector.dispatch",
        "connector.api",
        "connector.automation",
        "connector.cli",
        "connector.app",
        "connector.sandbox",
    ),
    # Ingress hands events up through a callback; it knows nothing of what records them.
    "connector.ingress": (
        "connector.journal",
        "connector.dispatch",
        "connector.api",
        "connector.delivery",
        "connector.automation",
        "connector.cli",
        "connector.app",
        "connector.sandbox",
    ),
    "connector.dispatch": ("connector.api", "connector.cli", "connector.app"),
    # The HTTP API stands on a runtime; only `app` (and the CLI through it) builds one.
    "connector.api": ("connector.cli", "connector.app", "connector.sandbox"),
    # The web page is served by the API's listener, from the same runtime and tokens.
    "connector.web": ("connector.cli", "connector.app", "connector.sandbox"),
    "connector.triggers": (
        "connector.ingress",
        "connector.dispatch",
        "connector.api",
        "connector.cli",
        "connector.app",
        "connector.sandbox",
    ),
    "connector.actions": (
        "connector.ingress",
        "connector.dispatch",
        "connector.api",
        "connector.cli",
        "connector.app",
        "connector.sandbox",
    ),
    "connector.app": ("connector.cli",),
    "connector.plugin": (
        "connector.dispatch",
        "connector.api",
        "connector.journal",
        "connector.ingress",
        "connector.cli",
        "connector.app",
    ),
}


def _layer_rules() -> Iterator[tuple[str, str, str]]:
    for name, file in _modules():
        for layer, banned in FORBIDDEN.items():
            if name == layer or name.startswith(f"{layer}."):
                for target in sorted(_imports(name, file, top_level_only=False)):
                    for prefix in banned:
                        if (target == prefix.rstrip(".") or target.startswith(prefix)) and (
                            not target.startswith(f"{layer}.") and target != layer
                        ):
                            yield name, target, layer


def test_no_layer_imports_one_it_must_not() -> None:
    broken = [f"{name} imports {target}" for name, target, _ in _layer_rules()]
    assert broken == []


def test_the_layer_rules_see_imports_inside_functions(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from __future__ import annotations\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from connector.dispatch.runtime import Runtime\n"
        "def late():\n    from connector.cli import main\n    return main\n"
    )
    anywhere = _imports("connector.automation.probe", probe, top_level_only=False)
    assert {"connector.cli.main", "connector.dispatch.runtime"} <= anywhere
    assert _imports("connector.automation.probe", probe, top_level_only=True) == set()


# -- size ----------------------------------------------------------------------------------


def test_no_module_is_long_without_saying_why() -> None:
    long = []
    for name, file in _modules():
        text = file.read_text(encoding="utf-8")
        lines = text.count("\n")
        if lines > LONG_MODULE:
            docstring = ast.get_docstring(ast.parse(text)) or ""
            if LONG_REASON not in docstring:
                long.append(f"{name}: {lines} lines")
    assert long == [], f"modules over about 500 lines without '{LONG_REASON} ...' at the top"


# -- the repo stands alone -----------------------------------------------------------------

OUTSIDE = re.compile(
    r"DESIGN\.md|shared/api|shared/seeds|FINETUNING\.md|TEMPOLOR\.md|decision 16|section 16"
)


def test_nothing_cites_a_document_outside_the_repo() -> None:
    cited = []
    roots = ["connector", "triggers", "actions", "tests", "bench", "examples", "docs"]
    roots += ["custom_components", "tests_ha", ".ci"]
    files = [README, ROOT / "pyproject.toml"]
    for folder in roots:
        files += [
            p
            for p in (ROOT / folder).rglob("*")
            if p.suffix in {".py", ".md", ".yaml", ".json", ".html", ".js", ".css"}
            or p.parent.name == ".ci"
        ]
    for file in files:
        if file == Path(__file__) or "__pycache__" in file.parts:
            continue
        for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
            if OUTSIDE.search(line):
                cited.append(f"{file.relative_to(ROOT)}:{number}: {line.strip()[:80]}")
    assert cited == []
