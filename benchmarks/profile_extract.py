"""Where extraction time goes, stage by stage (load: waiting for packed batches; copy; views;
encode; score; collect: reading scores back and filling chunks), plus torch.profiler's table
of the heaviest kernels.

    python -m cdul.benchmarks.profile_extract [--model ViT-B-32] [--images 256] [--snippet 3]

Two timed runs after a warm-up: one as in production (throughput; the stage times are
host time, the device runs behind), one with the device waited for after every stage, so
each stage's time includes its device work (that run is slower: the stages no longer
overlap). Both are printed and recorded.
"""

from __future__ import annotations

import dataclasses
import os

import click
import torch
from torch.profiler import ProfilerActivity, profile

from cdul.data import load_dataset
from cdul.extractor.config import ExtractConfig, RunOptions, WorkerConfig
from cdul.extractor.job import extract
from cdul.extractor.plan import plan_extraction, with_run
from cdul.extractor.stages import STAGES
from cdul.extractor.tiling import Tiling

from .bench_data import jpeg_dataset, work_dir
from .common import record


@click.command()
@click.option("--model", default="ViT-B-32")
@click.option("--images", type=int, default=256)
@click.option("--snippet", type=int, default=3)
@click.option("--device", default="auto")
@click.option("--workers", type=int, default=None)
@click.option("--views", default="auto", help="auto, kernel or exact.")
@click.option("--trace", default=None, help="Also write a Chrome trace of the synchronised run here.")
def main(model, images, snippet, device, workers, views, trace):
    device = ("cuda:0" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    cuda = device.startswith("cuda")
    data = load_dataset("voc2012", jpeg_dataset(images), "train")
    out = os.path.join(work_dir(), "profile.zarr")
    cfg = WorkerConfig(
        store=out,
        root=data.root,
        config=ExtractConfig(model=model, pretrained="none", tiling=Tiling.grid(snippet)),
        run=RunOptions(loader_workers=-1 if workers is None else workers, views=views),
    )
    plan = plan_extraction(cfg, [device], chunk_len=64, overwrite=True)
    workers = plan.worker.run.loader_workers

    def run(sync: bool, store_url: str, subset=None) -> dict:
        p = with_run(plan, sync_stages=sync)
        p = dataclasses.replace(p, worker=dataclasses.replace(p.worker, store=store_url))
        return extract(p, subset or data).counts

    run(False, out + "-warm", data.head(32))  # kernel selection and first launches are not timed
    free = run(False, out)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        synced = run(True, out)
    params = {
        "model": model,
        "images": images,
        "snippet": snippet,
        "device": device,
        "workers": workers,
        "views": views,
    }
    for label, counts in (("overlapped", free), ("synchronised", synced)):
        work = counts["work_seconds"]
        click.echo(
            f"{label}: {counts['images']} images in {work:.2f} s ({counts['images'] / work:.1f} img/s, "
            f"{counts['tiles'] / work:.1f} tiles/s) on {device}"
        )
        click.echo(f"  {'stage':8s} {'s':>8s} {'share':>7s} {'ms/batch':>9s}")
        stages = counts["stage_seconds"]
        for name in STAGES:
            sec = stages.get(name, 0.0)
            click.echo(f"  {name:8s} {sec:8.3f} {100 * sec / work:6.1f}% {1000 * sec / counts['batches']:9.2f}")
            record("profile", f"{label}:{name}", params, {"share": (sec / work, ""), "seconds": (sec, "s")})
        record("profile", label, params, {"images_per_s": (counts["images"] / work, "img/s")})
    sort = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    click.echo(prof.key_averages().table(sort_by=sort, row_limit=18, max_name_column_width=40))
    if trace:
        prof.export_chrome_trace(trace)


if __name__ == "__main__":
    main()
