"""The wheel: what it holds, and that it runs installed beside other software.

A wheel is built from the working tree (a copy of what the build reads, so no `build/`
leftovers slip in), then installed without its dependencies into a fresh venv whose only
other path is the running interpreter's site-packages (for aiohttp and the rest; its `.pth`
files, the editable install of this repo among them, are not processed there). The commands
run from a temporary folder outside the repo, so nothing is imported from the source tree.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from dataclasses import dataclass
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
VERSION = json.loads((ROOT / "manifest.json").read_text(encoding="utf-8"))["version"]
DIST_INFO = f"finetuning_connector-{VERSION}.dist-info/"
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]
# Where each installed package's files come from in the repo.
PACKAGE_DIRS: dict[str, str] = {
    package: SETUPTOOLS["package-dir"].get(package, package.replace(".", "/"))
    for package in SETUPTOOLS["packages"]
}
TIMEOUT = 300  # seconds: a hung command fails the test instead of the whole run


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path
    workdir: Path  # outside the repo
    env: dict[str, str]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            args,
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )


def _copy_sources(target: Path) -> None:
    """What the build reads: pyproject.toml, the readme, the license, the package dirs."""
    target.mkdir()
    for name in ("pyproject.toml", PYPROJECT["project"]["readme"]):
        shutil.copy2(ROOT / name, target / name)
    for license_file in ROOT.glob("LICEN[CS]E*"):
        shutil.copy2(license_file, target / license_file.name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for top in sorted({source.split("/")[0] for source in PACKAGE_DIRS.values()}):
        shutil.copytree(ROOT / top, target / top, ignore=ignore)


def _build_wheel(tmp: Path) -> Path:
    source, dist = tmp / "src", tmp / "dist"
    _copy_sources(source)
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps"),
            *("--no-build-isolation", "--no-index", "--wheel-dir", str(dist), str(source)),
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=True,
    )
    (wheel,) = dist.glob("*.whl")
    return wheel


def _install(wheel: Path, tmp: Path) -> Installed:
    venv = tmp / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], timeout=TIMEOUT, check=True
    )
    python = venv / "bin" / "python"
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet"),
            *("--no-deps", "--no-index", str(wheel)),
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=True,
    )
    # The dependencies: this interpreter's site-packages, after the venv's own.
    site_packages = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=True,
    ).stdout.strip()
    ours = sysconfig.get_paths()
    dependencies = dict.fromkeys((ours["purelib"], ours["platlib"]))
    (Path(site_packages) / "dependencies.pth").write_text(
        "".join(f"{path}\n" for path in dependencies), encoding="utf-8"
    )
    workdir = tmp / "elsewhere"
    workdir.mkdir()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTHON", "VIRTUAL_ENV", "FINETUNING", "TEMPOLOR", "FTCONNECT"))
    }
    env["HOME"] = str(workdir)
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return Installed(wheel=wheel, venv=venv, workdir=workdir, env=env)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    tmp = tmp_path_factory.mktemp("wheel")
    assert not tmp.resolve().is_relative_to(ROOT)
    return _install(_build_wheel(tmp), tmp)


def _names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def _expected_modules() -> set[str]:
    """Every module and data file of the tree's packages, by its name in the wheel."""
    data = SETUPTOOLS["package-data"]
    expected: set[str] = set()
    for package, source in PACKAGE_DIRS.items():
        folder = ROOT / source
        patterns = ["*.py", *data.get(package, [])]
        for pattern in patterns:
            for path in folder.glob(pattern):
                inside = path.relative_to(folder).as_posix()  # templates/base.html too
                expected.add(f"{package.replace('.', '/')}/{inside}")
    return expected


def test_the_wheel_claims_no_top_level_name_but_connector(installed: Installed) -> None:
    names = _names(installed.wheel)
    assert installed.wheel.name == f"finetuning_connector-{VERSION}-py3-none-any.whl"
    outside = sorted(name for name in names if not name.startswith(("connector/", DIST_INFO)))
    assert outside == []
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]


def test_the_wheel_holds_every_module_of_the_tree_and_its_package_data(
    installed: Installed,
) -> None:
    names = _names(installed.wheel)
    expected = _expected_modules()
    assert {
        "connector/py.typed",
        "connector/examples/demo.yaml",
        "connector/triggers/schedule.py",
        "connector/actions/generate.py",
        "connector/sandbox/app.py",
        "connector/web/templates/run.html",
        "connector/web/static/app.js",
    } <= expected
    assert sorted(expected - names) == []
    # And every package folder of the tree is a package of the wheel (none forgotten).
    for folder in ("connector", "triggers", "actions"):
        for init in (ROOT / folder).rglob("__init__.py"):
            if "__pycache__" not in init.parts:
                relative = init.relative_to(ROOT / folder).parent.as_posix()
                prefix = "connector" if folder == "connector" else f"connector/{folder}"
                assert f"{prefix}/{relative}/__init__.py".replace("/./", "/") in names


def test_the_metadata_carries_the_manifest_version_requirements_and_script(
    installed: Installed,
) -> None:
    with zipfile.ZipFile(installed.wheel) as archive:
        metadata = Parser().parsestr(archive.read(DIST_INFO + "METADATA").decode())
        entry_points = archive.read(DIST_INFO + "entry_points.txt").decode()
    manifest = json.loads((ROOT / "manifest.json").read_text(encoding="utf-8"))
    assert metadata["Version"] == manifest["version"]
    runtime = [r for r in metadata.get_all("Requires-Dist") or [] if "extra ==" not in r]
    assert sorted(runtime) == sorted(manifest["requirements"])
    assert "ftconnect = connector.cli.main:main" in entry_points


def test_the_installed_package_is_the_wheel_and_imports_its_plugins(
    installed: Installed,
) -> None:
    python = str(installed.venv / "bin" / "python")
    done = installed.run(
        python,
        "-c",
        "import connector, connector.triggers.schedule, connector.actions.generate;"
        " print(connector.__file__)",
    )
    assert done.returncode == 0, done.stderr
    location = Path(done.stdout.strip())
    assert location.is_relative_to(installed.venv)
    for top_level in ("triggers", "actions", "examples"):
        missing = installed.run(python, "-c", f"import {top_level}")
        assert missing.returncode == 1
        assert f"No module named '{top_level}'" in missing.stderr


def test_ftconnect_help_and_version(installed: Installed) -> None:
    ftconnect = str(installed.venv / "bin" / "ftconnect")
    shown = installed.run(ftconnect, "--help")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("usage: ftconnect")
    version = installed.run(ftconnect, "--version")
    assert version.returncode == 0, version.stderr
    assert version.stdout == f"ftconnect {VERSION}\n"


def test_ftconnect_demo_runs_from_the_wheel(installed: Installed) -> None:
    done = installed.run(str(installed.venv / "bin" / "ftconnect"), "demo")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("sandbox: Finetuning.ai stand-in on http://127.0.0.1:")
    assert "demo.yaml" in done.stdout
    assert "lofi_reprise/reprise generate: ok" in done.stdout
    assert "0 failed), 4 credits spent" in done.stdout
