"""Command-line options whose default is read from where the setting lives: a record's field
(a dataclass, e.g. ``TrainConfig.lr``) or a function's keyword (``cdul.api.predict``'s
``part_size``), so the default is written once.

    @record_option(TrainConfig, "lr", "--lr", type=click.FloatRange(min=0.0, min_open=True), help="...")

takes its default, and the ``[default: 1e-05]`` that ``--help`` shows, from ``TrainConfig.lr``.
Where the field is annotated ``Literal[...]`` or the record declares its choices
(``CHOICES = {"loss": ("kl", "bce"), ...}``), the option is a ``click.Choice`` of them.
``derive`` turns the record's default into the command's where they differ by a rule (the
worker count: the record's, capped by this machine's CPUs).

Every such option is a :class:`RecordOption` that remembers its record and field, so a test
can check each command's defaults against their records (tests/test_option_defaults.py).
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import typing
from collections.abc import Callable
from typing import Any

import click


class RecordOption(click.Option):
    """A click option that knows the record field its default comes from."""

    def __init__(self, *args, record: Any, field: str, derive: Callable[[Any], Any] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.record, self.field, self.derive = record, field, derive


def record_default(record: Any, name: str) -> Any:
    """The default of field ``name`` of a dataclass, or of keyword ``name`` of a function."""
    if isinstance(record, type) and dataclasses.is_dataclass(record):
        for f in dataclasses.fields(record):
            if f.name != name:
                continue
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
            raise TypeError(f"{record.__name__}.{name} has no default")
        raise TypeError(f"{record.__name__} has no field {name!r}")
    param = inspect.signature(record).parameters.get(name)
    if param is None or param.default is inspect.Parameter.empty:
        raise TypeError(f"{record.__qualname__} has no keyword {name!r} with a default")
    return param.default


def record_choices(record: Any, name: str) -> tuple | None:
    """The values field ``name`` may take: the record's ``CHOICES[name]``, or the arguments of
    its ``Literal[...]`` annotation; None where it names neither."""
    declared = getattr(record, "CHOICES", {}).get(name)
    if declared is not None:
        return tuple(declared)
    try:
        hint = typing.get_type_hints(record).get(name)
    except (NameError, TypeError):  # annotations naming what only a type checker imports
        return None
    return typing.get_args(hint) if typing.get_origin(hint) is typing.Literal else None


def record_option(record: Any, field: str, *decls: str, derive: Callable[[Any], Any] | None = None, **attrs):
    """``click.option(*decls, **attrs)`` with the default (and, for a field with choices, the
    type) read from ``record``'s ``field``; ``derive(default)`` gives the command's default
    where a rule makes it from the record's."""
    if "default" in attrs:
        raise TypeError(f"the default of {decls[0]} is {record.__qualname__}.{field}'s: do not give one")
    default = record_default(record, field)
    choices = record_choices(record, field)
    if choices is not None and "type" not in attrs:
        attrs["type"] = click.Choice(choices)
    default = derive(default) if derive else default
    return click.option(*decls, cls=RecordOption, record=record, field=field, derive=derive, default=default, **attrs)


def cpu_capped(workers: int) -> int:
    """A worker count no larger than this machine's CPUs."""
    return min(workers, os.cpu_count() or 1)
