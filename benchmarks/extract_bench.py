"""Extraction throughput: ours end to end vs the naive baseline vs the encoder-only limit.

    python -m cdul.benchmarks.extract_bench --quick        # this CPU, about 3 minutes
    python -m cdul.benchmarks.extract_bench                # a GPU: RN50, ViT-B-32, RN50x64

Variants, measured in one run on the same JPEGs (random weights: speed does not depend on
them), model loading excluded from all three:
- ours: cdul's extractor from JPEG files to the store (decode in DataLoader workers, views
  as tensors, full encoder batches, fp16 autocast on CUDA, chunked store writes);
- naive: one image at a time, PIL crops, float32, a batch of one image's crops, one file
  per image (benchmarks/naive.py);
- limit: the same encoder on ready-made tensors at our batch size and precision, no I/O.
"""
from __future__ import annotations

import math
import os
import shutil

import click
import torch

from cdul.data import load_dataset
from cdul.extractor.build import prepare_store
from cdul.extractor.clip_model import load_clip
from cdul.extractor.pipeline import PRECISIONS, WorkerConfig, extract_chunks, resolve_precision
from cdul.extractor.tiling import Tiling

from . import naive
from .bench_data import jpeg_dataset, work_dir
from .common import record, timeit


def parse_tiling(spec: str) -> Tiling:
    return Tiling.pixel(int(spec[2:])) if spec.startswith("px") else Tiling.grid(int(spec))


def run_ours(root, model, tiling, device, batch_size, workers) -> dict:
    data = load_dataset("voc2012", root, "train")
    out = os.path.join(work_dir(), "ours.zarr")
    cfg = WorkerConfig(store=out, root=data.root, model=model, pretrained="none", tiling=tiling,
                       batch_size=batch_size, loader_workers=workers)
    # warm-up on a few images first: CUDA loads kernels lazily, and the first batches of a
    # process would otherwise be timed with them
    warm = prepare_store(out, cfg, data.head(max(8, 2 * workers)), chunk_len=256, overwrite=True)
    extract_chunks(cfg, warm.pending_chunks(), device)
    store = prepare_store(out, cfg, data, chunk_len=256, overwrite=True)
    counts = extract_chunks(cfg, store.pending_chunks(), device)
    return {"images": counts["images"], "tiles": counts["tiles"], "seconds": counts["work_seconds"]}


def run_naive(root, model, tiling, device, limit: int) -> dict:
    data = load_dataset("voc2012", root, "train")
    net, preprocess, text, scale = naive.load(model, data.classes, device)
    paths = [os.path.join(data.root, i) for i in data.ids[:limit]]
    out = os.path.join(work_dir(), "naive-out")
    shutil.rmtree(out, ignore_errors=True)
    snippet = tiling.size if tiling.mode == "grid" else None
    tile_px = tiling.size if tiling.mode == "pixel" else None
    if snippet == 1:
        snippet = None
        tile_px = 10**9  # the global view only, as --snippet 1 scores
    return naive.run(paths, out, net, preprocess, text, scale, device, snippet=snippet, tile_px=tile_px)


def run_limit(model, device, batch_size, crops: int, max_batches: int) -> dict:
    dev = torch.device(device)
    bundle = load_clip(model, "none", ["x"], device=dev)
    precision = resolve_precision("auto", dev)
    autocast = dev.type == "cuda" and precision != "fp32"
    dtype = PRECISIONS[precision] if autocast else torch.float32
    visual = bundle.visual
    x = torch.randn(batch_size, 3, bundle.input_size, bundle.input_size, device=dev).to(dtype)
    if dev.type == "cuda":
        visual = visual.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    n = max(1, min(max_batches, math.ceil(crops / batch_size)))

    @torch.inference_mode()
    def go():
        for _ in range(n):
            with torch.autocast(dev.type, dtype=PRECISIONS[precision], enabled=autocast):
                visual(x)

    sync = torch.cuda.synchronize if dev.type == "cuda" else None
    seconds = timeit(go, warmup=1, repeat=3, sync=sync)
    return {"crops_per_s": n * batch_size / seconds}


@click.command()
@click.option("--quick", is_flag=True, help="CPU-sized: RN50, snippet 1 and 3, a few images.")
@click.option("--models", default=None, help="Comma list of open_clip models.")
@click.option("--tilings", default=None, help="Comma list: 1, 3, 8 (grids), px64 (64-pixel tiles).")
@click.option("--images", type=int, default=None, help="Images per run (ours).")
@click.option("--naive-images", type=int, default=None, help="Images for the naive baseline (it is slow).")
@click.option("--device", default="auto")
@click.option("--batch-size", type=int, default=None)
@click.option("--workers", type=int, default=None, help="Decoding processes for ours.")
def main(quick, models, tilings, images, naive_images, device, batch_size, workers):
    cuda = torch.cuda.is_available()
    device = ("cuda:0" if cuda else "cpu") if device == "auto" else device
    on_gpu = device.startswith("cuda")
    models = (models or ("RN50" if quick else "RN50,ViT-B-32,RN50x64")).split(",")
    tilings = (tilings or ("1,3" if quick else "1,3,8,px64")).split(",")
    images = images or (48 if quick else 512)
    naive_images = naive_images or (4 if quick else 64)
    batch_size = batch_size or (256 if on_gpu else 8)
    workers = (min(8, os.cpu_count() or 1) if on_gpu else 0) if workers is None else workers
    root = jpeg_dataset(images)
    rows = []
    for model in models:
        for spec in tilings:
            tiling = parse_tiling(spec)
            params = {"model": model, "tiling": spec, "images": images, "batch_size": batch_size,
                      "device": device}
            ours = run_ours(root, model, tiling, device, batch_size, workers)
            views = 1 + ours["tiles"] / ours["images"] if not tiling.whole_image else 1
            limit = run_limit(model, device, batch_size, int(views * ours["images"]), 4 if not on_gpu else 50)
            nv = run_naive(root, model, tiling, device, naive_images)
            ips = {"ours": ours["images"] / ours["seconds"], "naive": nv["images"] / nv["seconds"],
                   "limit": limit["crops_per_s"] / views}
            tiles_per_image = ours["tiles"] / ours["images"]
            for variant, v in ips.items():
                record("extract", variant, params, {"images_per_s": (v, "img/s"),
                                                    "tiles_per_s": (v * tiles_per_image, "tiles/s")})
            record("extract", "ratio", params, {"ours_over_naive": (ips["ours"] / ips["naive"], "x"),
                                                "ours_over_limit": (ips["ours"] / ips["limit"], "x")})
            rows.append((model, spec, ips["ours"], ips["naive"], ips["limit"], ips["ours"] / ips["naive"],
                         ips["ours"] / ips["limit"]))
            click.echo(f"{model:10s} {spec:5s} ours {ips['ours']:8.2f} img/s  naive {ips['naive']:8.2f}  "
                       f"limit {ips['limit']:8.2f}  ours/naive {rows[-1][5]:5.2f}  ours/limit {rows[-1][6]:5.2f}")
    return rows


if __name__ == "__main__":
    main()
