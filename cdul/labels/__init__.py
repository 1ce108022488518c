"""Decided labels: the rule from soft scores to class sets (``decide``) and the tables they
are written to (``open_table``). Numbers in, files out: nothing here reads a store."""

from .decide import DEFAULT_RULE, RELATIVE_SHARE, Decision, decide
from .tables import FORMATS, TableError, open_table, partial_name, table_format

__all__ = [
    "DEFAULT_RULE",
    "FORMATS",
    "RELATIVE_SHARE",
    "Decision",
    "TableError",
    "decide",
    "open_table",
    "partial_name",
    "table_format",
]
