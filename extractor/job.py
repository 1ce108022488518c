"""One extraction job, start to finish: lock, prepare (create or resume), distribute
(this process, one spawned process per device, or torchrun ranks), finalise.

``extract`` is the one entry point: ``cdul-extract``, the demo (through the command) and
the benchmarks call it. It raises (StoreError, WorkerFailed, OSError, KeyboardInterrupt)
and reports through a ``Progress``; printing and exit codes are the caller's.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from cdul.data import Dataset
from cdul.store import Store, StoreLock, reopen_damaged

from .build import finalise_store, prepare_store
from .config import WorkerConfig
from .pipeline import extract_chunks
from .runner import deal, run_local


@dataclass
class Progress:
    """What a job reports: ``start(total images)``, ``update(images, tiles)``, ``close()``,
    and one-line notes (resuming, damaged chunks extracted again)."""

    start: Callable[[int], None] = lambda total: None
    update: Callable[[int, int], None] = lambda images, tiles: None
    close: Callable[[], None] = lambda: None
    note: Callable[[str], None] = lambda message: None


@dataclass
class Summary:
    """``result``: the store's summary and failures (None on torchrun ranks other than 0);
    ``counts``: this process's worker counters (images, tiles, work_seconds, stage_seconds);
    ``speed``: what the store's last_run attribute records."""

    result: dict | None
    counts: dict = field(default_factory=dict)
    speed: dict = field(default_factory=dict)
    store: Store | None = None


def extract(
    cfg: WorkerConfig,
    data: Dataset,
    devices: list[str],
    *,
    chunk_len: int = 1024,
    zeta: float = 0.5,
    lam: float = 0.0,
    overwrite: bool = False,
    embed_dim: int = 0,
    progress: Progress | None = None,
    torchrun: tuple[int, int, int] | None = None,
    ap: str | None = None,
) -> Summary:
    """Extract ``data`` into the store ``cfg.store``; rerunning resumes. ``torchrun`` is
    (rank, world, local rank) when started by torchrun: ranks share the pending chunks.
    ``ap``: the AP protocol of the summary's pseudo-label mAPs (None: the dataset's own)."""
    progress = progress or Progress()
    if torchrun:
        return _extract_torchrun(
            cfg,
            data,
            devices,
            torchrun,
            chunk_len=chunk_len,
            zeta=zeta,
            lam=lam,
            overwrite=overwrite,
            embed_dim=embed_dim,
            progress=progress,
            ap=ap,
        )
    with StoreLock(cfg.store, create=True):
        store = _prepare(cfg, data, chunk_len, overwrite, embed_dim, progress)
        pending = store.pending_chunks()
        started = time.time()
        progress.start(_images(store, pending))
        try:
            # a finished store (a rerun, or new --zeta/--lam) loads no model at all
            counts = run_local(cfg, pending, devices[: len(pending)], progress.update) if pending else {}
        finally:
            progress.close()
        for note in counts.get("notes", []):
            progress.note(note)
        speed = {
            "seconds": round(time.time() - started, 2),
            "load_seconds": round(counts.get("load_seconds", 0.0), 2),
            "images": counts.get("images", 0),
            "tiles": counts.get("tiles", 0),
            "devices": devices,
        }
        for key in ("tower_graphs", "tower_recompiles"):  # a compiled tower: its compilations
            if key in counts:
                speed[key] = counts[key]
        result = finalise_store(store, zeta, lam, model=counts.get("model"), ap=ap, local=cfg.config.local)
        store.set_attrs(last_run=speed)
        return Summary(result, counts, speed, store)


def _prepare(cfg, data, chunk_len, overwrite, embed_dim, progress) -> Store:
    store = prepare_store(cfg.store, cfg, data, chunk_len=chunk_len, overwrite=overwrite, embed_dim=embed_dim)
    for damage in reopen_damaged(store):
        progress.note(f"damaged, extracting again: {damage}")
    done = store.n_chunks - len(store.pending_chunks())
    if 0 < done < store.n_chunks:
        progress.note(f"resuming {cfg.store}: {done} of {store.n_chunks} chunks already done")
    return store


def _images(store: Store, chunks: list[int]) -> int:
    return sum(b - a for a, b in map(store.chunk_bounds, chunks))


def _extract_torchrun(
    cfg, data, devices, env, *, chunk_len, zeta, lam, overwrite, embed_dim, progress, ap=None
) -> Summary:
    """Rank 0 locks, prepares and finalises; every rank extracts its deal of the pending
    chunks. torch.distributed (gloo) provides the barriers; nothing else is exchanged."""
    import torch
    import torch.distributed as dist

    rank, world, local_rank = env
    dist.init_process_group("gloo", timeout=datetime.timedelta(days=7))  # barriers outwait a long extraction
    device = "cpu" if devices == ["cpu"] or not torch.cuda.is_available() else f"cuda:{local_rank}"
    lock = StoreLock(cfg.store, create=True) if rank == 0 else None
    try:
        if lock is not None:
            lock.acquire()
            _prepare(cfg, data, chunk_len, overwrite, embed_dim, progress)
        dist.barrier()
        store = Store.open(cfg.store)
        pending = store.pending_chunks()
        dist.barrier()  # every rank has read the same list before any chunk is flagged
        mine = deal(pending, rank, world)
        started = time.time()
        progress.start(_images(store, mine))
        try:
            counts = extract_chunks(cfg, mine, device, progress.update) if mine else {}
        finally:
            progress.close()
        models: list = [None] * world
        dist.all_gather_object(models, counts.get("model"))  # also the barrier before finalising
        if rank != 0:
            return Summary(None, counts)
        store = Store.open(cfg.store, mode="r+")
        speed = {
            "seconds": round(time.time() - started, 2),
            "images": counts.get("images", 0) * world,
            "tiles": counts.get("tiles", 0) * world,
            "devices": [f"{world} torchrun ranks"],
            "extrapolated": True,
        }
        model = next((m for m in models if m), None)
        result = finalise_store(store, zeta, lam, model=model, ap=ap, local=cfg.config.local)
        return Summary(result, counts, speed, store)
    finally:
        if lock is not None:
            lock.release()
        dist.destroy_process_group()
