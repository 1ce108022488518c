"""Files a user hands to a command (annotation and report JSON, a sample's JSON member, a
query image), read and checked before anything relies on them.

- ``read_input``: the bytes of a regular file; a folder, a FIFO or a device is refused by
  ``fs.read_bytes`` before a byte is read.
- ``parse_json`` / ``load_json``: JSON whose nesting Python's parser refuses
  (``RecursionError``, about a thousand levels) or whose syntax is wrong is one error
  naming the file and the line.
- ``check`` / ``field`` / ``items``: the expected structure, one rule at a time (a rule is a
  test and the words for what belongs there), so an error names the file, the place
  (``annotations[3].image_id``) and what is wrong.

Every refusal is an :class:`InputError`, a ``DatasetError`` and a ``ValueError``, so the
commands' existing handlers give it as one line.
"""

from __future__ import annotations

import json
import math
import string
from collections.abc import Callable, Mapping

from . import fs
from .base import DatasetError


class InputError(DatasetError, ValueError):
    """A user file that cannot be used as asked; the message names it and what is wrong."""


Rule = tuple[Callable[[object], bool], str]  # (accepts the value, what belongs there)


def integer(lo: int | None = None) -> Rule:
    words = "an integer" if lo is None else f"an integer >= {lo}"
    return (lambda v: isinstance(v, int) and not isinstance(v, bool) and (lo is None or v >= lo)), words


def is_names(v: object) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) and x.strip() for x in v) and len(set(v)) == len(v)


def _number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


INTEGER: Rule = integer()
TEXT: Rule = (lambda v: isinstance(v, str)), "a string"
NAME: Rule = (lambda v: isinstance(v, str) and bool(v.strip())), "a non-empty string"
TEXT_OR_NONE: Rule = (lambda v: v is None or isinstance(v, str)), "a string or null"
FLAG: Rule = (lambda v: isinstance(v, bool)), "true or false"
MAPPING: Rule = (lambda v: isinstance(v, Mapping)), "an object (a mapping)"
LIST: Rule = (lambda v: isinstance(v, list)), "a list"
NAMES: Rule = is_names, "a list of distinct, non-empty names"
NUMBER: Rule = _number, "a finite number"
NUMBER_OR_NONE: Rule = (lambda v: v is None or _number(v)), "a number or null"
POSITIVE: Rule = (lambda v: _number(v) and v > 0), "a positive number"  # type: ignore[operator]


def shown(value: object) -> str:
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    text = json.dumps(value) if isinstance(value, (str, int, float, bool, type(None))) else type(value).__name__
    return text if len(text) <= 40 else text[:37] + "..."


def check(value: object, rule: Rule, where: str):
    """``value`` when the rule accepts it; InputError naming ``where`` otherwise."""
    ok, words = rule
    if not ok(value):
        raise InputError(f"{where} is {shown(value)}, where {words} belongs")
    return value


REQUIRED = object()  # field's default: the key must be there


def field(obj: Mapping, key: str, rule: Rule, where: str, default: object = REQUIRED):
    """``obj[key]`` checked by ``rule`` (``default`` where it is absent, else an error)."""
    if key not in obj:
        if default is REQUIRED:
            raise InputError(f"{where}: missing key {key!r}")
        return default
    return check(obj[key], rule, f"{where}.{key}" if where.endswith("]") else f"{where}: {key!r}")


def items(obj: Mapping, key: str, where: str) -> list[tuple[str, Mapping]]:
    """The list ``obj[key]`` of objects, each with where it is (``file: key[i]``)."""
    values = field(obj, key, LIST, where)
    out = []
    for i, value in enumerate(values):
        place = f"{where}: {key}[{i}]"
        out.append((place, check(value, MAPPING, place)))
    return out


def read_input(path: str, what: str = "") -> bytes:
    """The bytes of the regular file ``path`` (``what``: the option naming it, for the error)."""
    name = f"{what} {path}" if what else str(path)
    try:
        return fs.read_bytes(path)
    except FileNotFoundError:
        raise InputError(f"{name}: file not found") from None
    except IsADirectoryError:
        raise InputError(f"{name} is a folder; give a file") from None
    except OSError as exc:
        raise InputError(f"{name}: cannot be read ({exc.strerror or exc})") from None


def parse_json(data: bytes | str, where: str):
    """JSON text -> the value; InputError naming ``where`` for bad text or nesting too deep."""
    try:
        text = data.decode("utf-8-sig") if isinstance(data, bytes) else data
    except UnicodeDecodeError as exc:
        raise InputError(f"{where}: not UTF-8 text (byte {exc.start}); JSON is UTF-8") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{where}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    except RecursionError:  # the parser's own guard against deep nesting: refused, not followed
        raise InputError(f"{where}: JSON nested too deeply to be read (over about a thousand levels)") from None


def load_json(path: str, what: str = ""):
    """The JSON value of the file ``path``."""
    return parse_json(read_input(path, what), f"{what} {path}" if what else str(path))


def load_object(path: str, what: str = "") -> Mapping:
    """A JSON file whose top level must be an object."""
    name = f"{what} {path}" if what else str(path)
    return check(load_json(path, what), MAPPING, f"{name}: its top level")


def check_template(template: str, option: str = "--prompt") -> str:
    """A prompt template with exactly one ``{}`` (where the class name goes) and no other
    brace ( ``{{`` and ``}}`` stand for literal braces, as in str.format)."""
    try:
        fields = [(f, spec, conv) for _, f, spec, conv in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:  # a stray { or }
        raise InputError(f"{option} {template!r}: {exc}; write {{{{ or }}}} for a literal brace") from None
    if fields != [("", "", None)]:
        raise InputError(
            f"{option} {template!r}: needs exactly one plain {{}} where the class name goes ({len(fields)} "
            "placeholders found); write {{ or }} for a literal brace"
        )
    return template
