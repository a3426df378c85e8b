"""The dependency floors: pyproject.toml, .ci/floors.txt and Home Assistant's pins agree.

Every dependency (runtime and test) is declared as `name>=floor`; .ci/floors.txt pins each at
that floor (`name==floor`), and .ci/run's floors job runs the suite on exactly those. Each floor
admits Home Assistant 2025.4's pin of the same library (.ci/home-assistant-2025.4.txt), which
installs an integration's requirements under its own constraints.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
FLOOR_SPEC = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)>=([0-9]+(?:\.[0-9]+)*)")
PIN = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([0-9]+(?:\.[0-9]+)*)")


def _name(name: str) -> str:
    """A distribution name as pip compares it (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _release(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def _floors(specs: list[str]) -> dict[str, str]:
    floors: dict[str, str] = {}
    for spec in specs:
        match = FLOOR_SPEC.fullmatch(spec)
        assert match is not None, f"{spec!r} is not a plain floor `name>=X.Y.Z`"
        floors[_name(match[1])] = match[2]
    assert len(floors) == len(specs), f"a dependency is named twice: {specs}"
    return floors


def _pins(path: Path) -> dict[str, str]:
    pins: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = re.sub(r"\s+#.*", "", raw).strip()  # a comment may follow a pin
        if not line or line.startswith("#"):
            continue
        match = PIN.fullmatch(line)
        assert match is not None, f"{path.name}, line {number}: {line!r} is not `name==X.Y.Z`"
        assert _name(match[1]) not in pins, f"{path.name}, line {number}: pinned twice"
        pins[_name(match[1])] = match[2]
    return pins


RUNTIME = _floors(PYPROJECT["project"]["dependencies"])
TEST = _floors(PYPROJECT["project"]["optional-dependencies"]["test"])
FLOORS = _pins(ROOT / ".ci" / "floors.txt")
HOME_ASSISTANT = _pins(ROOT / ".ci" / "home-assistant-2025.4.txt")


def test_runtime_and_test_dependencies_do_not_overlap() -> None:
    # One floor per library: a runtime dependency is not repeated among the test extras.
    assert sorted(RUNTIME.keys() & TEST.keys()) == []


def test_the_floors_file_pins_every_dependency_at_its_pyproject_floor() -> None:
    assert FLOORS == RUNTIME | TEST


def test_every_floor_admits_home_assistants_pin() -> None:
    declared = RUNTIME | TEST
    shared = sorted(declared.keys() & HOME_ASSISTANT.keys())
    # The libraries Home Assistant pins that the connector uses today.
    assert {"aiohttp", "jinja2", "mutagen", "pydantic", "pytest-asyncio", "voluptuous"} <= set(
        shared
    )
    too_high = {
        name: (declared[name], HOME_ASSISTANT[name])
        for name in shared
        if _release(declared[name]) > _release(HOME_ASSISTANT[name])
    }
    assert too_high == {}, "floor above Home Assistant's pin: (floor, pin)"


def test_the_ci_script_runs_a_floors_job_and_checks_home_assistants_pins() -> None:
    script = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "-c .ci/floors.txt" in script
    assert "--dry-run" in script
    assert "-c .ci/home-assistant-2025.4.txt" in script
