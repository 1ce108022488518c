"""cdul-extract under torchrun: ranks share the pending chunks; torch.distributed (gloo)
provides the barriers, nothing else is exchanged."""
from __future__ import annotations

import datetime
import time

import click

from .common import fail


def run_torchrun(cfg, data, dist_env, devices, *, chunk_len, zeta, lam, overwrite, quiet,
                 embed_dim: int = 0) -> dict | None:
    """Rank 0 returns the finalised store's summary; the other ranks return None."""
    import torch
    import torch.distributed as dist

    from cdul.extractor.build import finalise_store, prepare_store
    from cdul.extractor.pipeline import extract_chunks
    from cdul.extractor.runner import deal
    from cdul.store import Store, StoreLock, StoreLockedError

    from .extract import _Bar, _print_summary, _reopen_damaged

    rank, world, local_rank = dist_env
    # Extraction of a large split takes hours: barriers must outwait it.
    dist.init_process_group("gloo", timeout=datetime.timedelta(days=7))
    device = "cpu" if devices == ["cpu"] or not torch.cuda.is_available() else f"cuda:{local_rank}"
    lock = StoreLock(cfg.store) if rank == 0 else None
    result = None
    try:
        if rank == 0:
            try:
                lock.acquire()
            except StoreLockedError as exc:
                fail(str(exc))
            _reopen_damaged(prepare_store(cfg.store, cfg, data, chunk_len=chunk_len, overwrite=overwrite,
                                          embed_dim=embed_dim))
        dist.barrier()
        store = Store.open(cfg.store)
        pending = store.pending_chunks()
        dist.barrier()  # every rank has read the same list before any chunk is flagged
        mine = deal(pending, rank, world)
        bar = _Bar(sum(b - a for a, b in map(store.chunk_bounds, mine)), quiet or rank != 0)
        started = time.time()
        counts = extract_chunks(cfg, mine, device, bar.update) if mine else {}
        bar.close()
        dist.barrier()
        if rank == 0:
            store = Store.open(cfg.store, mode="r+")
            result = finalise_store(store, zeta, lam)
            speed = {"seconds": round(time.time() - started, 2), "images": counts.get("images", 0) * world,
                     "tiles": counts.get("tiles", 0) * world, "devices": [f"{world} torchrun ranks"]}
            _print_summary(store, result, speed)
            click.echo("(throughput above extrapolates rank 0's counts to all ranks)")
    finally:
        if lock is not None:
            lock.release()
        dist.destroy_process_group()
    return result
