"""Resample benchmark: the view kernel vs its torch reference vs the usual ways to resize.

    python -m cdul.benchmarks.resample_bench [--quick] [--size 224] [--repeat 5]
    TRITON_INTERPRET=1 python -m cdul.benchmarks.resample_bench --quick   # the kernel on the CPU

Every variant makes the same views of the same images: the global view and the tiles of a
grid, each resized the way CLIP's eval preprocess does it (short side to R with an
antialiased bicubic filter, centre crop R x R), as 8-bit levels. Variants:

- ``triton``: ``cdul.kernels.resample`` with the Triton kernel (two launches per batch); on
  the CPU only under ``TRITON_INTERPRET=1``, where it runs in Python and its time says
  nothing about a GPU
- ``torch``: the op's reference, the same tables read one view at a time with plain torch
- ``matrix``: the extractor's matrix path (``ViewMaker``: float64 on the CPU, float32 on GPUs)
- ``torchvision``: ``torchvision.transforms.v2.functional.resize`` (antialias) and
  ``center_crop`` per view, on uint8 tensors of the variant's device
- ``pil``: ``PIL.Image.resize(BICUBIC)`` and a crop per view, on the CPU: the levels the
  others are compared with (``max_level_err``, in grey levels)

The kernel and the reference read a batch packed by the loader (``extractor.packing.pack``,
done in worker processes during extraction), so packing is not timed; the others start from
the decoded images. Time is the median per batch; ``views_per_s`` counts views made.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import torch

from cdul.extractor.packing import ViewSpec, pack
from cdul.extractor.tiling import Tiling
from cdul.extractor.views import ViewMaker
from cdul.kernels.resample import resample_views, resample_views_torch
from cdul.kernels.resample.tables import output_geometry

from .common import device_name, record, timeit

SUBJECT = "resample"
FULL = dict(sizes=((480, 640), (375, 500), (1080, 1920)), images=16, grid=3, size=224)
QUICK = dict(sizes=((45, 60), (70, 50)), images=2, grid=2, size=32)
LEVELS = (0.0, 0.0, 0.0), (1 / 255, 1 / 255, 1 / 255)  # mean, std that leave the views in grey levels


def make_images(sizes, n: int, seed: int = 0) -> list[np.ndarray]:
    """n random HWC uint8 images, cycling through ``sizes``."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (*sizes[i % len(sizes)], 3), dtype=np.uint8) for i in range(n)]


def boxes(images, tiling: Tiling) -> list[tuple[int, int, int, int, int]]:
    """(image, top, left, height, width) of every view, in the packed order."""
    out = []
    for i, a in enumerate(images):
        h, w = a.shape[:2]
        out += [(i, *b) for b in [(0, 0, h, w), *tiling.boxes(h, w)]]
    return out


def pil_views(images, views, size: int) -> torch.Tensor:
    from PIL import Image

    out = []
    for i, top, left, h, w in views:
        new_h, new_w, ctop, cleft = output_geometry(h, w, size)
        im = Image.fromarray(images[i][top : top + h, left : left + w]).resize((new_w, new_h), Image.BICUBIC)
        out.append(torch.from_numpy(np.array(im.crop((cleft, ctop, cleft + size, ctop + size)))).permute(2, 0, 1))
    return torch.stack(out).float()


def torchvision_views(tensors, views, size: int) -> torch.Tensor:
    from torchvision.transforms.v2 import functional as tvf

    out = []
    for i, top, left, h, w in views:
        box = tensors[i][:, top : top + h, left : left + w]
        new_h, new_w, _, _ = output_geometry(h, w, size)
        box = tvf.resize(box, [new_h, new_w], interpolation=tvf.InterpolationMode.BICUBIC, antialias=True)
        out.append(tvf.center_crop(box, [size, size]))
    return torch.stack(out).float()


