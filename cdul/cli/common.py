"""Small things every command shares."""
from __future__ import annotations

import sys

import click

CONTEXT = {"help_option_names": ["-h", "--help"], "show_default": True, "max_content_width": 100}


def warn(message: str) -> None:
    click.secho(f"warning: {message}", fg="yellow", err=True)


def fail(message: str, code: int = 1) -> "NoReturn":  # noqa: F821
    click.secho(f"Error: {message}", fg="red", err=True)
    sys.exit(code)


def table(rows: list[tuple], header: tuple | None = None) -> str:
    rows = [tuple(str(c) for c in r) for r in rows]
    if header:
        rows = [tuple(header)] + rows
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in rows]
    if header:
        lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
