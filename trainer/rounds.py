"""The label rounds of a run: the round it starts from, the rounds it drops before its first
epoch, and the attributes of each round it begins.

Who may delete a round: a run deletes only the rounds its own ``--out-dir`` wrote (attrs
``source`` cdul-train and ``run``), and incomplete rounds (their writer is gone: this run
holds the store's lock). Complete rounds another command wrote (cdul-refine, another run)
are deleted only with ``--drop-rounds-after N`` (those newer than N); without it a run that
would have to delete them refuses, with one line saying what to pass.

A crash after a round was written but before the checkpoint that knows it is repaired on
``--resume``: rounds newer than the checkpoint's are dropped and redone from the same state,
so the resumed run retraces the uninterrupted one. A new run that finds rounds written by an
earlier attempt of itself (killed before its first checkpoint), or by the run ``--overwrite``
replaces (the same --out-dir), starts again from the round that attempt started from and
drops them; rounds other runs wrote stay.
"""

from __future__ import annotations

import os

from cdul.store import Store, attr_int, round_writer

from .config import TrainConfig
from .distributed import Dist
from .start import TrainError


def starting_round(cfg: TrainConfig, store: Store, saved: dict | None, log) -> int:
    """The round a run trains from: its checkpoint's, --start-round's, or the latest one
    that is not an orphan of this run."""
    cap = cfg.drop_rounds_after
    k = None if not saved else int(saved["label_round"])
    if k is None and cfg.start_round is not None:
        k = cfg.start_round
        if k not in store.label_rounds():
            raise TrainError(f"--start-round {k}: the store's complete rounds are {store.label_rounds()}")
    if k is not None:
        if cap is not None and cap < k:
            raise TrainError(f"--drop-rounds-after {cap} would delete round {k}, which this run trains from")
        return k
    kept = [r for r in store.label_rounds() if cap is None or r <= cap]
    if not kept:
        raise TrainError(f"--drop-rounds-after {cap}: the store's complete rounds are {store.label_rounds()}")
    return _before_orphans(cfg, store, kept[-1], log)


def _before_orphans(cfg: TrainConfig, store: Store, latest: int, log) -> int:
    """The round a new run starts from. Rounds written into this --out-dir's run by an
    earlier attempt that was killed before its first checkpoint are orphans: the run
    starts again from the round that attempt started from (they are then dropped), so
    rerunning the command gives the uninterrupted result."""
    k = latest
    while k > 0 and written_by(cfg, store, k):
        k = attr_int(store.round_array(k).attrs.get("from_round", k - 1))  # a round number, as begin_round writes it
    if k != latest:
        by = "the run --overwrite replaces" if cfg.overwrite else "an attempt of this run stopped before a checkpoint"
        log(f"label rounds after {k} were written by {by}: starting again from round {k}")
    return k


def written_by(cfg: TrainConfig, store: Store, k: int) -> bool:
    """Whether round k was written by this run (this --out-dir's cdul-train)."""
    attrs = store.round_array(k).attrs.asdict()
    return attrs.get("source") == "cdul-train" and attrs.get("run") == os.path.abspath(cfg.out_dir)


def drop_newer_rounds(cfg: TrainConfig, store: Store, env: Dist, k: int, log) -> None:
    """Rank 0 drops the rounds after ``k`` (this run's, or any with --drop-rounds-after) and
    the incomplete ones, once every rank has read them. Every rank refuses alike when rounds
    of another command are in the way."""
    later = [r for r in store.label_rounds() if r > k]
    cap = cfg.drop_rounds_after
    foreign = [r for r in later if (cap is None or r <= cap) and not written_by(cfg, store, r)]
    if foreign:
        who = round_writer(store.round_array(foreign[0]).attrs.asdict())
        raise TrainError(
            f"{cfg.store}: label rounds {foreign} are newer than round {k}, which this run trains from, and were "
            f"written by another command ({who}); pass --drop-rounds-after {k} to delete "
            "them, or train from the newest round into a new --out-dir"
        )
    env.barrier()  # every rank has read the rounds before rank 0 changes them
    if env.main:
        gone = store.clean_incomplete_rounds()
        if gone:
            log(f"removed incomplete label rounds (their writer stopped): {', '.join(gone)}")
        if later:
            log(f"dropping label rounds newer than {k}: {later}")
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
