"""Reading a finished store out: its score arrays by name, a read-only view for notebooks,
and the export of its labels as a table."""

from .export import ClassQuality, ExportResult, export_labels
from .scores import ROUNDS, ScoreSource, open_finished, parse_round, score_source
from .view import StoreView

__all__ = [
    "ROUNDS",
    "ClassQuality",
    "ExportResult",
    "ScoreSource",
    "StoreView",
    "export_labels",
    "open_finished",
    "parse_round",
    "score_source",
]
