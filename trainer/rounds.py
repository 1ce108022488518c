"""The label rounds of a run: the round it starts from, the rounds it drops before its first
epoch, and the attributes of each round it begins.

A crash after a round was written but before the checkpoint that knows it is repaired on
``--resume``: rounds newer than the checkpoint's are dropped and redone from the same state,
so the resumed run retraces the uninterrupted one. A new run that finds rounds written by an
earlier attempt of itself (killed before its first checkpoint), or by the run ``--overwrite``
replaces (the same --out-dir), starts again from the round that attempt started from and
drops them; rounds other runs wrote stay.
"""

from __future__ import annotations

import os

from cdul.store import Store, attr_int, layout

from .config import TrainConfig
from .distributed import Dist
from .prepare import TrainError


def starting_round(cfg: TrainConfig, store: Store, saved: dict | None, log) -> int:
    """The round a run trains from: its checkpoint's, --start-round's, or the latest one
    that is not an orphan of this run."""
    if saved:
        return saved["label_round"]
    if cfg.start_round is not None:
        if cfg.start_round not in store.label_rounds():
            raise TrainError(f"--start-round {cfg.start_round}: the store's complete rounds are {store.label_rounds()}")
        return cfg.start_round
    return _before_orphans(cfg, store, store.latest_round(), log)


def _before_orphans(cfg: TrainConfig, store: Store, latest: int, log) -> int:
    """The round a new run starts from. Rounds written into this --out-dir's run by an
    earlier attempt that was killed before its first checkpoint are orphans: the run
    starts again from the round that attempt started from (they are then dropped), so
    rerunning the command gives the uninterrupted result."""
    run, k = os.path.abspath(cfg.out_dir), latest
    while k > 0:
        attrs = store.round_array(k).attrs.asdict()
        if attrs.get("source") != "cdul-train" or attrs.get("run") != run:
            break
        k = attr_int(attrs.get("from_round", k - 1))  # a round number, as begin_round writes it
    if k != latest:
        by = "the run --overwrite replaces" if cfg.overwrite else "an attempt of this run stopped before a checkpoint"
        log(f"label rounds after {k} were written by {by}: starting again from round {k}")
    return k


def drop_newer_rounds(store: Store, env: Dist, k: int, log) -> None:
    """Rank 0 drops the rounds after ``k``, complete or not, once every rank has read them."""
    later = [r for r in store.label_rounds() if r > k]
    env.barrier()  # every rank has read the rounds before rank 0 changes them
    if env.main and (later or store.has(layout.round_name(k + 1))):
        log(f"dropping label rounds newer than {k}: {later or 'an incomplete one'}")
        store.drop_rounds_after(k)


def begin_round(cfg: TrainConfig, env: Dist, store: Store, k: int, epoch: int):
    """Round ``k`` + 1, begun by rank 0 with what it is made from; -> (its number, its array)."""
    new = k + 1
    if env.main:
        r0 = store.round_array(0).attrs.asdict()
        store.begin_round(
            new,
            {
                "epoch": epoch,
                "zeta": r0.get("zeta"),
                "lam": r0.get("lam"),
                "source": "cdul-train",
                "from_round": k,
                "run": os.path.abspath(cfg.out_dir),
                "loss": cfg.loss,
                "label_lr": cfg.label_lr,
                "psi_mu": cfg.psi_mu,
                "psi_sigma": cfg.psi_sigma,
                "label_eps": cfg.label_eps,
            },
        )
    env.barrier()  # the array exists before any rank writes a chunk of it
    return new, store.round_array(new)
