"""What a run checks and builds before its first batch: the store, the validation split,
the optimizer and schedule, and the checkpoint to resume from.

Every refusal is a :class:`TrainError` whose message is one line saying what to do.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import overload

import numpy as np
import torch

from cdul.data import DatasetError, load_labelled, outputs
from cdul.store import Store, StoreError, layout, refuse_damaged

from . import checkpoint as ckpt_io
from .config import TrainConfig
from .stream import RoundScan
from .tboard import remove_events


class TrainError(Exception):
    """A run that cannot start or go on as asked."""


MAX_BAD_LABELS = 0.01  # share of the ok images whose labels may be unusable before a run refuses


def check_round(scan: RoundScan, where: str, log) -> None:
    """Refuse a label round with no usable row, or with more unusable ones than tolerated;
    say what is left out or clipped otherwise."""
    if not scan.not_finite and not scan.rows.sum():
        raise TrainError(f"{where}: no image with usable labels ({scan.ok} ok images)")
    if scan.not_finite > MAX_BAD_LABELS * scan.ok or not scan.rows.sum():
        raise TrainError(
            f"{where}: {scan.not_finite} of {scan.ok} ok images have labels that are not finite "
            f"(first: image {scan.first_not_finite}), more than the {MAX_BAD_LABELS:.0%} tolerated; "
            "train from another round (--start-round) or extract again"
        )
    if scan.rows.sum() < 2:
        raise TrainError(
            f"{where}: one image with usable labels; training needs at least two (BatchNorm normalises "
            "each batch over its images)"
        )
    if scan.not_finite:
        log(
            f"warning: {where}: {scan.not_finite} images have labels that are not finite (first: image "
            f"{scan.first_not_finite}); they are left out"
        )
    if scan.out_of_range:
        log(
            f"warning: {where}: {scan.out_of_range} images have labels outside [0, 1] (first: image "
            f"{scan.first_out_of_range}); they are clipped to it"
        )


def check_finite(model: torch.nn.Module, what: str) -> None:
    """Refuse a model with a parameter or buffer that is not finite (a diverged run)."""
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise TrainError(f"{what} has weights that are not finite ({name}): its training diverged")


@dataclass
class ValSplit:
    root: str
    ids: list[str]
    targets: np.ndarray
    kind: str = "folder"


RUN_FILES = ("last.pt", "best.pt", "metrics.jsonl", "metrics.csv")  # what a run writes into --out-dir


def out_paths(cfg: TrainConfig) -> dict[str, str]:
    """The files of the run in --out-dir, through the output guard: refused when --out-dir is
    a file or one of them is a symbolic link (never written through). Creates nothing."""
    if os.path.lexists(cfg.out_dir) and not os.path.isdir(cfg.out_dir):
        raise TrainError(f"--out-dir {cfg.out_dir} is a file, not a folder: choose another path")
    try:
        if os.path.isdir(cfg.out_dir):
            return {n: outputs.inside(cfg.out_dir, n, "--out-dir") for n in RUN_FILES}
    except outputs.OutputError as exc:
        raise TrainError(str(exc)) from None
    return {n: os.path.join(cfg.out_dir, n) for n in RUN_FILES}


def open_store(url: str) -> Store:
    try:
        store = Store.open(url, mode="r+")
        if not store.attrs.get("complete", False):
            raise TrainError(f"{url}: extraction has not finished; rerun the cdul-extract command to complete it")
        refuse_damaged(store)
    except StoreError as exc:
        raise TrainError(str(exc)) from None
    if not store.label_rounds():
        raise TrainError(f"{url} has no complete label round (round 0 is written when cdul-extract finishes)")
    return store


def largest_side(store: Store) -> int:
    """The longest side, in pixels, of any image of the store (0 where it records none)."""
    if not store.has(layout.HW):
        return 0
    return max((int(c[layout.HW].max(initial=0)) for c in store.chunks(layout.HW)), default=0)


@overload
def dataset_attr(store: Store, key: str) -> str | None: ...
@overload
def dataset_attr(store: Store, key: str, default: str) -> str: ...
def dataset_attr(store: Store, key: str, default: str | None = None) -> str | None:
    """A field of the store's ``dataset`` attribute (``kind``: how its images are read,
    ``root``: where they are), or ``default`` where it has none."""
    value = store.section("dataset").get(key, default)
    if value is not None and not isinstance(value, str):
        raise StoreError(f"{store.url}: dataset attribute {key!r} is {value!r}, not a string: extract the store again")
    return value


def load_val(cfg: TrainConfig, store: Store) -> ValSplit | None:
    """The labelled split the classifier is scored on each epoch, or None without --val-data."""
    if not cfg.val_data:
        return None
    kind = cfg.val_dataset or dataset_attr(store, "kind", "voc2012")
    try:
        ds = load_labelled(kind, cfg.val_data, cfg.val_split, list(store.classes), cfg.val_limit)
    except DatasetError as exc:
        raise TrainError(f"--val-data: {exc}") from None
    assert ds.targets is not None  # load_labelled refuses a split without ground truth
    return ValSplit(ds.root, list(ds.ids), ds.targets, ds.kind)


def make_optimizer(cfg: TrainConfig, model: torch.nn.Module, device: torch.device) -> torch.optim.Optimizer:
    """On CUDA the fused implementations (one kernel for all parameters); their state dicts
    are the same as the plain ones', so a checkpoint moves between devices."""
    params = [p for p in model.parameters() if p.requires_grad]
    fused = True if device.type == "cuda" else None  # None: the optimizers' default
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, fused=fused)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused)
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused)


