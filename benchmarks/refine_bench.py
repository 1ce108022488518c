"""Neighbourhood refinement: time and peak memory at 10k and 100k generated embeddings.

    python -m cdul.benchmarks.refine_bench --quick

Each size runs in its own process, so its peak resident memory is its own.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time

import click
import numpy as np

from .bench_data import work_dir
from .common import record


def make_store(path: str, n: int, dim: int, classes: int, seed: int = 0):
    from cdul.store import Store, layout

    rng = np.random.default_rng(seed)
    shutil.rmtree(path, ignore_errors=True)
    specs = [s for s in layout.result_specs(classes, embed_dim=dim) if s.name in (layout.STATUS, layout.EMB_GLOBAL)]
    store = Store.create(
        path,
        ids=[str(i) for i in range(n)],
        classes=[str(c) for c in range(classes)],
        specs=specs,
        chunk_len=1024,
        attrs={"config_hash": f"bench-{n}"},
    )
    centres = rng.normal(size=(max(8, n // 200), dim))
    for chunk in store.chunks():
        m = len(chunk)
        e = centres[rng.integers(0, len(centres), m)] + 0.5 * rng.normal(size=(m, dim))
        e /= np.linalg.norm(e, axis=1, keepdims=True)
        store.write_chunk(chunk.k, {layout.STATUS: np.ones(m, np.uint8), layout.EMB_GLOBAL: e.astype(np.float16)})
    arr = store.begin_round(0, {})
    for chunk in store.chunks():
        arr[chunk.start : chunk.stop] = rng.random((len(chunk), classes), dtype=np.float32)
    store.finish_round(0)
    return store


def one(n: int, dim: int, classes: int, kind: str) -> dict:
    from cdul.index import choose_index, refine_labels

    path = os.path.join(work_dir(), f"refine-{n}.zarr")
    store = make_store(path, n, dim, classes)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    spec = choose_index(n, kind)
    t = time.perf_counter()
    refine_labels(store, knn=10, weight=0.3, spec=spec, gpu=False)
    seconds = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"seconds": seconds, "peak_rss_mb": peak / 1024, "rss_before_mb": base / 1024, "index": spec.kind}


@click.command()
@click.option("--quick", is_flag=True, help="10k and 100k embeddings (the only sizes; kept for symmetry).")
@click.option("--sizes", default="10000,100000")
@click.option("--dim", type=int, default=512)
@click.option("--classes", type=int, default=80)
@click.option("--index", "kind", default="auto")
@click.option("--one", "single", type=int, default=None, hidden=True)
def main(quick, sizes, dim, classes, kind, single):
    if single:
        click.echo(json.dumps(one(single, dim, classes, kind)))
        return
    for n in map(int, sizes.split(",")):
        for variant in ["flat", "ivf"] if kind == "auto" else [kind]:
            out = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "cdul.benchmarks.refine_bench",
                    "--one",
                    str(n),
                    "--dim",
                    str(dim),
                    "--classes",
                    str(classes),
                    "--index",
                    variant,
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            r = json.loads(out.stdout.strip().splitlines()[-1])
            record(
                "refine",
                variant,
                {"images": n, "dim": dim, "classes": classes, "knn": 10},
                {
                    "seconds": (r["seconds"], "s"),
                    "images_per_s": (n / r["seconds"], "img/s"),
                    "peak_rss_MB": (r["peak_rss_mb"], "MB"),
                },
            )
            click.echo(
                f"{n:8d} images  {variant:4s}  {r['seconds']:7.2f} s  {n / r['seconds']:9.0f} img/s  "
                f"peak RSS {r['peak_rss_mb']:7.0f} MB"
            )


if __name__ == "__main__":
    main()
