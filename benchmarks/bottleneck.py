"""Where ours loses to the encoder-only limit, for one model, measured in one process:

1. loader: the decoding workers alone (decode, pack, pin), in img/s, with and without the
   time to the first batch (worker start-up);
2. encoder: the tower alone on one ready batch, for each ``--compile`` mode given: ms per
   batch when calls go back to back (the limit), and the host's ms to issue one call while
   the device is idle (what the host pays per batch, whatever the device does);
3. the same two numbers while the loader runs in a thread of this process, as it does in
   ours: decoding processes take CPUs, the pinning thread takes the GIL;
4. ours end to end for each mode, with its stage times.

    python -m cdul.benchmarks.bottleneck --model ViT-B-32 --images 2048 --modes none,cuda-graph
"""

from __future__ import annotations

import os
import threading
import time

import click
import torch

from cdul.data import load_dataset
from cdul.extractor.clip_model import load_clip
from cdul.extractor.config import ExtractConfig, RunOptions, WorkerConfig
from cdul.extractor.encoder import PRECISIONS, Encoder
from cdul.extractor.modes import _tower, resolve_precision
from cdul.extractor.packing import ViewSpec
from cdul.extractor.pipeline import make_loader
from cdul.extractor.stages import images_per_batch
from cdul.extractor.tiling import Tiling
from cdul.store import Store

from .bench_data import jpeg_dataset, work_dir
from .common import decoding_workers, record
from .extract_bench import run_ours


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def loader_rate(cfg: WorkerConfig, spec: ViewSpec, device: torch.device) -> dict:
    """Iterate the decoding workers over the whole store once, doing nothing with the batches."""
    store = Store.open(cfg.store)
    chunks = list(range(store.n_chunks))
    loader = make_loader(cfg, store, chunks, spec, cfg.config.tiling, device)
    t0 = time.perf_counter()
    first = None
    n = n_first = 0
    for batch in loader:
        if first is None:
            first, n_first = time.perf_counter() - t0, len(batch.rows)
        n += len(batch.rows)
    total = time.perf_counter() - t0
    return {
        "images_per_s": n / total,
        "after_first_per_s": (n - n_first) / max(total - (first or 0.0), 1e-9),
        "first_batch_s": first or 0.0,
    }


def encoder_times(enc: Encoder, x: torch.Tensor, calls: int) -> dict:
    """ms per batch back to back, and host ms to issue one call on an idle device."""
    n = x.shape[0]
    for _ in range(2):  # first launches, and the capture of a graph
        enc(x, n)
    _sync(enc.device)
    t = time.perf_counter()
    for _ in range(calls):
        enc(x, n)
    _sync(enc.device)
    back_to_back = (time.perf_counter() - t) / calls
    host = 0.0
    for _ in range(calls):
        _sync(enc.device)
        t = time.perf_counter()
        enc(x, n)
        host += time.perf_counter() - t
    _sync(enc.device)
    return {"batch_ms": 1e3 * back_to_back, "host_ms": 1e3 * host / calls}


class LoaderLoad:
    """The decoding workers running in a thread, over and over, until stopped."""

    def __init__(self, cfg: WorkerConfig, spec: ViewSpec, device: torch.device):
        store = Store.open(cfg.store)
        chunks = list(range(store.n_chunks))
        self.make = lambda: make_loader(cfg, store, chunks, spec, cfg.config.tiling, device)
        self.stop = threading.Event()
        self.batches = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            for _ in self.make():
                self.batches += 1
                if self.stop.is_set():
                    break

    def __enter__(self):
        self.thread.start()
        while self.batches < 4:  # past start-up
            time.sleep(0.01)
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


