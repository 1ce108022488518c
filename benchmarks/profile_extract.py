"""Where extraction time goes: torch.profiler over one extraction, split into the pipeline's
stages (waiting for decoded images, cutting/resizing/normalising views, encoding, scoring,
writing the store).

    python -m cdul.benchmarks.profile_extract [--model ViT-B-32] [--images 256] [--snippet 3]

The stages are marked by wrapping the pipeline's own methods here, so production code
carries no profiling hooks. It prints the share of wall time each stage takes on the host
and the share of device time its kernels take on the GPU, and records both.
"""
from __future__ import annotations

import functools
import os
import time

import click
import torch
from torch.profiler import ProfilerActivity, profile, record_function

from cdul.data import load_dataset
from cdul.extractor import pipeline, views
from cdul.extractor.build import prepare_store
from cdul.extractor.pipeline import WorkerConfig, extract_chunks
from cdul.extractor.tiling import Tiling
from cdul.store import Store

from .bench_data import jpeg_dataset, work_dir
from .common import record

STAGES = {"views": (views.ViewMaker, "make"), "encode": (pipeline.BatchEncoder, "_run"),
          "score": (pipeline._Scorer, "score"), "store": (Store, "write_chunk")}


def _mark(name, fn):
    @functools.wraps(fn)
    def wrapper(*a, **k):
        with record_function(f"stage:{name}"):
            return fn(*a, **k)
    return wrapper


def _device_time(evt) -> float:
    return float(getattr(evt, "device_time_total", 0) or getattr(evt, "cuda_time_total", 0) or 0)


@click.command()
@click.option("--model", default="ViT-B-32")
@click.option("--images", type=int, default=256)
@click.option("--snippet", type=int, default=3)
@click.option("--device", default="auto")
@click.option("--workers", type=int, default=None)
@click.option("--trace", default=None, help="Also write a Chrome trace here.")
def main(model, images, snippet, device, workers, trace):
    device = ("cuda:0" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    cuda = device.startswith("cuda")
    workers = (min(8, os.cpu_count() or 1) if cuda else 0) if workers is None else workers
    data = load_dataset("voc2012", jpeg_dataset(images), "train")
    out = os.path.join(work_dir(), "profile.zarr")
    cfg = WorkerConfig(store=out, root=data.root, model=model, pretrained="none", tiling=Tiling.grid(snippet),
                       batch_size=256 if cuda else 8, loader_workers=workers)
    store = prepare_store(out, cfg, data, chunk_len=64, overwrite=True)
    # a short warm-up run, so kernel selection and the first compiles are not profiled
    warm = prepare_store(out + "-warm", cfg.__class__(**{**cfg.__dict__, "store": out + "-warm"}),
                         data.head(16), chunk_len=64, overwrite=True)
    extract_chunks(cfg.__class__(**{**cfg.__dict__, "store": out + "-warm"}), warm.pending_chunks(), device)
    originals = {name: getattr(cls, meth) for name, (cls, meth) in STAGES.items()}
    for name, (cls, meth) in STAGES.items():
        setattr(cls, meth, _mark(name, originals[name]))
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    try:
        with profile(activities=activities) as prof:
            t = time.perf_counter()
            counts = extract_chunks(cfg, store.pending_chunks(), device)
            wall = time.perf_counter() - t
    finally:
        for name, (cls, meth) in STAGES.items():
            setattr(cls, meth, originals[name])
    # a marked stage appears twice: as a CPU range and as the matching GPU range
    host_events = {e.key: e for e in prof.key_averages() if e.device_type == torch.autograd.DeviceType.CPU}
    dev_events: dict[str, float] = {}
    for e in prof.key_averages():
        dev_events[e.key] = dev_events.get(e.key, 0.0) + _device_time(e)
    device_total = sum(_device_time(e) for e in prof.key_averages() if not e.key.startswith("stage:")
                       and e.device_type != torch.autograd.DeviceType.CPU) if cuda else 0.0
    work = counts["work_seconds"]
    rows = []
    for name in STAGES:
        e = host_events.get(f"stage:{name}")
        host = e.cpu_time_total / 1e6 if e else 0.0
        dev = dev_events.get(f"stage:{name}", 0.0) / (2 if cuda else 1)  # the CPU range carries it too
        rows.append((name, host, host / work, dev / device_total if device_total else float("nan")))
    waiting = max(0.0, work - sum(r[1] for r in rows))
    params = {"model": model, "images": images, "snippet": snippet, "device": device, "workers": workers}
    click.echo(f"{counts['images']} images in {work:.2f} s ({counts['images'] / work:.1f} img/s, "
               f"{counts['tiles'] / work:.1f} tiles/s) on {device}; wall {wall:.2f} s with model loading")
    click.echo(f"{'stage':8s} {'host s':>8s} {'host %':>7s} {'device %':>9s}")
    for name, host, share, dshare in rows:
        click.echo(f"{name:8s} {host:8.3f} {100 * share:6.1f}% {100 * dshare:8.1f}%")
        record("profile", name, params, {"host_share": (share, ""), "device_share": (dshare, "")})
    click.echo(f"{'other':8s} {waiting:8.3f} {100 * waiting / work:6.1f}%   (waiting for decoded images, loop)")
    record("profile", "other", params, {"host_share": (waiting / work, "")})
    sort = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    click.echo(prof.key_averages().table(sort_by=sort, row_limit=18, max_name_column_width=40))
    if trace:
        prof.export_chrome_trace(trace)


if __name__ == "__main__":
    main()
