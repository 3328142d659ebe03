"""What is installed is what was tested: the locks, the virtualenv `make test` made, the image."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from support.processes import ROOT

LOCK = ROOT / "requirements.lock"
DEV_LOCK = ROOT / "requirements-dev.lock"
# What installs packages, which a virtualenv comes with: a lock pins them only when a dependency
# needs them.
INSTALLERS = frozenset({"pip", "setuptools", "wheel"})
PROJECT = canonicalize_name(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["name"])
_PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)(?:\s*;\s*([^\\]+?))?\s*\\?$", re.M)


def pins(lock: Path) -> dict[str, str]:
    """name -> version of every package the lock installs on this machine (markers evaluated)."""
    found: dict[str, str] = {}
    for name, version, marker in _PIN.findall(lock.read_text()):
        if marker and not Marker(marker).evaluate():  # the markers of this machine
            continue
        found[canonicalize_name(name)] = version
    return found


def test_every_dependency_is_pinned_with_hashes_within_its_range() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for lock, specs in (
        (LOCK, project["dependencies"]),
        (DEV_LOCK, [*project["dependencies"], *project["optional-dependencies"]["dev"]]),
    ):
        pinned = pins(lock)
        # After the two header lines, a block per package: its pin, its hashes, where from.
        for block in re.split(r"\n(?=[A-Za-z0-9])", lock.read_text().split("\n", 2)[2]):
            assert "--hash=sha256:" in block, f"{lock.name}: no hash for {block.split()[0]}"
        for spec in specs:
            requirement = Requirement(spec)
            if requirement.marker is not None and not requirement.marker.evaluate():
                continue
            name = canonicalize_name(requirement.name)
            assert name in pinned, f"{name} is not in {lock.name}: run make lock"
            assert requirement.specifier.contains(pinned[name]), (name, pinned[name])


def test_the_two_locks_pin_every_shared_package_alike() -> None:
    runtime, dev = pins(LOCK), pins(DEV_LOCK)
    differ = {name: (v, dev.get(name)) for name, v in runtime.items() if dev.get(name) != v}
    assert not differ, differ


def test_every_dependency_has_an_upper_bound() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for spec in [*project["dependencies"], *project["optional-dependencies"]["dev"]]:
        operators = {s.operator for s in Requirement(spec).specifier}
        assert "<" in operators, f"{spec}: a release tomorrow could enter through make upgrade"


def test_the_virtualenv_holds_exactly_the_dev_lock() -> None:
    if Path(sys.prefix).resolve() != (ROOT / ".venv").resolve():
        pytest.skip("not running in the virtualenv `make test` makes")
    locked = pins(DEV_LOCK)
    unpinned = (INSTALLERS - locked.keys()) | {PROJECT}  # what the virtualenv came with
    installed = {
        canonicalize_name(dist.metadata["Name"]): dist.version
        for dist in metadata.distributions()
        if canonicalize_name(dist.metadata["Name"]) not in unpinned
    }
    assert installed == locked, {
        "not in the lock": sorted(set(installed.items()) - set(locked.items())),
        "missing": sorted(set(locked.items()) - set(installed.items())),
        "fix": "make clean test",
    }


def _make_commands(target: str) -> str:
    """The commands `make` would run to (re)make `target`, without running them."""
    result = subprocess.run(
        ["make", "--dry-run", "--always-make", target],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


def test_make_run_and_the_image_install_the_same_runtime_lock() -> None:
    install = re.compile(r"pip install [^\n]*--require-hashes[^\n]*-r requirements\.lock")
    run = _make_commands("run")
    assert install.search(run), run
    assert "requirements-dev.lock" not in run
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"pip install --require-hashes[^\n]*-r requirements\.lock", dockerfile)
    # The image installs nothing else: no version is resolved on the day it is built.
    assert len(re.findall(r"pip install", dockerfile)) == 1, dockerfile
    test = _make_commands("test")
    assert re.search(r"pip install [^\n]*--require-hashes[^\n]*-r requirements-dev\.lock", test)
    for target in ("run", "test", "lint", "fuzz"):
        commands = _make_commands(target)
        for line in re.findall(r"pip install[^\n]*", commands):
            assert "--require-hashes" in line, (target, line)
