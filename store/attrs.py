"""Typed reads of a store's attributes: Zarr gives them back as JSON values of any type."""

from __future__ import annotations


def attr_int(value: object) -> int:
    """An integer of a store's attributes, as cdul writes it."""
    assert isinstance(value, int), value
    return value


def attr_ints(value: object) -> list[int]:
    """A list of integers of a store's attributes."""
    assert isinstance(value, list), value
    return [attr_int(v) for v in value]


def attr_strs(value: object) -> list[str]:
    """A list of strings of a store's attributes."""
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), value
    return list(value)  # a copy: the caller's, not the attributes'


def attr_float(value: object) -> float:
    """A number of a store's attributes, as a float."""
    assert isinstance(value, (int, float)), value
    return float(value)