@click.command()
@click.option("--model", default="ViT-B-32")
@click.option("--images", type=int, default=2048)
@click.option("--snippet", type=int, default=3)
@click.option("--batch-size", type=int, default=256)
@click.option("--workers", type=int, default=None, help="Decoding processes.  [default: cdul-extract's on one GPU]")
@click.option("--modes", default="none,cuda-graph", help="Comma list of --compile modes to compare.")
@click.option("--calls", type=int, default=20, help="Encoder calls per timing.")
def main(model, images, snippet, batch_size, workers, modes, calls):
    cuda = torch.cuda.is_available()
    device = torch.device("cuda:0" if cuda else "cpu")
    workers = decoding_workers() if workers is None else workers
    modes = [m for m in modes.split(",") if cuda or m == "none"]
    root = jpeg_dataset(images)
    tiling = Tiling.grid(snippet)
    params = {"model": model, "images": images, "snippet": snippet, "batch_size": batch_size, "workers": workers}

    store_url = os.path.join(work_dir(), "ours.zarr")  # what run_ours leaves
    data = load_dataset("voc2012", root, "train")
    cfg = WorkerConfig(
        store_url, data.root, ExtractConfig(model, "none", tiling=tiling), RunOptions(batch_size, workers)
    )
    bundle = load_clip(model, "none", ["x"], device=device)
    spec = ViewSpec(bundle.input_size, bundle.interpolation, bundle.resize_mode)
    precision = resolve_precision("auto", device)
    per_batch = images_per_batch(tiling, batch_size)
    x = torch.randn(batch_size, 3, bundle.input_size, bundle.input_size, device=device)
    x = x.to(PRECISIONS[precision] if cuda else torch.float32)
    if cuda:
        x = x.contiguous(memory_format=torch.channels_last)
    click.echo(f"{model}, {batch_size} rows per encoder call ({per_batch} whole images, {workers} workers)")
    for i, mode in enumerate(modes):
        try:
            o = run_ours(root, model, tiling, str(device), batch_size, workers, compile_mode=mode)
            ips = o["images"] / o["seconds"]
            click.echo(
                f"  ours {mode}: {ips:.1f} img/s; stages (s): "
                + ", ".join(f"{k} {v:.3f}" for k, v in o["stages"].items())
            )
            if i == 0:
                lr = loader_rate(cfg, spec, device)
                click.echo(
                    f"  loader alone: {lr['images_per_s']:.0f} img/s, {lr['after_first_per_s']:.0f} img/s "
                    f"after the first batch ({lr['first_batch_s']:.2f} s)"
                )
                units = {k: (v, "img/s" if "per_s" in k else "s") for k, v in lr.items()}
                record("bottleneck", "loader", params, units)
            tower = _tower(bundle.visual, device, "none" if mode == "cuda-graph" else mode)
            enc = Encoder(tower, batch_size, device, precision, mode != "none", graph=mode == "cuda-graph")
            alone = encoder_times(enc, x, calls)
            with LoaderLoad(cfg, spec, device):
                loaded = encoder_times(enc, x, calls)
        except Exception as exc:  # one mode failing leaves the others measured
            click.echo(f"  {mode}: failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            continue
        limit = 1e3 * per_batch / alone["batch_ms"]
        click.echo(
            f"  encoder {mode}: alone {alone['batch_ms']:.2f} ms/batch (host {alone['host_ms']:.2f}); "
            f"loader running {loaded['batch_ms']:.2f} (host {loaded['host_ms']:.2f}); "
            f"limit {limit:.1f} img/s; ours/limit {ips / limit:.2f}"
        )
        record(
            "bottleneck",
            f"encoder:{mode}",
            params,
            {
                "batch_ms": (alone["batch_ms"], "ms"),
                "host_ms": (alone["host_ms"], "ms"),
                "loaded_batch_ms": (loaded["batch_ms"], "ms"),
                "loaded_host_ms": (loaded["host_ms"], "ms"),
                "ours_images_per_s": (ips, "img/s"),
                "limit_images_per_s": (limit, "img/s"),
            },
        )
        del enc, tower


if __name__ == "__main__":
    main()
