"""How the work is distributed, in one place: one process, one process per device, or
torchrun ranks. Chunks are dealt round-robin over the workers from the list of chunks not
yet done, so every worker owns whole chunks and writers never share one."""

from __future__ import annotations

import os
import queue as queue_mod
import signal
import time
from collections.abc import Callable

from .config import WorkerConfig
from .orphans import die_with_parent
from .pipeline import extract_chunks
from .plan import ExtractPlan


class WorkerFailed(Exception):
    pass


def parse_devices(spec: str, cuda_count: int) -> list[str]:
    """'auto' | 'all' | 'cpu' | 'cpu,cpu' | '0,1' | '0,0' -> one torch device string per worker."""
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        return [f"cuda:{i}" for i in range(cuda_count)] or ["cpu"]
    if spec == "all":
        if not cuda_count:
            raise ValueError("--gpus all: no CUDA device is visible (use --gpus cpu)")
        return [f"cuda:{i}" for i in range(cuda_count)]
    out = []
    for part in spec.split(","):
        part = part.strip()
        if part == "cpu":
            out.append("cpu")
            continue
        if not part.isdigit():
            raise ValueError(f"{part!r} is neither a GPU index nor 'cpu' (examples: 0,1 / cpu / cpu,cpu)")
        if int(part) >= cuda_count:
            seen = f"{cuda_count} visible" if cuda_count else "none visible"
            raise ValueError(f"GPU {part} asked for, but CUDA devices: {seen} (use --gpus cpu to run on the CPU)")
        out.append(f"cuda:{int(part)}")
    if not out:
        raise ValueError("no device given")
    return out


def deal(chunks: list[int], rank: int, world: int) -> list[int]:
    return chunks[rank::world]


def run_local(plan: ExtractPlan, chunks: list[int], devices: list[str], update: Callable[[int, int], None]) -> dict:
    """Run the chunks in this process (one device) or in one spawned process per device,
    each from the plan's worker settings for its device; ``update(images, tiles)`` is called
    as work finishes."""
    if len(devices) == 1:
        return extract_chunks(plan.worker_on(devices[0]), chunks, devices[0], update)
    return _run_spawned(plan, chunks, devices, update)


def _threads_for(devices: list[str], index: int, asked: int | None) -> int | None:
    if asked:
        return asked
    n_cpu = sum(d == "cpu" for d in devices)
    if devices[index] != "cpu" or not n_cpu:
        return None
    return max(1, (os.cpu_count() or 1) // n_cpu)


def _worker_main(rank: int, cfg: WorkerConfig, chunks: list[int], device: str, q, parent: int) -> None:
    die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides what an interrupt means
    try:
        counts = extract_chunks(cfg, chunks, device, lambda images, tiles: q.put(("progress", rank, images, tiles)))
        q.put(("done", rank, counts))
    except BaseException as exc:  # report everything, then die with a non-zero code
        q.put(("error", rank, _one_line(exc)))
        raise SystemExit(1) from exc


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


def _run_spawned(plan: ExtractPlan, chunks: list[int], devices: list[str], update: Callable[[int, int], None]) -> dict:
    import dataclasses

    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = []
    for rank, device in enumerate(devices):
        cfg = plan.worker_on(device)
        wcfg = dataclasses.replace(
            cfg, run=dataclasses.replace(cfg.run, threads=_threads_for(devices, rank, cfg.run.threads))
        )
        p = ctx.Process(
            target=_worker_main,
            args=(rank, wcfg, deal(chunks, rank, len(devices)), device, q, os.getpid()),
            name=f"cdul-extract-{rank}",
            daemon=False,
        )
        p.start()
        procs.append(p)
    finished: dict[int, dict] = {}
    dead_since: dict[int, float] = {}
    try:
        while len(finished) < len(procs):
            try:
                msg = q.get(timeout=0.5)
            except queue_mod.Empty:
                _check_dead(procs, finished, dead_since, devices)
                continue
            kind, rank = msg[0], msg[1]
            if kind == "progress":
                update(msg[2], msg[3])
            elif kind == "done":
                finished[rank] = msg[2]
            elif kind == "error":
                raise WorkerFailed(f"worker {rank} ({devices[rank]}) failed: {msg[2]}")
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join(timeout=30)
    return merge_counts(list(finished.values()))


def merge_counts(parts: list[dict]) -> dict:
    """Workers run side by side: their wall times overlap (the longest counts), their counts
    and per-stage times add up."""
    total: dict = {}
    for counts in parts:
        for key, value in counts.items():
            if key == "model":  # the same from every worker
                total.setdefault(key, value)
            elif key == "notes":  # one-line messages for the user, each once
                total[key] = list(dict.fromkeys(total.get(key, []) + list(value)))
            elif isinstance(value, dict):
                total[key] = merge_counts([total.get(key, {}), value])
            elif key.endswith("seconds"):
                total[key] = max(total.get(key, 0), value)
            else:
                total[key] = total.get(key, 0) + value
    return total


def _check_dead(procs, finished: dict, dead_since: dict, devices: list[str], grace: float = 3.0) -> None:
    """A worker that exited without a word (killed, out of memory) fails the run once its
    last messages have had time to arrive."""
    now = time.time()
    for rank, p in enumerate(procs):
        if rank in finished or p.exitcode is None:
            continue
        if now - dead_since.setdefault(rank, now) < grace:
            continue
        code = p.exitcode
        how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        raise WorkerFailed(f"worker {rank} ({devices[rank]}) died ({how}) without reporting an error")


def torchrun_env() -> tuple[int, int, int] | None:
    """(rank, world size, local rank) when started by torchrun with more than one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or "RANK" not in os.environ:
        return None
    return int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0"))
