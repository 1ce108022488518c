"""What a user reads first: every command's --help describes it and each of its options."""

import importlib
import re

import click
import pytest
from click.testing import CliRunner

COMMANDS = {
    "cdul-extract": "cdul.cli.extract",
    "cdul-train": "cdul.cli.train",
    "cdul-eval": "cdul.cli.eval",
    "cdul-predict": "cdul.cli.predict",
    "cdul-refine": "cdul.cli.refine",
    "cdul-search": "cdul.cli.search",
    "cdul-report": "cdul.cli.report",
    "cdul-export": "cdul.cli.export",
    "cdul-serve": "cdul.cli.serve",
    "cdul-demo": "cdul.demo",
    "cdul-bench": "cdul.benchmarks.run_all",
    "scripts/reproduce.sh": "cdul.reproduce.__main__",
}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_describes_the_command_and_every_option(name):
    command = importlib.import_module(COMMANDS[name]).main
    assert command.help and command.help.strip()
    undocumented = [p.name for p in command.params if isinstance(p, click.Option) and not p.hidden and not p.help]
    assert not undocumented, f"{name}: options without help: {undocumented}"
    result = CliRunner().invoke(command, ["--help"], prog_name=name)
    assert result.exit_code == 0 and result.output.startswith(f"Usage: {name} ")
    # No section of a document the user may not have (an installed package ships no docs/).
    assert "docs/" not in result.output and not re.search(r"\b[A-Z]{3,} \d+\.\d", result.output)
