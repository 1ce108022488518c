"""Extraction throughput: ours end to end vs the naive baseline vs the encoder-only limit.

    python -m cdul.benchmarks.extract_bench --quick        # this CPU, about 3 minutes
    python -m cdul.benchmarks.extract_bench --models RN50,ViT-B-32,ViT-B-16,RN50x64 --tilings 3   # a GPU

Variants, measured in one run on the same JPEGs (random weights: speed does not depend on
them), model loading excluded from all three:
- ours: cdul's extractor from JPEG files to the store (decode and pack in DataLoader
  workers, one copy per batch, the batch view kernel on CUDA, full encoder batches, fp16
  autocast, the tower replayed from a CUDA graph, one scorer launch and one copy back per
  batch, store writes in a thread), on at least ``--seconds`` of encoder work (a GPU: 4 s),
  so that start-up weighs what it weighs on a real dataset; its start-up (workers, first
  batches not hidden behind the model load) is recorded apart;
- naive: one image at a time, PIL crops, float32, a batch of one image's crops, one file
  per image (benchmarks/naive.py);
- limit: the same encoder stage on ready-made tensors at our batch size and precision, no
  I/O, in every mode the device offers (``tower_limits.py``: eager, a CUDA graph, compiled,
  compiled with CUDA graphs, channels_last ResNets on the CPU), each with its FLOP rate and
  share of the device's fp16 peak: the fastest is the limit, and ours runs the fastest mode
  the pipeline has.

``--decode pil,gpu`` adds a row per tiling: ours with ``--decode gpu`` (plain JPEGs decoded
on the device with nvJPEG) on the same images, and its ratio to ours (a GPU only).

``--tilings dense`` measures ours with ``--local dense`` (one pass per image, every patch
scored) and, where the same run also measures ``3``, records dense over snippet 3 for the
same backbone (ViT models only).
"""

from __future__ import annotations

import math
import os
import shutil

import click
import torch

from cdul.data import load_dataset
from cdul.extractor import pipeline
from cdul.extractor.clip_model import load_clip, model_config
from cdul.extractor.config import ExtractConfig, RunOptions, WorkerConfig
from cdul.extractor.dense import DenseTower, dense_grid
from cdul.extractor.job import extract
from cdul.extractor.plan import default_batch_size, default_loader_workers, plan_extraction
from cdul.extractor.tiling import Tiling

from . import naive
from .bench_data import jpeg_dataset, work_dir
from .common import record
from .tower_limits import available_modes, tower_limits

MOST_IMAGES = 16384


def parse_tiling(spec: str) -> Tiling:
    return Tiling.pixel(int(spec[2:])) if spec.startswith("px") else Tiling.grid(int(spec))


def run_ours(
    root, model, tiling, device, batch_size, workers, views="auto", compile_mode="auto", local="tiles", decode="pil"
) -> dict:
    """cdul-extract's job on ``root`` (batch size 0 and workers -1: the command's defaults)."""
    data = load_dataset("voc2012", root, "train")
    out = os.path.join(work_dir(), "ours.zarr")
    cfg = WorkerConfig(
        store=out,
        root=data.root,
        config=ExtractConfig(model=model, pretrained="none", tiling=tiling, local=local, decode=decode),
        run=RunOptions(
            batch_size=batch_size,
            loader_workers=workers,
            views=views,
            compile=compile_mode,
            reuse_loaded=True,  # the warm-up's model (and compiled tower) serves the timed run
        ),
    )
    plan = plan_extraction(cfg, [device], chunk_len=256, overwrite=True)
    try:
        # warm-up on a few images first: CUDA loads kernels lazily (and compiles), and the first
        # batches of a process would otherwise be timed with them
        extract(plan, data.head(max(16, 2 * plan.worker.run.loader_workers)))
        counts = extract(plan, data).counts
    finally:
        pipeline._LOADED.clear()
    return {
        "images": counts["images"],
        "tiles": counts["tiles"],
        "seconds": counts["work_seconds"],
        "stages": counts["stage_seconds"],
        "load_seconds": counts["load_seconds"],
        "recompiles": counts.get("tower_recompiles", 0),  # a compiled tower: graphs compiled after start-up
    }


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


