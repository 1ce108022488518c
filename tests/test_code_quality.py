"""The linters, the formatter and the type checker, run from the interpreter's own bin folder.

Their settings live in pyproject.toml. ruff checks and format-checks the whole tree; mypy
checks the library (cdul/ and the part folders) in basic mode. The parts live in top-level
folders that install as ``cdul.<part>``, which mypy cannot follow through the editable
install, so it runs on a folder of links laid out as the installed package.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PARTS = ("kernels", "extractor", "store", "trainer")  # benchmarks are not type-checked


def tool(name: str) -> Path:
    path = BIN / name
    if not path.exists():
        pytest.skip(f"{name} is not installed next to {sys.executable} (pip install -e .[test])")
    return path


def run(args: list, cwd: Path = ROOT) -> None:
    done = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{' '.join(map(str, args))} failed:\n{done.stdout}{done.stderr}"


def test_ruff_check():
    run([tool("ruff"), "check", "--no-cache", "."])


def test_ruff_format():
    run([tool("ruff"), "format", "--check", "--no-cache", "."])


@pytest.mark.slow
def test_mypy(tmp_path):
    mypy = tool("mypy")
    package = tmp_path / "cdul"
    package.mkdir()
    for entry in (ROOT / "cdul").iterdir():
        if entry.name != "__pycache__":
            (package / entry.name).symlink_to(entry)
    for part in PARTS:
        (package / part).symlink_to(ROOT / part)
    config, cache = ROOT / "pyproject.toml", ROOT / ".mypy_cache"
    run([mypy, "--config-file", config, "--cache-dir", cache, "-p", "cdul"], cwd=tmp_path)
