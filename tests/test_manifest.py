"""manifest.json is the source of truth for the version and requirements."""

from __future__ import annotations

import json
import tomllib
from importlib import metadata
from pathlib import Path

from connector.version import USER_AGENT, __version__

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = json.loads((ROOT / "manifest.json").read_text(encoding="utf-8"))
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_manifest_has_the_home_assistant_keys() -> None:
    for key in (
        "domain",
        "name",
        "version",
        "requirements",
        "iot_class",
        "codeowners",
        "documentation",
        "integration_type",
    ):
        assert key in MANIFEST, key
    assert MANIFEST["domain"] == "finetuning"


def test_pyproject_version_matches_the_manifest() -> None:
    assert PYPROJECT["project"]["version"] == MANIFEST["version"]


def test_pyproject_requirements_match_the_manifest() -> None:
    assert PYPROJECT["project"]["dependencies"] == MANIFEST["requirements"]


def test_installed_metadata_and_user_agent_carry_the_manifest_version() -> None:
    assert metadata.version("finetuning-connector") == MANIFEST["version"]
    assert __version__ == MANIFEST["version"]
    assert f"finetuning-connector/{MANIFEST['version']}" in USER_AGENT


def test_console_script_is_ftconnect() -> None:
    assert PYPROJECT["project"]["scripts"]["ftconnect"] == "connector.cli.main:main"
