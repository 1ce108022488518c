"""Gradient-alignment training of a multi-label classifier on the store's pseudo labels
(docs/algorithm.md §3): labels stream from the store chunk by chunk, refined labels go back to it as new
rounds, and the classifier is scored on a labelled split every epoch."""

from __future__ import annotations

from cdul.data import fs

from .config import ConfigError, TrainConfig
from .distributed import Dist
from .distributed import setup as setup_dist
from .distributed import teardown as teardown_dist
from .labels import align_labels, gaussian_weight, label_gradient, per_sample_loss, scores
from .start import TrainError
from .stream import LabelStream, chunk_order, row_order


def train(cfg: TrainConfig, log=None, on_start=None) -> dict:
    """Run (or resume) a training run as ``cfg`` says; under torchrun, this rank's share.
    ``on_start()`` is called on rank 0 once every check has passed, before the first epoch."""
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
