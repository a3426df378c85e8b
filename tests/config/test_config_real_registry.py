"""The installed triggers and actions: their document, their examples, the example files."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from connector.automation.jsonschema import registry_document
from connector.automation.loader import load_config
from connector.automation.reference import registry_markdown
from connector.automation.registry import Registry

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


class AnyEnvironment(Mapping[str, str]):
    """An environment where every variable is set (the example files read API keys)."""

    def __getitem__(self, name: str) -> str:
        return f"test-value-for-{name.lower()}"

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry.discover(with_plugins=False)


def test_the_document_describes_every_trigger_and_action(registry: Registry) -> None:
    document = registry_document(registry)
    definitions = document["$defs"]

    assert {f"trigger.{key}" for key in registry.triggers} | {
        f"action.{key}" for key in registry.actions
    } == set(definitions)
    for name, definition in definitions.items():
        assert definition["title"], name
        assert definition["description"], name
        assert definition["examples"], name
        assert definition["type"] == "object", name
        assert definition["x-providers"], name
    json.dumps(document)


def test_the_markdown_has_a_row_per_trigger_and_action(registry: Registry) -> None:
    table = registry_markdown(registry)

    for key in [*registry.triggers, *registry.actions]:
        assert f"| `{key}` |" in table


def test_every_declared_example_uses_only_declared_options(registry: Registry) -> None:
    # Examples are documentation (one shows `!secret` as text, one a folder of the
    # reader's machine), so they are not loaded; but a misspelt option would mislead.
    for name, definition in registry_document(registry)["$defs"].items():
        example = definition["examples"][0]
        assert set(example) <= set(definition["properties"]), name


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_the_example_files_load_cleanly(path: Path, registry: Registry) -> None:
    config = load_config(path, registry=registry, environ=AnyEnvironment())

    assert config.automations
    assert config.source == path.resolve()
