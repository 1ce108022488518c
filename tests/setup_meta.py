"""setup.py's declarations, read from its source (without running setup): the requirements
and the console scripts, so tests follow whatever the file says when it changes."""

from __future__ import annotations

import ast
from pathlib import Path

SETUP = Path(__file__).resolve().parents[1] / "setup.py"


def _setup_keywords() -> dict[str, ast.expr]:
    tree = ast.parse(SETUP.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setup":
            return {k.arg: k.value for k in node.keywords if k.arg}
    raise AssertionError("setup.py calls no setup(...)")


def install_requires() -> list[str]:
    return ast.literal_eval(_setup_keywords()["install_requires"])


def console_scripts() -> dict[str, str]:
    """{command: "module:function"} from entry_points["console_scripts"]."""
    entries = ast.literal_eval(_setup_keywords()["entry_points"])["console_scripts"]
    return dict(tuple(part.strip() for part in e.split("=", 1)) for e in entries)
