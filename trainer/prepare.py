"""What a run checks and builds before its first batch: the store, the validation split,
the optimizer and schedule, and the checkpoint to resume from.

Every refusal is a :class:`TrainError` whose message is one line saying what to do.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from cdul.data import DatasetError, load_labelled
from cdul.store import Store, StoreError

from . import checkpoint as ckpt_io
from .config import TrainConfig


class TrainError(Exception):
    """A run that cannot start or go on as asked."""


@dataclass
class ValSplit:
    root: str
    ids: list[str]
    targets: np.ndarray
    kind: str = "folder"


def open_store(url: str) -> Store:
    try:
        store = Store.open(url, mode="r+")
    except StoreError as exc:
        raise TrainError(str(exc)) from None
    if not store.attrs.get("complete", False):
        raise TrainError(f"{url}: extraction has not finished; rerun the cdul-extract command to complete it")
    if not store.label_rounds():
        raise TrainError(f"{url} has no complete label round (round 0 is written when cdul-extract finishes)")
    return store


def load_val(cfg: TrainConfig, store: Store) -> ValSplit | None:
    """The labelled split the classifier is scored on each epoch, or None without --val-data."""
    if not cfg.val_data:
        return None
    kind = cfg.val_dataset or store.attrs.get("dataset", {}).get("kind", "voc2012")
    try:
        ds = load_labelled(kind, cfg.val_data, cfg.val_split, list(store.classes), cfg.val_limit)
    except DatasetError as exc:
        raise TrainError(f"--val-data: {exc}") from None
    return ValSplit(ds.root, list(ds.ids), ds.targets, ds.kind)


def make_optimizer(cfg: TrainConfig, model: torch.nn.Module, device: torch.device) -> torch.optim.Optimizer:
    """On CUDA the fused implementations (one kernel for all parameters); their state dicts
    are the same as the plain ones', so a checkpoint moves between devices."""
    params = [p for p in model.parameters() if p.requires_grad]
    fused = {"fused": True} if device.type == "cuda" else {}
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, **fused)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **fused)
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **fused)


def make_scheduler(cfg: TrainConfig, opt: torch.optim.Optimizer):
    """Stepped once per epoch: cosine to zero over --epochs, or x gamma every --lr-step epochs."""
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    if cfg.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.lr_step, gamma=cfg.lr_gamma)
    return torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.epochs + 1, gamma=1.0)


def resume_state(cfg: TrainConfig, store: Store, path: str, log) -> dict | None:
    """The checkpoint to continue from, or None for a new run; refuses to clobber a run."""
    if not cfg.resume:
        if os.path.exists(path):
            raise TrainError(f"{os.path.dirname(path) or '.'} already holds a run ({os.path.basename(path)}); "
                             "pass --resume to continue it, or choose another --out-dir")
        return None
    if not os.path.exists(path):
        log(f"--resume: no checkpoint at {path} yet; starting a new run")
        return None
    try:
        saved = ckpt_io.load_checkpoint(path)
    except ckpt_io.CheckpointError as exc:
        raise TrainError(str(exc)) from None
    changed = cfg.differences(saved.get("config", {}))
    if changed:
        raise TrainError(f"--resume with other options than the run had ({'; '.join(changed[:3])}); rerun with the "
                         "same options (only paths, --workers, --device and --quiet may change)")
    if list(saved.get("classes", [])) != list(store.classes) or saved.get("store_n") != store.n:
        raise TrainError(f"{path} was trained on another store ({saved.get('store_n')} images) than {cfg.store} "
                         f"({store.n} images)")
    if saved["label_round"] not in store.label_rounds():
        raise TrainError(f"{cfg.store} no longer has label round {saved['label_round']}, which {path} trained from")
    return saved
