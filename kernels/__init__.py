"""Numerical kernels: scoring of view embeddings and the global-local aggregation."""

from .aggregate import aggregate_local, initial_labels
from .scoring import Scores, score_segments, score_segments_torch

__all__ = ["Scores", "aggregate_local", "initial_labels", "score_segments", "score_segments_torch"]