def run_dense(bundle, model, params: dict, workers: int, seconds: float, modes: list, tiles_ips: float | None):
    """Ours with --local dense against the dense tower alone (its limit, best of ``modes``),
    on at least ``seconds`` of work at that limit; with snippet 3's img/s of the same run,
    their ratio."""
    try:
        dense_grid(model_config(model), 1 << 12)
    except ValueError as exc:
        click.echo(f"{model:10s} dense skipped: {exc}")
        return 0.0
    device, batch_size = params["device"], params["batch_size"]
    tower = DenseTower(bundle.visual)
    modes = [m for m in modes if m != "channels-last"]
    limits, best, runnable = tower_limits(bundle, {**params, "tiling": "dense"}, batch_size * 24, 24, modes, tower)
    n = min(MOST_IMAGES, max(params["images"], math.ceil(seconds * limits[best])))
    ours = run_ours(
        jpeg_dataset(n), model, Tiling.grid(1), device, batch_size, workers, params["views"], runnable, "dense"
    )
    ips = ours["images"] / ours["seconds"]
    params = {**params, "images": ours["images"], "compile": runnable}
    record("extract", "dense", params, {"images_per_s": (ips, "img/s")})
    record("extract", "dense-limit", params, {"images_per_s": (limits[best], "img/s")})
    record("extract", "ratio", params, {"ours_over_limit": (ips / limits[best], "x")})
    line = f"{model:10s} dense ours {ips:8.2f} img/s  limit {limits[best]:8.2f} ({best})"
    line += f"  ours/limit {ips / limits[best]:5.2f}"
    if tiles_ips:
        record("extract", "ratio", {**params, "tiling": "dense/3"}, {"dense_over_snippet3": (ips / tiles_ips, "x")})
        line += f"  dense/snippet-3 {ips / tiles_ips:5.2f}x"
    click.echo(line + f"  ({n} images, {ours['seconds']:.1f} s)")
    return ips


@click.command()
@click.option("--quick", is_flag=True, help="CPU-sized: RN50, snippet 1 and 3, a few images.")
@click.option(
    "--models", default=None, help="Comma list of open_clip models.  [default: RN50,ViT-B-32,ViT-B-16,RN50x64]"
)
@click.option(
    "--tilings",
    default=None,
    help="Comma list: 1, 3, 8 (grids), px64 (64-pixel tiles), dense (--local dense; after 3 for their ratio).",
)
@click.option("--images", type=int, default=None, help="Images per run (ours).")
@click.option("--naive-images", type=int, default=None, help="Images for the naive baseline (it is slow).")
@click.option("--device", default="auto")
@click.option("--batch-size", type=int, default=None)
@click.option("--workers", type=int, default=None, help="Decoding processes for ours.")
@click.option("--views", default="auto", help="Ours: auto, kernel or exact view path.")
@click.option(
    "--modes",
    "tower_modes",
    default=None,
    help="Comma list of the tower's modes for the limit (none, cuda-graph, default, "
    "reduce-overhead, channels-last, cudnn-benchmark, half-weights); ours uses the fastest the "
    "pipeline has.  [default: every mode the device offers]",
)
@click.option(
    "--seconds",
    type=float,
    default=None,
    help="Ours gets at least this many seconds of encoder work at the limit (more images than "
    "--images where needed, at most 16384).  [default: 4 on a GPU, 0 on the CPU]",
)
@click.option(
    "--decode",
    default="pil",
    help="Comma list: pil (ours as cdul-extract runs by default), gpu (one more row: ours with --decode gpu).",
)
def main(
    quick, models, tilings, images, naive_images, device, batch_size, workers, views, tower_modes, seconds, decode
):
    cuda = torch.cuda.is_available()
    device = ("cuda:0" if cuda else "cpu") if device == "auto" else device
    on_gpu = device.startswith("cuda")
    bench = {
        "tilings": (tilings or ("1,3" if quick else "1,3,8,px64")).split(","),
        "images": images or (48 if quick else 512),
        "naive_images": naive_images or (4 if quick else 64),
        "device": device,
        "batch_size": batch_size or default_batch_size(on_gpu),
        "workers": default_loader_workers([device]) if workers is None else workers,
        "views": views,
        "seconds": (4.0 if on_gpu else 0.0) if seconds is None else seconds,
        "decode_gpu": "gpu" in decode.split(","),
    }
    rows = []
    for model in (models or ("RN50" if quick else "RN50,ViT-B-32,ViT-B-16,RN50x64")).split(","):
        modes = tower_modes.split(",") if tower_modes else available_modes(on_gpu, model)
        modes = [m for m in modes if m != "cudnn-benchmark" or model.startswith("RN")]  # convolutions only
        torch._dynamo.reset()  # each model compiles afresh, far from the recompile limit
        rows += bench_model(model, modes, bench)
    return rows


def bench_model(model: str, modes: list[str], bench: dict) -> list[tuple]:
    """Every tiling of ``bench`` on one model: ours, the naive baseline and the tower's limit."""
    rows: list[tuple] = []
    snippet3, bundle = None, None
    tilings, device = bench["tilings"], bench["device"]
    for spec in tilings:
        params = {k: bench[k] for k in ("images", "batch_size", "device", "views")}
        params = {"model": model, "tiling": spec, **params}
        bundle = bundle or load_clip(model, "none", ["x"], device=torch.device(device))
        if spec == "dense":
            run_dense(bundle, model, params, bench["workers"], bench["seconds"], modes, snippet3)
            continue
        last = spec == tilings[-1] or (tilings[-1] == "dense" and spec == tilings[-2])
        rows.append(bench_tiling(bundle, model, spec, params, modes, bench))
        if last:
            bundle = None  # the model's last use here: its memory goes back before the next model
        snippet3 = rows[-1][2] if spec == "3" else snippet3
    return rows


