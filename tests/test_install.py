"""Installing into an existing environment: setup.py states ranges that admit the locked
versions (what scripts/env.sh installs) and other releases, never one exact torch."""

from __future__ import annotations

from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version
from setup_meta import install_requires

LOCK = Path(__file__).resolve().parents[1] / "requirements" / "lock.txt"


def _lock() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.lower().replace("_", "-")] = version
    return pins


def _requirements() -> dict[str, Requirement]:
    reqs = [Requirement(r) for r in install_requires()]
    return {r.name.lower().replace("_", "-"): r for r in reqs}


def _other_minor(version: str) -> str:
    v = Version(version)
    return f"{v.major}.{v.minor - 1 if v.minor else v.minor + 1}.0"


@pytest.mark.parametrize("name", ["torch", "torchvision"])
def test_ranges_admit_the_lock_and_another_minor(name):
    req, locked = _requirements()[name], _lock()[name]
    assert not any(s.operator == "==" for s in req.specifier), f"{req} pins one version"
    assert req.specifier.contains(locked), f"{req} refuses the locked {locked}"
    other = _other_minor(locked)
    assert other != locked and req.specifier.contains(other), f"{req} refuses {other}"
    assert not req.specifier.contains(f"{Version(locked).major + 1}.0.0"), f"{req} admits the next major"


def test_every_requirement_admits_its_locked_version():
    pins = _lock()
    for name, req in _requirements().items():
        assert name in pins, f"{name} is required but not in requirements/lock.txt"
        assert req.specifier.contains(pins[name], prereleases=True), f"{req} refuses the locked {pins[name]}"


def test_env_script_installs_exactly_the_lock():
    env = (Path(__file__).resolve().parents[1] / "scripts" / "env.sh").read_text()
    assert "-r requirements/lock.txt" in env
    assert "--no-deps" in env  # the package itself brings no other versions
