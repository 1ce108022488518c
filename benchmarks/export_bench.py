"""Label export: images per second of ``cdul.export`` (the code of ``cdul-export``) from a
finished synthetic store, to each table format, with and without score columns. The time
covers the whole command: the store's health check, the table, and the scores' mAP.

    python -m cdul.benchmarks.export_bench --quick      # 20,000 images x 20 classes
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


def synthetic_store(
    path: str, n: int, classes: int, chunk_len: int = 1024, failed_every: int = 0, truth: bool = True, seed: int = 0
):
    """A finished store of ``n`` images written straight through the store API (no CLIP):
    Dirichlet S_g, alpha, beta, round 0 from them, ground truth (with ``truth``), every
    ``failed_every``-th image failed. Returns the open Store."""
    from cdul.kernels import initial_labels

    shutil.rmtree(path, ignore_errors=True)
    rng = np.random.default_rng(seed)
    names = [f"class {j}" for j in range(classes)]
    targets = np.where(rng.random((n, classes)) < 1.5 / classes, 1, -1).astype(np.int8)
    specs = [s for s in layout.result_specs(classes) if s.name != layout.HW]
    ids = [f"img/{i:07d}.jpg" for i in range(n)]
    store = Store.create(
        path, ids=ids, classes=names, specs=specs, targets=targets if truth else None, chunk_len=chunk_len
    )
    for chunk in store.chunks():
        m = len(chunk)
        sims = {
            layout.SIM_GLOBAL: rng.dirichlet(np.ones(classes), size=m).astype(np.float32),
            layout.SIM_ALPHA: rng.dirichlet(np.ones(classes) / 2, size=m).astype(np.float32),
            layout.SIM_BETA: rng.dirichlet(np.ones(classes) * 2, size=m).astype(np.float32) / 4,
        }
        status = np.full(m, layout.OK, np.uint8)
        if failed_every:
            bad = (np.arange(chunk.start, chunk.stop) % failed_every) == 0
            status[bad] = layout.FAILED
            for name in sims:
                sims[name][bad] = np.nan
        store.write_chunk(chunk.k, {layout.STATUS: status, layout.N_TILES: np.full(m, 9, np.int32), **sims})
    arr = store.begin_round(0, {"zeta": 0.5, "lam": 0.0, "source": "synthetic", "epoch": None})
    for chunk in store.chunks(layout.SIM_GLOBAL, layout.SIM_ALPHA, layout.SIM_BETA):
        s_g, alpha, beta = (chunk[k] for k in (layout.SIM_GLOBAL, layout.SIM_ALPHA, layout.SIM_BETA))
        arr[chunk.start : chunk.stop] = initial_labels(s_g, alpha, beta, 0.5, 0.0).astype(np.float32)
    store.finish_round(0)
    store.set_attrs(complete=True, summary={"images": n})
    return store


@click.command()
@click.option("--quick", is_flag=True, help="20,000 images.")
@click.option("--images", type=int, default=None, help="Images in the store.  [default: 200,000; --quick 20,000]")
@click.option("--classes", type=int, default=20, help="Classes in the store.")
@click.option("--repeat", type=int, default=3, help="Runs of each variant; the median is recorded.")
def main(quick, images, classes, repeat):
    from cdul.api import export

    n = images or (20_000 if quick else 200_000)
    folder = os.path.join(work_dir(), "export-bench")
    os.makedirs(folder, exist_ok=True)
    store = os.path.join(folder, f"store-{n}-{classes}.zarr")
    t = time.perf_counter()
    synthetic_store(store, n, classes, failed_every=100)
    click.echo(f"made a {n}-image store in {time.perf_counter() - t:.1f} s")
    for fmt in ("csv", "jsonl", "parquet"):
        for scores in (False, True):
            out = os.path.join(folder, f"labels.{fmt}")
            times = []
            for _ in range(repeat):
                t = time.perf_counter()
                result = export(store=store, out=out, scores=scores)
                times.append(time.perf_counter() - t)
            seconds = float(np.median(times))
            variant = f"{fmt}{'+scores' if scores else ''}"
            rate = result.images / seconds
            record("export", variant, {"images": n, "classes": classes}, {"rate": (rate, "img/s")})
            click.echo(f"{variant:16s} {rate:10.0f} img/s  ({seconds:.2f} s, {os.path.getsize(out) / 1e6:.1f} MB)")
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
