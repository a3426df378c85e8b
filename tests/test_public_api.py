"""The names people import: `from connector import ...` and `from connector.plugin import ...`.

They load lazily (`import connector` stays cheap, so `ftconnect --help` does), each
resolves to the class the package uses itself, and a short program written only
against the top-level names runs against the sandbox."""

from __future__ import annotations

import ast
import builtins
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import connector
import connector.plugin

ROOT = Path(__file__).resolve().parent.parent


def test_all_lists_exactly_the_lazy_exports() -> None:
    assert connector.__all__ == sorted(connector._EXPORTS)
    assert set(dir(connector)) >= set(connector.__all__)


@pytest.mark.parametrize("name", connector.__all__)
def test_every_public_name_resolves_to_where_it_is_defined(name: str) -> None:
    value = getattr(connector, name)
    module = connector._EXPORTS[name]
    assert value is getattr(__import__(module, fromlist=[name]), name)
    if name != "__version__":
        assert value.__module__ == module, f"{name} is defined in {value.__module__}"


def test_an_unknown_name_is_an_attribute_error_that_names_it() -> None:
    with pytest.raises(AttributeError, match="'NoSuchThing'"):
        connector.NoSuchThing  # noqa: B018


def test_type_checkers_see_the_same_names() -> None:
    """The TYPE_CHECKING block imports each name from the module _EXPORTS names."""
    tree = ast.parse((ROOT / "connector" / "__init__.py").read_text(encoding="utf-8"))
    seen: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("connector"):
            seen.update({alias.name: node.module for alias in node.names})
    assert seen == connector._EXPORTS


def test_import_connector_loads_nothing_heavy() -> None:
    probe = (
        "import sys, connector; "
        "print([m for m in ('aiohttp', 'pydantic', 'yaml', 'jinja2', 'voluptuous') "
        "if m in sys.modules])"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(done.stdout.replace("'", '"')) == []


def test_the_plugin_module_exports_what_it_lists() -> None:
    for name in connector.plugin.__all__:
        assert hasattr(connector.plugin, name), name
    assert connector.plugin.ActionSpec is connector.ActionSpec
    assert connector.plugin.ActionContext is connector.ActionContext


def _plugin_example() -> str:
    """The indented code block of `connector.plugin`'s docstring, dedented."""
    doc = connector.plugin.__doc__ or ""
    lines = doc.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("    "))
    block = [line for line in lines[start:] if line.startswith("    ") or not line.strip()]
    return textwrap.dedent("\n".join(block))


async def test_the_plugin_docstring_example_runs_as_written() -> None:
    """The example a plugin author copies: it imports what it uses, registers, and runs."""
    namespace: dict[str, Any] = {"__name__": "shout_plugin"}
    # dont_inherit: this file's `from __future__ import annotations` must not hide a
    # missing import from the annotations, as it would not in the author's module.
    code = compile(_plugin_example(), "connector.plugin docstring", "exec", dont_inherit=True)
    exec(code, namespace)
    action = namespace["ACTION"]
    assert isinstance(action, connector.plugin.ActionSpec)
    registry = connector.Registry.discover(with_plugins=False)
    registry.add_action(action, "plugin shout_plugin")
    options = action.schema({"text": "hello"})
    logged: list[str] = []
    context = SimpleNamespace(log=logged.append)
    assert await action.run(context, options) == {"said": "hello"}
    assert logged == ["HELLO"]


README = ROOT / "README.md"
PYTHON_BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)
PLACEHOLDERS = {"api_key"}  # what the reader brings


def test_the_readme_python_blocks_use_no_name_they_do_not_import() -> None:
    """Each Python block of the README is complete but for its placeholders (top-level
    await allowed, as in `python -m asyncio`)."""
    blocks = PYTHON_BLOCK.findall(README.read_text(encoding="utf-8"))
    assert len(blocks) >= 2
    for block in blocks:
        tree = ast.parse(block)
        bound = set(PLACEHOLDERS) | set(dir(builtins))
        used: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.alias):
                bound.add((node.asname or node.name).split(".")[0])
            elif isinstance(node, ast.arg):
                bound.add(node.arg)
            elif isinstance(node, ast.Name):
                (used if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        assert used <= bound, f"README block uses {sorted(used - bound)} unimported:\n{block}"


async def test_a_program_using_only_top_level_names_runs_against_the_sandbox() -> None:
    """What the README's "From Python" shows: a client, a request, errors, one import."""
    from connector import (
        ConnectorError,
        FinetuningClient,
        GenerationRequest,
        GenerationStatus,
        ProviderError,
        RequestValidationError,
    )
    from connector.sandbox import SandboxConfig, run_sandbox

    fast = SandboxConfig(pending_delay=0.01, processing_delay=0.05, failure_rate=0.0)
    async with (
        run_sandbox(fast) as sandbox,
        FinetuningClient(sandbox.api_key, base_url=sandbox.url) as client,
    ):
        created = await client.create_generation(
            GenerationRequest(tags="lofi chill piano", duration=30, bpm=80)
        )
        done = await client.wait_for_generation(created.id, timeout=30)
        assert done.status is GenerationStatus.COMPLETED
        with pytest.raises(RequestValidationError) as caught:
            GenerationRequest(tags="x", duration=9999)
        assert isinstance(caught.value, ProviderError)
        assert isinstance(caught.value, ConnectorError)


def test_every_error_class_is_importable_from_the_top() -> None:
    import inspect

    import connector.errors as errors

    classes = {
        name
        for name, value in vars(errors).items()
        if inspect.isclass(value)
        and issubclass(value, errors.ConnectorError)
        and value.__module__ == errors.__name__
        and not name.startswith("_")
    }
    assert classes <= set(connector.__all__), sorted(classes - set(connector.__all__))