def variants(device: torch.device, images, tiling: Tiling, size: int) -> dict:
    """name -> a function making every view of the batch, or a string saying why it cannot run."""
    spec = ViewSpec(size)
    batch = pack(0, range(len(images)), list(images), spec, tiling)
    data = batch.data.to(device)
    v = batch.n_view_rows
    scratch = torch.empty(max(batch.scratch_bytes, 1), dtype=torch.uint8, device=device)
    out = torch.empty(v, 3, size, size, device=device)
    mul, add = [1.0] * 3, [0.0] * 3
    maker = ViewMaker(size, *LEVELS, device=device)
    tensors = [torch.from_numpy(a).to(device).permute(2, 0, 1) for a in images]
    views = boxes(images, tiling)
    found: dict = {}
    if device.type == "cuda" or os.environ.get("TRITON_INTERPRET") == "1":
        found["triton"] = lambda: resample_views(
            data, batch.views_off, batch.taps_off, v, batch.max_rows, scratch, out, mul, add, backend="triton"
        )
    else:
        found["triton"] = "needs a CUDA GPU (or TRITON_INTERPRET=1 on the CPU)"
    found["torch"] = lambda: resample_views_torch(data, batch.views_off, batch.taps_off, v, size, mul, add)
    found["matrix"] = lambda: torch.cat([maker.make(torch.from_numpy(a), tiling)[0] for a in images])
    found["torchvision"] = lambda: torchvision_views(tensors, views, size)
    found["pil"] = lambda: pil_views(images, views, size)
    return found


def run(args) -> list[dict]:
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    grid = QUICK if args.quick else FULL
    size = args.size or grid["size"]
    images = make_images(grid["sizes"], grid["images"])
    tiling = Tiling.grid(grid["grid"])
    interpreted = not cuda and os.environ.get("TRITON_INTERPRET") == "1"
    n_views = len(boxes(images, tiling))
    params = dict(images=len(images), views=n_views, R=size, grid=grid["grid"], interpreted=interpreted)
    sync = torch.cuda.synchronize if cuda else None
    want = None
    rows = []
    for name, fn in variants(device, images, tiling, size).items():
        if isinstance(fn, str):
            print(f"  {name}: skipped, {fn}")
            record(SUBJECT, name, params, {"skipped": (1, fn)}, path=args.csv)
            continue
        got = fn().float().cpu()
        sec = timeit(fn, warmup=1, repeat=args.repeat, sync=sync)
        want = pil_views(images, boxes(images, tiling), size) if want is None else want
        err = float((got - want).abs().max())
        metrics = {"time": (sec * 1e3, "ms"), "views_per_s": (n_views / sec, "1/s"), "max_level_err": (err, "")}
        record(SUBJECT, name, params, metrics, path=args.csv)
        rows.append(dict(params, variant=name, **{k: val for k, (val, _) in metrics.items()}))
    return rows


def print_table(rows: list[dict]) -> None:
    base = {r["variant"]: r["time"] for r in rows}
    ref = base.get("torch")
    print(f"{'variant':>12} {'ms':>10} {'views/s':>10} {'x torch':>8} {'max|err|':>9}")
    for r in rows:
        ratio = f"{ref / r['time']:.2f}" if ref else "-"
        print(f"{r['variant']:>12} {r['time']:10.3f} {r['views_per_s']:10.1f} {ratio:>8} {r['max_level_err']:9.1f}")
    if rows and rows[0]["interpreted"]:
        print("triton ran in Triton's interpreter (Python on the CPU): not a speed figure for a GPU")
    print(f"{rows[0]['views'] if rows else 0} views of R={rows[0]['R'] if rows else '-'}; device: {device_name()}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny images and views (the CPU, the interpreter)")
    p.add_argument("--size", type=int, default=None, help="view side R (default 224, 32 with --quick)")
    p.add_argument("--repeat", type=int, default=None, help="timed samples per variant (default 5, 3 with --quick)")
    p.add_argument("--csv", default=None, help="results CSV (default benchmarks/results/results.csv)")
    args = p.parse_args(argv)
    args.repeat = args.repeat or (3 if args.quick else 5)
    rows = run(args)
    if not rows:
        sys.exit("no variant ran")
    print_table(rows)


if __name__ == "__main__":
    main()
