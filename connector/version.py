"""The connector's version and User-Agent, read from the installed package metadata.

The repo's manifest.json is the source of truth; pyproject.toml carries the same
version (tests/test_manifest.py keeps them equal), so the metadata of an install,
wheel or editable, is the manifest's version. A wheel holds no manifest.json: it is
read only from a source tree that was never installed.
"""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

DISTRIBUTION = "finetuning-connector"
MANIFEST_PATH = Path(__file__).resolve().parent.parent / "manifest.json"


def _version() -> str:
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        # Running from a source tree that was never installed: ask the manifest.
        try:
            return str(json.loads(MANIFEST_PATH.read_text(encoding="utf-8"))["version"])
        except (OSError, ValueError, KeyError):
            return "0+unknown"


__version__ = _version()
USER_AGENT = f"finetuning-connector/{__version__} (+https://github.com/finetuning-connector)"
