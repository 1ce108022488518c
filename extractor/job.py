"""One extraction job, start to finish: lock, prepare (create or resume), distribute
(this process, one spawned process per device, or torchrun ranks), finalise.

``extract`` is the one entry point: ``cdul-extract``, the demo (through the command) and
the benchmarks call it with the plan they built (``plan.plan_extraction``). It raises
(StoreError, WorkerFailed, OSError, KeyboardInterrupt) and reports through a ``Progress``;
printing and exit codes are the caller's.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from cdul.data import Dataset
from cdul.store import Store, StoreLock, reopen_damaged

from .pipeline import extract_chunks
from .plan import ExtractPlan
from .runner import deal, run_local
from .store_life import finalise_store, prepare_store


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


def extract(plan: ExtractPlan, data: Dataset, progress: Progress | None = None) -> Summary:
    """Extract ``data`` into the store ``plan.store`` as ``plan`` says (``plan.plan_extraction``);
    rerunning resumes. Under torchrun (``plan.torchrun``) the ranks share the pending chunks."""
    progress = progress or Progress()
    if plan.torchrun:
        return _extract_torchrun(plan, data, progress)
    with StoreLock(plan.store, create=True):
        store = _prepare(plan, data, progress)
        pending = store.pending_chunks()
        started = time.time()
        progress.start(_images(store, pending))
        try:
            # a finished store (a rerun, or new --zeta/--lam) loads no model at all
            counts = run_local(plan, pending, list(plan.devices[: len(pending)]), progress.update) if pending else {}
        finally:
            progress.close()
        for note in counts.get("notes", []):
            progress.note(note)
        speed = {
            "seconds": round(time.time() - started, 2),
            "load_seconds": round(counts.get("load_seconds", 0.0), 2),
            "images": counts.get("images", 0),
            "tiles": counts.get("tiles", 0),
            "devices": list(plan.devices),
        }
        for key in ("tower_graphs", "tower_recompiles"):  # a compiled tower: its compilations
            if key in counts:
                speed[key] = counts[key]
        result = _finalise(plan, store, counts.get("model"))
        store.set_attrs(last_run=speed)
        return Summary(result, counts, speed, store)


def _prepare(plan: ExtractPlan, data: Dataset, progress: Progress) -> Store:
    store = prepare_store(
        plan.store, plan.worker, data, chunk_len=plan.chunk_len, overwrite=plan.overwrite, embed_dim=plan.embed_dim
    )
    for damage in reopen_damaged(store):
        progress.note(f"damaged, extracting again: {damage}")
    done = store.n_chunks - len(store.pending_chunks())
    if 0 < done < store.n_chunks:
        progress.note(f"resuming {plan.store}: {done} of {store.n_chunks} chunks already done")
    return store


def _finalise(plan: ExtractPlan, store: Store, model: dict | None) -> dict:
    return finalise_store(store, plan.zeta, plan.lam, model=model, ap=plan.ap, local=plan.worker.config.local)


def _images(store: Store, chunks: list[int]) -> int:
    return sum(b - a for a, b in map(store.chunk_bounds, chunks))


def _extract_torchrun(plan: ExtractPlan, data: Dataset, progress: Progress) -> Summary:
    """Rank 0 locks, prepares and finalises; every rank extracts its deal of the pending
    chunks. torch.distributed (gloo) provides the barriers; nothing else is exchanged."""
    import torch
    import torch.distributed as dist

    assert plan.torchrun is not None
    rank, world, local_rank = plan.torchrun
    dist.init_process_group("gloo", timeout=datetime.timedelta(days=7))  # barriers outwait a long extraction
    device = "cpu" if plan.devices == ("cpu",) or not torch.cuda.is_available() else f"cuda:{local_rank}"
    lock = StoreLock(plan.store, create=True) if rank == 0 else None
    try:
        if lock is not None:
            lock.acquire()
            _prepare(plan, data, progress)
        dist.barrier()
        store = Store.open(plan.store)
        pending = store.pending_chunks()
        dist.barrier()  # every rank has read the same list before any chunk is flagged
        mine = deal(pending, rank, world)
        started = time.time()
        progress.start(_images(store, mine))
        try:
            counts = extract_chunks(plan.worker_on(device), mine, device, progress.update) if mine else {}
        finally:
            progress.close()
        models: list = [None] * world
        dist.all_gather_object(models, counts.get("model"))  # also the barrier before finalising
        if rank != 0:
            return Summary(None, counts)
        store = Store.open(plan.store, mode="r+")
        speed = {
            "seconds": round(time.time() - started, 2),
            "images": counts.get("images", 0) * world,
            "tiles": counts.get("tiles", 0) * world,
            "devices": [f"{world} torchrun ranks"],
            "extrapolated": True,
        }
        model = next((m for m in models if m), None)
        result = _finalise(plan, store, model)
        return Summary(result, counts, speed, store)
    finally:
        if lock is not None:
            lock.release()
        dist.destroy_process_group()
