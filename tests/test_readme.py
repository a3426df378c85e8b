"""The README's trigger and action tables are generated from the declarations."""

from __future__ import annotations

import re
from pathlib import Path

from connector.automation.reference import registry_markdown
from connector.automation.registry import default_registry

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCK = re.compile(
    r"<!-- BEGIN GENERATED: ftconnect schema --markdown -->\n(.*?)<!-- END GENERATED -->",
    re.DOTALL,
)


def test_readme_tables_match_the_declarations() -> None:
    match = BLOCK.search(README.read_text(encoding="utf-8"))
    assert match is not None, "README lost its generated block markers"
    expected = registry_markdown(default_registry()).strip()
    assert match.group(1).strip() == expected, (
        "README tables are stale: regenerate them with `ftconnect schema --markdown`"
    )


def test_readme_opens_with_the_two_setup_commands() -> None:
    text = README.read_text(encoding="utf-8")
    assert "pip install -q -e . && .venv/bin/ftconnect demo" in text
    assert "pip install -q -e '.[test]' && .venv/bin/python -m pytest" in text
