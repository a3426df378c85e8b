"""The README's config file reference is generated from the validator's schemas.

Like the trigger and action tables (tests/test_readme.py), the section between
the markers must equal `config_markdown()`; and every key the validator
accepts is in it, with a description.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import voluptuous as vol

from connector.automation.automations import AUTOMATION_KEYS
from connector.automation.jsonschema import to_json_schema
from connector.automation.loader import parse_config
from connector.automation.reference import config_markdown
from connector.automation.schema import CONFIG_REFERENCE, ENTRY_KEYS, ConfigSection
from connector.automation.validate import SECTIONS

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCK = re.compile(
    r"<!-- BEGIN GENERATED: config reference -->\n(.*?)<!-- END GENERATED -->", re.DOTALL
)


def keys_of(schema: vol.Schema) -> list[str]:
    return [str(key.schema) for key in schema.schema]


def section(path: str) -> ConfigSection:
    return next(s for s in CONFIG_REFERENCE if s.path == path)


def test_readme_reference_matches_the_schemas() -> None:
    match = BLOCK.search(README.read_text(encoding="utf-8"))
    assert match is not None, "README lost its config reference markers"
    assert match.group(1).strip() == config_markdown().strip(), (
        "README config reference is stale: regenerate it with "
        "`python -m connector.automation.reference config`"
    )


def test_the_module_prints_the_reference() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "connector.automation.reference", "config"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert done.stdout == config_markdown()


def test_every_key_of_every_section_has_a_description() -> None:
    for item in CONFIG_REFERENCE:
        for key in item.schema.schema:
            assert key.description, f"{item.path or 'top level'}.{key.schema} has no description"


def test_the_reference_covers_every_key_the_validator_accepts() -> None:
    documented = {item.path for item in CONFIG_REFERENCE}
    top = keys_of(section("").schema)
    assert tuple(top) == SECTIONS
    # Every mapping section has its own table (state_dir and automations are not mappings).
    assert documented >= {name for name in top if name not in ("state_dir", "automations")}
    assert set(keys_of(section("automations[]").schema)) | {"trigger", "condition", "action"} == (
        set(AUTOMATION_KEYS)
    )
    for kind in ("trigger", "action"):
        entry = keys_of(section(f"automations[].{kind}s[]").schema)
        assert entry[0] == kind
        assert set(entry[1:]) == set(ENTRY_KEYS)


def test_the_tables_hold_defaults_and_ranges() -> None:
    text = config_markdown()

    for row in [
        "| `finetuning.base_url` | none | an http:// or https:// URL | API address (default "
        "https://pub.finetuning.ai) |",
        "| `finetuning.reads_per_window` | `60` | whole number, 1 to 10000 |",
        "| `finetuning.rate_window` | `60` | number, 0.1 to 3600 |",
        '| `webhook.listen` | required | "host:port", port 1 to 65535 |',
        "| `webhook.token` | none | text, at least 16 characters |",
        "| `webhook.max_connections` | `512` | whole number, 16 to 65536 |",
        "| `poll.idle_interval` | `60` | number, above 0 |",
        "| `poll.backfill` | `false` | true or false |",
        "| `runtime.max_concurrent_runs` | `10` | whole number, at least 1 |",
        '| `state_dir` | `".ftconnect"` | a folder path |',
        "| `finetuning.api_key` | none | `ft_live_` followed by 32 hex characters |",
    ]:
        assert row in text, row


def test_defaults_in_the_reference_are_the_loaded_defaults() -> None:
    loaded = parse_config("", environ={})
    exported = {
        name: to_json_schema(section(name).schema)["properties"]
        for name in ("finetuning", "webhook", "poll", "runtime")
    }

    assert exported["finetuning"]["rate_window"]["default"] == loaded.finetuning.rate_window
    assert exported["finetuning"]["retry_backoff"]["default"] == loaded.finetuning.retry_backoff
    assert exported["poll"]["idle_interval"]["default"] == loaded.poll.idle_interval
    assert exported["poll"]["active_interval"]["default"] == loaded.poll.active_interval
    assert exported["runtime"]["retention_days"]["default"] == loaded.retention_days
    assert exported["runtime"]["max_concurrent_runs"]["default"] == loaded.max_concurrent_runs


def test_a_validator_may_state_its_json_schema_and_optional_is_nullable() -> None:
    exported = to_json_schema(section("webhook").schema)["properties"]

    assert exported["max_connections"]["type"] == "integer"
    assert exported["max_connections"]["minimum"] == 16
    assert exported["token"]["type"] == ["string", "null"]
    assert exported["token"]["minLength"] == 16
