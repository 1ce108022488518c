"""Tensors that DataLoader workers hand to the main process, made in shared memory from the
start.

A worker's result reaches the main process through shared memory (``/dev/shm``). A tensor
made in private memory is moved there by the thread that sends it, after the worker's code
has returned: when ``/dev/shm`` is full (Docker gives a container 64 MB unless told
otherwise), that thread prints a traceback, the result is lost, and the main process waits
for it forever. Made here, in the worker's own code, a lack of room is an error of that
batch, which the DataLoader hands to the main process; it also spares the move's second
pass over every byte.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator

import torch
from torch.utils.data import get_worker_info

SHM = "/dev/shm"


class SharedMemoryFull(RuntimeError):
    """A DataLoader worker found no room in shared memory for a batch."""


def worker_tensor(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised tensor to fill and return: in shared memory in a DataLoader worker,
    in private memory elsewhere. SharedMemoryFull when shared memory has no room for it."""
    if get_worker_info() is None:
        return torch.empty(shape, dtype=dtype)
    try:
        return torch.empty(shape, dtype=dtype).share_memory_()
    except RuntimeError as exc:
        if "shared memory" in str(exc) or "No space left" in str(exc):
            n = torch.Size(shape).numel() * torch.empty(0, dtype=dtype).element_size()
            raise SharedMemoryFull(f"a batch of {n} bytes did not fit in shared memory: {exc}") from None
        raise


def handed_over(loader: torch.utils.data.DataLoader, what: str = "batches") -> Iterator:
    """Iterate ``loader`` (its workers start now, not at the first item): a worker's
    SharedMemoryFull comes out as one line of advice with the loader's own sizes."""
    return _translated(iter(loader), loader.num_workers, loader.prefetch_factor or 0, what)


def _translated(batches: Iterator, workers: int, prefetch: int, what: str) -> Iterator:
    try:
        yield from batches
    except SharedMemoryFull as exc:  # raised in a worker: its message ends in a traceback
        raise SharedMemoryFull(advice(exc, workers, prefetch, what)) from None


def advice(exc: BaseException, workers: int, prefetch: int, what: str = "batches") -> str:
    """One line for a run whose workers found no room in shared memory (``exc`` is the
    SharedMemoryFull a worker raised: its message ends in the worker's traceback)."""
    found = re.search(r"batch of (\d+) bytes", str(exc))
    batch = f" of {_mb(int(found.group(1)))}" if found else ""
    try:
        size = f" ({_mb(shutil.disk_usage(SHM).total)})"
    except OSError:
        size = ""
    return (
        f"the data loading workers ran out of shared memory: {SHM}{size} holds up to "
        f"{prefetch * max(workers, 1)} {what}{batch} ({prefetch} per worker); give it more room "
        "(docker run --shm-size=8g, for example) or lower --workers or --batch-size"
    )


def _mb(n: int) -> str:
    return f"{n / 2**20:.0f} MB" if n >= 10 * 2**20 else f"{n / 2**20:.1f} MB"
