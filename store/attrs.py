"""Typed reads of a store's attributes: Zarr gives them back as JSON values of any type.
A value of another type than cdul writes means a store edited or made by something else:
``StoreError``, whose one line says so, rather than a wrong number further on."""

from __future__ import annotations


class StoreError(Exception):
    """A store that cannot be used as asked; the message says what to do."""


class MissingArrayError(StoreError, KeyError):
    """An array the store should hold is not there (a KeyError too, for code that asks by name)."""

    def __str__(self) -> str:  # KeyError's own would quote the message
        return str(self.args[0]) if self.args else ""


def _bad(value: object, kind: str) -> StoreError:
    return StoreError(
        f"a store attribute holds {str(value)[:60]!r} where {kind} belongs: the store was edited or not made by "
        "cdul; extract it again (cdul-extract --overwrite)"
    )


def attr_int(value: object) -> int:
    """An integer of a store's attributes, as cdul writes it."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise _bad(value, "an integer")
    return value


def attr_ints(value: object) -> list[int]:
    """A list of integers of a store's attributes."""
    if not isinstance(value, list):
        raise _bad(value, "a list of integers")
    return [attr_int(v) for v in value]


def attr_strs(value: object) -> list[str]:
    """A list of strings of a store's attributes."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _bad(value, "a list of strings")
    return list(value)  # a copy: the caller's, not the attributes'


def attr_float(value: object) -> float:
    """A number of a store's attributes, as a float."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise _bad(value, "a number")
    return float(value)
