"""A child process that must not outlive its parent (a device worker, a decoding worker)."""

from __future__ import annotations

import contextlib
import os
import signal
import time


def die_with_parent(parent: int) -> None:
    """End this process when ``parent`` dies, however it dies (``kill -9`` included): a worker
    left running would go on filling a store that its run no longer owns. Linux delivers
    SIGKILL on the parent's death (PR_SET_PDEATHSIG); elsewhere a thread watches the parent."""
    try:
        import ctypes

        if ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL) != 0:  # 1: PR_SET_PDEATHSIG
            raise OSError
    except (OSError, AttributeError):
        import threading

        def watch():
            while os.getppid() == parent:
                time.sleep(1.0)
            os._exit(1)

        threading.Thread(target=watch, name="parent-watch", daemon=True).start()
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)


def decoding_worker_init(parent: int, worker_id: int, nice: int = 0) -> None:
    """The DataLoader's ``worker_init_fn``: a decoding worker ends with the process that
    started it, even when that one died before this one finished starting (the DataLoader's
    own check would then watch the wrong parent and wait forever).

    ``nice`` > 0 lowers the worker's scheduling priority by that much: a process that feeds a
    GPU then gets a core as soon as it wakes, instead of waiting for a decoding worker's time
    slice to end (``benchmarks/priority_bench.py`` measures both sides of this)."""
    die_with_parent(parent)
    if nice > 0:
        with contextlib.suppress(OSError):  # where not allowed, the worker keeps its parent's priority
            os.nice(nice)
