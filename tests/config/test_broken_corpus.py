"""A corpus of broken automations files, each refused by the real `ftconnect check`.

Every YAML file under `broken/` (its `secrets.yaml` aside) is one mistake. Its
first lines say what `ftconnect check FILE` must print:

    # expect: line 7: automations[0].actions[1].path_template
    # env: NAME=value        (optional, repeatable: set for this file only)
    # hidden: text           (optional, repeatable: must appear nowhere in the output)

Each file runs in its own `python -m connector.cli check` process, as a user
would run it, with FINETUNING_API_KEY removed from the environment; the
processes run in parallel. Each must exit 2, print `FILE, line N: path ...`
on stderr, and show no traceback anywhere.

Speed: most of a process's time is Python starting and importing. The
processes share a bytecode cache outside the work tree (PYTHONPYCACHEPREFIX
in the temp folder, kept between runs; Python checks each entry against its
source), filled by the first file before the others start.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CORPUS = Path(__file__).resolve().parent / "broken"
MINIMUM_CASES = 25
BYTECODE = Path(tempfile.gettempdir()) / f"ftconnect-tests-pycache-{os.getuid()}"


@dataclass(frozen=True)
class Case:
    path: Path
    expect: str
    env: dict[str, str] = field(default_factory=dict)
    hidden: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return str(self.path.relative_to(CORPUS))


@dataclass(frozen=True)
class Outcome:
    returncode: int
    stdout: str
    stderr: str


def read_case(path: Path) -> Case:
    expect: str | None = None
    env: dict[str, str] = {}
    hidden: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        text = line.removeprefix("#").strip()
        if text.startswith("expect:"):
            expect = text.removeprefix("expect:").strip()
        elif text.startswith("env:"):
            name, _, value = text.removeprefix("env:").strip().partition("=")
            env[name] = value
        elif text.startswith("hidden:"):
            hidden.append(text.removeprefix("hidden:").strip())
    assert expect, f"{path.name}: the first line must be '# expect: line N: path ...'"
    assert expect.startswith("line "), f"{path.name}: the expectation must start with its line"
    return Case(path, expect, env, tuple(hidden))


def corpus() -> list[Case]:
    files = sorted(p for p in CORPUS.rglob("*.yaml") if p.name != "secrets.yaml")
    return [read_case(path) for path in files]


CASES = corpus()


def check(case: Case) -> Outcome:
    environ = {
        name: value
        for name, value in os.environ.items()
        if name not in ("FINETUNING_API_KEY", "PYTHONDONTWRITEBYTECODE")
    }
    environ["PYTHONPYCACHEPREFIX"] = str(BYTECODE)
    environ.update(case.env)
    done = subprocess.run(
        [sys.executable, "-m", "connector.cli", "check", str(case.path)],
        capture_output=True,
        text=True,
        env=environ,
        cwd=case.path.parent,  # `library: .` names an existing folder
        timeout=120,
        check=False,
    )
    return Outcome(done.returncode, done.stdout, done.stderr)


@pytest.fixture(scope="module")
def outcomes() -> dict[str, Outcome]:
    """Every file checked once, several at a time (each is its own process)."""
    first, *rest = CASES
    done = {first.name: check(first)}  # fills the bytecode cache for the others
    workers = max(2, min(8, (os.cpu_count() or 2) * 2))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        done.update(zip((case.name for case in rest), pool.map(check, rest), strict=True))
    return done


def test_the_corpus_is_large_and_its_names_are_unique() -> None:
    assert len(CASES) >= MINIMUM_CASES
    expectations = [(case.path.parent, case.expect) for case in CASES]
    assert len(set(expectations)) == len(expectations), "two files expect the same problem"


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_check_refuses_the_file_at_its_line(case: Case, outcomes: dict[str, Outcome]) -> None:
    outcome = outcomes[case.name]
    shown = f"exit {outcome.returncode}\nstdout:\n{outcome.stdout}\nstderr:\n{outcome.stderr}"

    assert outcome.returncode == 2, shown
    assert f"{case.path.name}, {case.expect}" in outcome.stderr, shown
    assert "Traceback" not in outcome.stdout + outcome.stderr, shown
    assert "all valid" not in outcome.stdout, shown
    for secret in case.hidden:
        assert secret not in outcome.stdout + outcome.stderr, shown