def make_scheduler(cfg: TrainConfig, opt: torch.optim.Optimizer):
    """Stepped once per epoch: cosine to zero over --epochs, or x gamma every --lr-step epochs."""
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    if cfg.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.lr_step, gamma=cfg.lr_gamma)
    return torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.epochs + 1, gamma=1.0)


# What a run writes into --out-dir, and all that --overwrite removes (eval.json, reports and
# anything else there stay).
RUN_FILES = ("last.pt", "best.pt", "metrics.jsonl", "metrics.csv")  # and tensorboard/events.out.tfevents.*


def start_over(out_dir: str, log) -> None:
    """--overwrite: remove the files an earlier run wrote into ``out_dir``, and nothing else.
    The label rounds that run wrote are dropped by :mod:`.rounds` (they carry its --out-dir)."""
    gone = []
    for name in RUN_FILES:
        path = os.path.join(out_dir, name)
        if os.path.isfile(path):
            os.remove(path)
            gone.append(name)
    gone += remove_events(out_dir)
    if gone:
        log(f"--overwrite: removed {', '.join(gone)} from {out_dir}; starting a new run")


def resume_state(cfg: TrainConfig, store: Store, path: str, log, main: bool = True) -> dict | None:
    """The checkpoint to continue from, or None for a new run; refuses to clobber a run
    unless --overwrite (then rank 0, ``main``, removes it)."""
    if cfg.overwrite:
        if main:
            start_over(os.path.dirname(path) or ".", log)
        return None
    if not cfg.resume:
        if os.path.exists(path):
            raise TrainError(
                f"{os.path.dirname(path) or '.'} already holds a run ({os.path.basename(path)}); "
                "pass --resume to continue it, --overwrite to start it over, or choose another --out-dir"
            )
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
        raise TrainError(
            f"--resume with other options than the run had ({'; '.join(changed[:3])}); rerun with the "
            "same options (only paths, --workers, --device and --quiet may change)"
        )
    if list(saved.get("classes", [])) != list(store.classes) or saved.get("store_n") != store.n:
        raise TrainError(
            f"{path} was trained on another store ({saved.get('store_n')} images) than {cfg.store} ({store.n} images)"
        )
    if saved["label_round"] not in store.label_rounds():
        raise TrainError(f"{cfg.store} no longer has label round {saved['label_round']}, which {path} trained from")
    return saved
