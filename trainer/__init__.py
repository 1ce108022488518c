"""Gradient-alignment training of a multi-label classifier on the store's pseudo labels
(docs/algorithm.md §3): labels stream from the store chunk by chunk, refined labels go back to it as new
rounds, and the classifier is scored on a labelled split every epoch."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import ConfigError, TrainConfig
    from .distributed import Dist
    from .labels import align_labels, gaussian_weight, label_gradient, per_sample_loss, scores
    from .start import TrainError
    from .stream import LabelStream, chunk_order, row_order

# Loaded on first use (PEP 562): the command line reads TrainConfig's defaults for --help
# without importing torch.
_LAZY = {
    "ConfigError": "config",
    "TrainConfig": "config",
    "Dist": "distributed",
    "align_labels": "labels",
    "gaussian_weight": "labels",
    "label_gradient": "labels",
    "per_sample_loss": "labels",
    "scores": "labels",
    "TrainError": "start",
    "LabelStream": "stream",
    "chunk_order": "stream",
    "row_order": "stream",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def train(cfg: TrainConfig, log=None, on_start=None) -> dict:
    """Run (or resume) a training run as ``cfg`` says; under torchrun, this rank's share.
    ``on_start()`` is called on rank 0 once every check has passed, before the first epoch."""
    from cdul.data import fs

    from .distributed import setup as setup_dist
    from .distributed import teardown as teardown_dist
    from .loop import Trainer

    cfg.check()
    fs.follow_symlinks(cfg.follow_symlinks)
    env = setup_dist(cfg.device)
    try:
        return Trainer(cfg, env, log, on_start).fit()
    finally:
        teardown_dist(env)


__all__ = [
    "ConfigError",
    "Dist",
    "LabelStream",
    "TrainConfig",
    "TrainError",
    "align_labels",
    "chunk_order",
    "gaussian_weight",
    "label_gradient",
    "per_sample_loss",
    "row_order",
    "scores",
    "train",
]
