"""Every console script in setup.py answers --version with cdul's and torch's versions, and
click's shell completion works under the command's name (README: Shell completion)."""

from __future__ import annotations

import importlib
from importlib import metadata

import pytest
from click.testing import CliRunner
from setup_meta import console_scripts

import cdul

SCRIPTS = console_scripts()


def _command(target: str):
    module, function = target.split(":")
    return getattr(importlib.import_module(module), function)


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_version(name):
    result = CliRunner().invoke(_command(SCRIPTS[name]), ["--version"], prog_name=name)
    assert result.exit_code == 0, result.output
    line = result.output.strip()
    assert "\n" not in line
    assert line.startswith(f"{name}: cdul {cdul.__version__} ")
    assert f"torch {metadata.version('torch')}" in line and f"open_clip {metadata.version('open_clip_torch')}" in line


def test_every_script_is_a_cdul_command():
    assert {"cdul-extract", "cdul-train", "cdul-eval", "cdul-demo"} <= set(SCRIPTS)
    assert all(name.startswith("cdul-") for name in SCRIPTS)


def test_shell_completion_script():
    env = {"_CDUL_EXTRACT_COMPLETE": "bash_source"}
    result = CliRunner().invoke(_command(SCRIPTS["cdul-extract"]), [], prog_name="cdul-extract", env=env)
    assert result.exit_code == 0 and "_cdul_extract_completion()" in result.output
