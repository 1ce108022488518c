"""JPEG decoding: what the loader's CPU workers can deliver, and what decoding on the GPU
(nvjpeg through ``torchvision.io.decode_jpeg``) would, with how far its pixels are from
PIL's (the reference every store is made with).

    python -m cdul.benchmarks.decode_bench [--images 256] [--batch 64]

- cpu: cdul's own decoding (PIL, libjpeg-turbo; EXIF, modes, limits) on one core, img/s,
  and that times the decoding workers a GPU run starts (cdul-extract's: CPUs - 1, at most 32);
- torchvision-cpu: ``decode_jpeg`` on one core (libjpeg-turbo without PIL);
- gpu: ``decode_jpeg(list, device="cuda")`` on batches of ``--batch`` files, img/s, and the
  share of its 8-bit values that differ from PIL's and the largest difference.
"""

from __future__ import annotations

import glob
import os
import time
from pathlib import Path

import click
import numpy as np
import torch

from cdul.data.decode import DEFAULT_MAX_PIXELS, decode_image

from .bench_data import jpeg_dataset
from .common import decoding_workers, record


def _rate(fn, n: int, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return n / best


@click.command()
@click.option("--images", type=int, default=256, help="VOC-sized JPEGs to decode.")
@click.option("--batch", type=int, default=64, help="Files per GPU decode call.")
def main(images, batch):
    import torchvision.io as tio

    root = jpeg_dataset(images)
    files = sorted(glob.glob(os.path.join(root, "**", "*.jpg"), recursive=True))[:images]
    blobs = [Path(f).read_bytes() for f in files]
    torch.set_num_threads(1)
    params = {"images": len(blobs), "batch": batch}
    workers = decoding_workers()
    ref = [decode_image(b, exif=True, max_pixels=DEFAULT_MAX_PIXELS) for b in blobs]
    cpu = _rate(lambda: [decode_image(b, exif=True, max_pixels=DEFAULT_MAX_PIXELS) for b in blobs], len(blobs))
    raw = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in blobs]
    tv = _rate(lambda: [tio.decode_jpeg(r) for r in raw], len(raw))
    click.echo(f"cpu (cdul, one core): {cpu:.0f} img/s; x {workers} workers: {cpu * workers:.0f} img/s")
    click.echo(f"torchvision-cpu (one core): {tv:.0f} img/s")
    record("decode", "cpu", params, {"images_per_s": (cpu, "img/s"), "workers_images_per_s": (cpu * workers, "img/s")})
    record("decode", "torchvision-cpu", params, {"images_per_s": (tv, "img/s")})
    if not torch.cuda.is_available():
        click.echo("gpu: no CUDA device")
        return
    parts = [raw[i : i + batch] for i in range(0, len(raw), batch)]

    def gpu():
        for p in parts:
            tio.decode_jpeg(p, device="cuda")
        torch.cuda.synchronize()

    gpu()  # nvjpeg's handles and buffers
    rate = _rate(gpu, len(raw))
    out = [x for p in parts for x in tio.decode_jpeg(p, device="cuda")]
    diff = [np.abs(o.permute(1, 2, 0).cpu().numpy().astype(np.int16) - r.astype(np.int16)) for o, r in zip(out, ref)]
    differing = float(np.mean([(d > 0).mean() for d in diff]))
    worst = int(max(d.max() for d in diff))
    click.echo(
        f"gpu (nvjpeg, batches of {batch}): {rate:.0f} img/s; "
        f"{100 * differing:.2f}% of values differ from PIL's, by up to {worst}"
    )
    record(
        "decode",
        "gpu",
        params,
        {"images_per_s": (rate, "img/s"), "differing_share": (differing, ""), "max_abs_diff": (worst, "levels")},
    )


if __name__ == "__main__":
    main()
