"""Every command's option defaults equal those of the record that holds the same setting.

The options made with ``cdul.cli.options.record_option`` name their record themselves; the
table below names, independently of the commands' code, the record field behind every other
option that has one (by name for cdul-train's TrainConfig and cdul-extract's ExtractConfig and
RunOptions), so an option declared with its own default literal is checked as well.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from typing import ClassVar, Literal

import click
import pytest
from setup_meta import console_scripts

from cdul import api
from cdul.cli.options import RecordOption, cpu_capped, record_default, record_option
from cdul.extractor.config import ExtractConfig, RunOptions
from cdul.index import choose_index, refine_labels
from cdul.index.gda_options import GdaOptions
from cdul.labels import Decision
from cdul.trainer.config import TrainConfig

SCRIPTS = console_scripts()

# Records whose fields map to a command's options of the same name.
BY_NAME = {"cdul-train": (TrainConfig,), "cdul-extract": (ExtractConfig, RunOptions)}

# command -> {option's parameter name: (record, field, how the command's default follows from the record's)}
SAME = None
SHARED = {  # the options cdul-train, cdul-eval and cdul-predict share (cdul/cli/common.py)
    "device": (TrainConfig, "device", SAME),
    "amp": (TrainConfig, "amp", SAME),
    "workers": (TrainConfig, "workers", cpu_capped),
}
DECISION = {"threshold": (Decision, "threshold", SAME), "top_k": (Decision, "top_k", SAME)}
TABLE: dict[str, dict] = {
    "cdul-train": {**SHARED},
    "cdul-eval": {
        **SHARED,
        "difficult": (TrainConfig, "difficult", SAME),
        "threshold": (TrainConfig, "threshold", SAME),
    },
    "cdul-predict": {
        **SHARED,
        **DECISION,
        **{name: (api.predict, name, SAME) for name in ("dataset", "split", "part_size", "batch_size", "limit")},
        **{f"api {name}": (api.predict, name, SAME) for name in ("device", "amp", "scores", "overwrite")},
    },
    "cdul-export": {**DECISION, "round_": (api.export, "round", SAME), "scores": (api.export, "scores", SAME)},
    "cdul-serve": {**DECISION},
    "cdul-search": {"kind": (choose_index, "kind", SAME)},
    "cdul-refine": {
        "kind": (choose_index, "kind", SAME),
        "nlist": (choose_index, "nlist", SAME),
        "nprobe": (choose_index, "nprobe", SAME),
        "from_round": (refine_labels, "from_round", SAME),
        "gpu": (refine_labels, "gpu", SAME),
        "cache_gb": (refine_labels, "cache_bytes", lambda n: n / 2**30),
        "w_cls": (GdaOptions, "weight", SAME),
        **{name: (GdaOptions, name, SAME) for name in ("cls_scale", "patch_scale", "temperature", "fit_scale", "keep")},
    },
    "cdul-extract": {"workers": (RunOptions, "loader_workers", SAME), "compile_mode": (RunOptions, "compile", SAME)},
}

# cdul-extract options whose command-line default is None, "decided at run time" (by the device,
# or by --local), where the record holds the value a run without that decision uses; the plan
# (extractor/plan.py) makes that decision, and tests/test_extract_defaults.py checks that a
# command line without them gives the default records.
EXPECTED_TO_DIFFER = {
    ("cdul-extract", "batch_size"),  # None: 256 on GPU, 8 on CPU; RunOptions 64
    ("cdul-extract", "workers"),  # None: from the CPU count and devices; RunOptions.loader_workers 2
    ("cdul-extract", "dense_size"),  # None: not given (checked against --local); ExtractConfig 0
    ("cdul-extract", "keep_patches"),  # None: not given (checked against --local); ExtractConfig 0
}


def command(name: str) -> click.Command:
    module, function = SCRIPTS[name].split(":")
    return getattr(importlib.import_module(module), function)


def cli_default(option: click.Option):
    """The default a command runs with when the option is not given (click leaves a plain
    flag's unset: off)."""
    default = option.default
    if option.is_flag and default is click.core.UNSET:
        return False
    return default


def has_default(field: dataclasses.Field) -> bool:
    return field.default is not dataclasses.MISSING or field.default_factory is not dataclasses.MISSING


def expected(command_name: str, option: click.Option) -> list[tuple[str, object]]:
    """(record field, default the command should have) for every record behind ``option``."""
    out = []
    table = TABLE.get(command_name, {})
    for record in BY_NAME.get(command_name, ()):
        fields = {f.name for f in dataclasses.fields(record) if has_default(f)}
        if option.name in fields and option.name not in table:  # the table says how they differ
            out.append((f"{record.__name__}.{option.name}", record_default(record, option.name)))
    sources = [table[key] for key in (option.name, f"api {option.name}") if key in table]
    if isinstance(option, RecordOption):
        sources.append((option.record, option.field, option.derive))
    for record, field, derive in sources:
        default = record_default(record, field)
        out.append((f"{record.__qualname__}.{field}", derive(default) if derive else default))
    return out


def cases():
    for name in sorted(SCRIPTS):
        for param in command(name).params:
            if isinstance(param, click.Option) and param.name and expected(name, param):
                yield pytest.param(name, param.name, id=f"{name}--{param.name}")


@pytest.mark.parametrize("name, param_name", list(cases()))
def test_cli_default_is_the_records(name, param_name):
    option = next(p for p in command(name).params if p.name == param_name)
    wrong = [(where, want) for where, want in expected(name, option) if cli_default(option) != want]
    if (name, param_name) in EXPECTED_TO_DIFFER:
        assert wrong, f"{name} {option.opts[0]} now equals its record: take it off EXPECTED_TO_DIFFER"
        return
    assert not wrong, f"{name} {option.opts[0]} defaults to {cli_default(option)!r}, its record to {wrong}"


def test_every_mapped_option_exists():
    """A renamed option or field must not silently leave the table."""
    for name, table in TABLE.items():
        params = {p.name for p in command(name).params}
        for key, (record, field, _) in table.items():
            assert key.removeprefix("api ") in params, f"{name} has no option {key}"
            record_default(record, field)  # raises for a field the record lacks
    for name, param_name in EXPECTED_TO_DIFFER:
        assert param_name in {p.name for p in command(name).params}


def test_every_train_field_is_an_option():
    params = {p.name for p in command("cdul-train").params}
    assert {f.name for f in dataclasses.fields(TrainConfig)} <= params


def test_choices_are_the_records():
    for name in sorted(SCRIPTS):
        for param in command(name).params:
            if isinstance(param, RecordOption) and isinstance(param.type, click.Choice):
                declared = getattr(param.record, "CHOICES", {}).get(param.field)
                if declared is not None:
                    assert tuple(param.type.choices) == tuple(declared), (name, param.name)


@dataclass
class _Record:
    CHOICES: ClassVar[dict] = {"mode": ("a", "b")}
    mode: str = "b"
    kind: Literal["x", "y"] = "y"
    size: int = 3


def test_record_option_reads_default_choices_and_help():
    @click.command(context_settings={"show_default": True})
    @record_option(_Record, "mode", "--mode", help="Mode.")
    @record_option(_Record, "kind", "--kind", help="Kind.")
    @record_option(_Record, "size", "--size", derive=lambda n: n * 2, type=int, help="Size.")
    def cmd(mode, kind, size):
        click.echo(f"{mode} {kind} {size}")

    from click.testing import CliRunner

    assert CliRunner().invoke(cmd, []).output == "b y 6\n"
    assert CliRunner().invoke(cmd, ["--mode", "c"]).exit_code == 2  # not a choice
    shown = CliRunner().invoke(cmd, ["--help"]).output
    assert "[a|b]" in shown and "[x|y]" in shown and "[default: b]" in shown and "[default: 6]" in shown
    with pytest.raises(TypeError):
        record_option(_Record, "size", "--size", default=4)
    with pytest.raises(TypeError):
        record_option(_Record, "colour", "--colour")
