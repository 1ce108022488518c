"""Size options bounded by what the data allows.

An option that sizes an allocation (neighbours per query, images per chunk, crops per
batch, bank entries per class) is never taken above what the data can fill: a larger value
is clamped to that bound with a note (the result is the same as with the bound itself),
and a bound below 1 (nothing to size) is an error. So ``-k 10**12`` on a store of 11 images
asks for 11, not terabytes.
"""

from __future__ import annotations

from collections.abc import Callable


class NothingToSize(ValueError):
    """An option with no data to size it by (an empty store, say)."""


def bounded(value: int, most: int, option: str, what: str, note: Callable[[str], None] | None = None) -> int:
    """``value``, or ``most`` where ``value`` is larger (``what`` says what ``most`` counts,
    ``note`` hears of the change); NothingToSize where ``most`` < 1."""
    if most < 1:
        raise NothingToSize(f"{option} {value}: there are no {what} to size it by")
    if value <= most:
        return value
    if note is not None:
        note(f"{option} {value} is more than the {most} {what}; using {most}")
    return most
