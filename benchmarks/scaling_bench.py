"""Multi-worker scaling: the same extraction on 1 and on 2 workers (two CPU processes here,
two GPUs where there are), and the efficiency per worker.

    python -m cdul.benchmarks.scaling_bench --quick
"""

from __future__ import annotations

import os

import click
import torch

from cdul.data import load_dataset
from cdul.extractor.config import ExtractConfig, RunOptions, WorkerConfig
from cdul.extractor.job import extract
from cdul.extractor.plan import plan_extraction
from cdul.extractor.tiling import Tiling

from .bench_data import jpeg_dataset, work_dir
from .common import record


def run(root: str, model: str, devices: list[str], batch_size: int, workers: int, threads: int | None) -> float:
    data = load_dataset("voc2012", root, "train")
    out = os.path.join(work_dir(), "scaling.zarr")
    cfg = WorkerConfig(
        store=out,
        root=data.root,
        config=ExtractConfig(model=model, pretrained="none", tiling=Tiling.grid(3)),
        run=RunOptions(batch_size=batch_size, loader_workers=workers, threads=threads),
    )
    counts = extract(plan_extraction(cfg, devices, chunk_len=max(1, len(data) // 8), overwrite=True), data).counts
    return counts["images"] / counts["work_seconds"]


@click.command()
@click.option("--quick", is_flag=True, help="CPU-sized: RN50 on a few images, 1 vs 2 CPU processes.")
@click.option("--model", default=None)
@click.option("--images", type=int, default=None)
def main(quick, model, images):
    n_gpu = torch.cuda.device_count()
    model = model or ("RN50" if quick or not n_gpu else "ViT-B-32")
    images = images or (16 if quick or not n_gpu else 2048)
    root = jpeg_dataset(images)
    if n_gpu >= 2:
        one, two, batch, workers, threads = ["cuda:0"], ["cuda:0", "cuda:1"], 256, 4, None
    else:
        # the cores are split between the processes, so perfect scaling is 1.0 per worker only
        # where the single process cannot use them all
        cores = os.cpu_count() or 1
        one, two, batch, workers, threads = ["cpu"], ["cpu", "cpu"], 8, 0, None
        click.echo(f"{n_gpu} GPU(s): comparing 1 and 2 CPU processes on {cores} cores")
    rate1 = run(root, model, one, batch, workers, threads)
    rate2 = run(root, model, two, batch, workers, threads)
    params = {"model": model, "images": images, "devices_1": one, "devices_2": two}
    record("scaling", "1 worker", params, {"images_per_s": (rate1, "img/s")})
    record(
        "scaling",
        "2 workers",
        params,
        {
            "images_per_s": (rate2, "img/s"),
            "speedup": (rate2 / rate1, "x"),
            "efficiency_per_worker": (rate2 / rate1 / 2, "x"),
        },
    )
    click.echo(
        f"1 worker {rate1:.2f} img/s, 2 workers {rate2:.2f} img/s: speed-up {rate2 / rate1:.2f}, "
        f"efficiency per worker {rate2 / rate1 / 2:.2f}"
    )


if __name__ == "__main__":
    main()