def bench_tiling(bundle, model: str, spec: str, params: dict, modes: list[str], bench: dict) -> tuple:
    """One tiling: ours on at least ``bench["seconds"]`` of encoder work at the limit, the
    naive baseline, their records and a printed line; the row of the results table."""
    device, images = bench["device"], bench["images"]
    tiling = parse_tiling(spec)
    views_per_image = 1 + (tiling.size**2 if tiling.mode == "grid" and not tiling.whole_image else 0)
    limits, best, runnable = tower_limits(
        bundle, params, views_per_image * images, 24 if "cuda" in device else 4, modes
    )
    # enough images for `seconds` of encoder work at the limit: a throughput is measured
    # where the start-up (workers, first batches) weighs what it does on a real dataset
    n = min(MOST_IMAGES, max(images, math.ceil(bench["seconds"] * limits[best] / views_per_image)))
    params["images"] = n
    ours = run_ours(
        jpeg_dataset(n), model, tiling, device, bench["batch_size"], bench["workers"], bench["views"], runnable
    )
    views_measured = 1 + ours["tiles"] / ours["images"] if not tiling.whole_image else 1
    nv = run_naive(jpeg_dataset(images), model, tiling, device, bench["naive_images"])
    ips = {
        "ours": ours["images"] / ours["seconds"],
        "naive": nv["images"] / nv["seconds"],
        "limit": limits[best] / views_measured,
    }
    record_tiling(params, ours, ips, limits, best, runnable, views_measured)
    row = (model, spec, ips["ours"], ips["naive"], ips["limit"], ips["ours"] / ips["naive"], ips["ours"] / ips["limit"])
    click.echo(
        f"{model:10s} {spec:5s} ours {ips['ours']:8.2f} img/s  naive {ips['naive']:8.2f}  "
        f"limit {ips['limit']:8.2f} ({best})  ours/naive {row[5]:5.2f}  "
        f"ours/limit {row[6]:5.2f}  ({n} images, {ours['seconds']:.1f} s, {ours['recompiles']} recompiles)"
    )
    work = ours["seconds"]
    click.echo(
        "           host stage shares: " + ", ".join(f"{k} {100 * v / work:.1f}%" for k, v in ours["stages"].items())
    )
    if bench["decode_gpu"]:
        run_decode_gpu(jpeg_dataset(n), model, tiling, params, bench, runnable, ips["ours"])
    return row


def run_decode_gpu(root, model, tiling, params: dict, bench: dict, compile_mode: str, pil_ips: float) -> None:
    """Ours with ``--decode gpu`` on ``root`` (the images ours just ran on), beside ours."""
    if not bench["device"].startswith("cuda"):
        click.echo(f"{model:10s} decode gpu skipped: needs a CUDA device")
        return
    args = (bench["device"], bench["batch_size"], bench["workers"], bench["views"], compile_mode)
    ours = run_ours(root, model, tiling, *args, decode="gpu")
    ips = ours["images"] / ours["seconds"]
    params = {**params, "compile": compile_mode, "decode": "gpu"}
    record("extract", "ours-decode-gpu", params, {"images_per_s": (ips, "img/s")})
    record("extract", "ratio", params, {"decode_gpu_over_pil": (ips / pil_ips, "x")})
    click.echo(f"{model:10s} {params['tiling']:5s} ours --decode gpu {ips:8.2f} img/s  over pil {ips / pil_ips:5.2f}x")


def record_tiling(params: dict, ours: dict, ips: dict, limits: dict, best: str, runnable: str, views: float) -> None:
    tiles_per_image = ours["tiles"] / ours["images"]
    for variant, v in ips.items():
        record(
            "extract",
            variant,
            {**params, "compile": runnable, "limit_mode": best},
            {"images_per_s": (v, "img/s"), "tiles_per_s": (v * tiles_per_image, "tiles/s")},
        )
    if len(limits) > 1:
        record("extract", "limit-eager", params, {"images_per_s": (limits["none"] / views, "img/s")})
    record(
        "extract",
        "ratio",
        {**params, "compile": runnable, "limit_mode": best},
        {
            "ours_over_naive": (ips["ours"] / ips["naive"], "x"),
            "ours_over_limit": (ips["ours"] / ips["limit"], "x"),
        },
    )
    work = ours["seconds"]
    record("extract", "stages", params, {f"{k}_share": (v / work, "") for k, v in ours["stages"].items()})
    record("extract", "startup", params, {"seconds": (ours["load_seconds"], "s")})
    if runnable not in ("none", "cuda-graph"):
        record("extract", "recompiles", {**params, "compile": runnable}, {"count": (ours["recompiles"], "")})


if __name__ == "__main__":
    main()
