"""Store I/O: write and read MB/s of the similarity arrays through the store, against
writing the same bytes with plain numpy to local disk, over a sweep of chunk lengths.

    python -m cdul.benchmarks.store_bench --quick
"""

from __future__ import annotations

import os
import shutil
import time

import click
import numpy as np

from cdul.store import Store, layout

from .bench_data import work_dir
from .common import record

ARRAYS = (layout.SIM_GLOBAL, layout.SIM_ALPHA, layout.SIM_BETA)


def store_roundtrip(n: int, c: int, chunk_len: int, data: np.ndarray) -> tuple[float, float]:
    path = os.path.join(work_dir(), "store-bench.zarr")
    shutil.rmtree(path, ignore_errors=True)
    store = Store.create(
        path,
        ids=[f"{i}" for i in range(n)],
        classes=[str(i) for i in range(c)],
        specs=layout.result_specs(c),
        chunk_len=chunk_len,
    )
    t = time.perf_counter()
    for chunk in store.chunks():
        store.write_chunk(chunk.k, dict.fromkeys(ARRAYS, data[chunk.start : chunk.stop]))
    write = time.perf_counter() - t
    t = time.perf_counter()
    for _ in store.chunks(*ARRAYS):
        pass
    read = time.perf_counter() - t
    return write, read


def numpy_roundtrip(data: np.ndarray) -> tuple[float, float]:
    path = os.path.join(work_dir(), "numpy-bench")
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    t = time.perf_counter()
    for name in ARRAYS:
        with open(os.path.join(path, name.replace("/", "_") + ".npy"), "wb") as f:
            np.save(f, data)
            f.flush()
            os.fsync(f.fileno())
    write = time.perf_counter() - t
    t = time.perf_counter()
    for name in ARRAYS:
        np.load(os.path.join(path, name.replace("/", "_") + ".npy"))
    return write, time.perf_counter() - t


@click.command()
@click.option("--quick", is_flag=True, help="50,000 images x 80 classes.")
@click.option("--images", type=int, default=None)
@click.option("--classes", type=int, default=80)
@click.option("--chunks", default="128,1024,8192", help="Chunk lengths to sweep.")
def main(quick, images, classes, chunks):
    n = images or (50_000 if quick else 500_000)
    rng = np.random.default_rng(0)
    data = rng.dirichlet(np.ones(classes), size=n).astype(np.float32)  # probabilities compress like real ones
    mb = 3 * data.nbytes / 1e6
    w, r = numpy_roundtrip(data)
    params = {"images": n, "classes": classes}
    record("store", "numpy", params, {"write_MB_per_s": (mb / w, "MB/s"), "read_MB_per_s": (mb / r, "MB/s")})
    click.echo(f"numpy .npy        write {mb / w:8.1f} MB/s  read {mb / r:8.1f} MB/s  ({mb:.0f} MB)")
    for chunk_len in map(int, chunks.split(",")):
        sw, sr = store_roundtrip(n, classes, chunk_len, data)
        record(
            "store",
            "cdul",
            {**params, "chunk_len": chunk_len},
            {
                "write_MB_per_s": (mb / sw, "MB/s"),
                "read_MB_per_s": (mb / sr, "MB/s"),
                "write_vs_numpy": (w / sw, "x"),
                "read_vs_numpy": (r / sr, "x"),
            },
        )
        click.echo(
            f"store chunk {chunk_len:6d} write {mb / sw:8.1f} MB/s  read {mb / sr:8.1f} MB/s  "
            f"(x{w / sw:.2f} / x{r / sr:.2f} of numpy)"
        )


if __name__ == "__main__":
    main()
