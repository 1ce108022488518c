"""What the decoding workers' scheduling priority does to the process that feeds the GPU.

On a GPU the extracting process's main thread wakes when a batch's scores are back, issues
the next batch's work (a few ms at most) and waits again, while the decoding workers keep
every other core busy. With the workers at its own priority, a waking thread often waits
for a worker's time slice to end; at a lower priority (``RunOptions.worker_nice``) it gets a
core at once. Both sides are measured here, on any machine:

- the host: a loop that sleeps 2 ms (the wait) and then works 0.5 ms (the issuing), its
  wall time against the same loop with no workers, and the lateness of its wake-ups;
- the workers: images decoded per second (``cdul.data.decode``, VOC-sized JPEGs), one
  worker per core, set up by the extractor's own ``decoding_worker_init``.

    python -m cdul.benchmarks.priority_bench [--workers N] [--rounds 3]
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time

import click
import numpy as np

from cdul.data.decode import decode_image
from cdul.extractor.config import RunOptions
from cdul.extractor.orphans import decoding_worker_init

from .bench_data import jpeg_dataset
from .common import record

WAIT_S, WORK_S, LOOPS = 0.002, 0.0005, 600


def _decode_forever(path: str, nice: int, stop, count) -> None:
    decoding_worker_init(os.getppid(), 0, nice=nice)
    with open(path, "rb") as f:
        data = f.read()
    while not stop.is_set():
        decode_image(data)
        with count.get_lock():
            count.value += 1


def host_loop(loops: int = LOOPS) -> tuple[float, np.ndarray]:
    """(wall seconds, lateness of each wake-up in ms) of the wait-then-issue loop."""
    late = np.empty(loops)
    t_start = time.perf_counter()
    for i in range(loops):
        t = time.perf_counter()
        time.sleep(WAIT_S)
        late[i] = (time.perf_counter() - t - WAIT_S) * 1e3
        t = time.perf_counter()
        while time.perf_counter() - t < WORK_S:
            pass
    return time.perf_counter() - t_start, late


def measure(path: str, workers: int, nice: int | None) -> dict:
    """The host loop alone (``nice`` None) or beside ``workers`` decoding workers at +nice."""
    ctx = mp.get_context("fork")
    stop, count = ctx.Event(), ctx.Value("l", 0)
    procs = (
        []
        if nice is None
        else [ctx.Process(target=_decode_forever, args=(path, nice, stop, count)) for _ in range(workers)]
    )
    for p in procs:
        p.start()
    try:
        while procs and count.value < 2 * len(procs):  # workers up and decoding
            time.sleep(0.05)
        before = count.value
        wall, late = host_loop()
        decoded = (count.value - before) / wall
    finally:
        stop.set()
        for p in procs:
            p.join(timeout=10)
    return {
        "wall": wall,
        "p90": float(np.percentile(late, 90)),
        "p99": float(np.percentile(late, 99)),
        "img_s": decoded,
    }


@click.command()
@click.option("--workers", type=int, default=None, help="Decoding workers (default: one per core).")
@click.option("--rounds", type=int, default=3, help="Each setting this many times, alternated.")
def main(workers, rounds):
    workers = workers or os.cpu_count() or 1
    path = os.path.join(jpeg_dataset(1), "VOCdevkit", "VOC2012", "JPEGImages", "img_000000.jpg")
    with open(path, "rb") as f:
        decode_image(f.read())  # the decoder's imports happen once, before the workers fork
    alone = min(measure(path, workers, None)["wall"] for _ in range(rounds))
    click.echo(f"host loop alone: {alone:.3f} s ({LOOPS} x {WAIT_S * 1e3:.0f} ms wait + {WORK_S * 1e3:.1f} ms work)")
    runs: dict[int, list[dict]] = {0: [], RunOptions().worker_nice: []}
    for _ in range(rounds):
        for nice in runs:
            runs[nice].append(measure(path, workers, nice))
    params = {"workers": workers, "rounds": rounds}
    for nice, rs in runs.items():
        wall = float(np.median([r["wall"] for r in rs]))
        p90 = float(np.median([r["p90"] for r in rs]))
        p99 = float(np.median([r["p99"] for r in rs]))
        img_s = float(np.median([r["img_s"] for r in rs]))
        click.echo(
            f"workers at +{nice}: host loop {wall:.3f} s ({wall / alone:.2f}x alone), wake-up late by "
            f"p90 {p90:.2f} ms, p99 {p99:.2f} ms; workers {img_s:.0f} img/s"
        )
        record(
            "priority",
            f"nice{nice}",
            params,
            {
                "host_slowdown": (wall / alone, "x"),
                "wake_late_p90": (p90, "ms"),
                "wake_late_p99": (p99, "ms"),
                "decode_rate": (img_s, "img/s"),
            },
        )


if __name__ == "__main__":
    main()
