"""Memory: peak resident memory of extraction and of training on 1,000 and 10,000 images.
Both must stay flat: bounded by the batch and the chunk, not by the size of the dataset.

    python -m cdul.benchmarks.memory_bench --quick

Every measurement runs in a fresh process that reports its own peak (and the largest of
its DataLoader workers'), so one measurement cannot inherit another's memory.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys

import click

from .bench_data import label_store, small_jpegs, work_dir
from .common import record


def _peaks() -> dict:
    return {
        "self_MB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "largest_worker_MB": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }


def measure_extract(n: int) -> dict:
    from cdul.data import load_dataset
    from cdul.extractor.config import ExtractConfig, RunOptions, WorkerConfig
    from cdul.extractor.job import extract
    from cdul.extractor.plan import plan_extraction
    from cdul.extractor.tiling import Tiling

    data = load_dataset("voc2012", small_jpegs(n), "train")
    out = os.path.join(work_dir(), f"mem-extract-{n}.zarr")
    cfg = WorkerConfig(
        store=out,
        root=data.root,
        config=ExtractConfig(model="cdul-tiny-rn", pretrained="none", tiling=Tiling.grid(2)),
        run=RunOptions(batch_size=64, loader_workers=1),
    )
    extract(plan_extraction(cfg, ["cpu"], chunk_len=256, overwrite=True), data)
    return _peaks()


def measure_train(n: int) -> dict:
    from cdul.trainer import TrainConfig, train

    path = os.path.join(work_dir(), f"mem-train-{n}.zarr")
    label_store(path, small_jpegs(n), chunk_len=256)
    out = os.path.join(work_dir(), f"mem-train-{n}")
    shutil.rmtree(out, ignore_errors=True)  # a fresh run, not a resume of an earlier one
    train(
        TrainConfig(
            store=path,
            out_dir=out,
            arch="resnet18",
            weights="none",
            img_size=32,
            batch_size=64,
            epochs=1,
            workers=1,
            device="cpu",
            amp="none",
            quiet=True,
        )
    )
    return _peaks()


@click.command()
@click.option("--quick", is_flag=True, help="1,000 and 10,000 images (the sizes the check is about).")
@click.option("--sizes", default="1000,10000")
@click.option("--one", nargs=2, type=(str, int), default=None, hidden=True)
def main(quick, sizes, one):
    if one:
        phase, n = one
        click.echo(json.dumps(measure_extract(n) if phase == "extract" else measure_train(n)))
        return
    sizes = [int(s) for s in sizes.split(",")]
    for phase in ("extract", "train"):
        peaks = {}
        for n in sizes:
            small_jpegs(n)  # made outside the measured process
            out = subprocess.run(
                [sys.executable, "-m", "cdul.benchmarks.memory_bench", "--one", phase, str(n)],
                capture_output=True,
                text=True,
                check=True,
            )
            peaks[n] = json.loads(out.stdout.strip().splitlines()[-1])
            record(
                "memory",
                phase,
                {"images": n},
                {
                    "peak_rss_MB": (peaks[n]["self_MB"], "MB"),
                    "largest_worker_MB": (peaks[n]["largest_worker_MB"], "MB"),
                },
            )
            click.echo(
                f"{phase:8s} {n:7d} images: peak {peaks[n]['self_MB']:7.0f} MB (largest worker "
                f"{peaks[n]['largest_worker_MB']:.0f} MB)"
            )
        lo, hi = peaks[sizes[0]]["self_MB"], peaks[sizes[-1]]["self_MB"]
        record("memory", phase, {"images": f"{sizes[0]}->{sizes[-1]}"}, {"growth": (hi / lo, "x")})
        click.echo(f"{phase:8s} growth {sizes[0]} -> {sizes[-1]} images: x{hi / lo:.2f}")


if __name__ == "__main__":
    main()
