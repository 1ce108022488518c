"""Scoring kernel benchmark: fused Triton vs the eager torch reference vs torch.compile of it.

    python -m cdul.benchmarks.kernel_bench [--quick] [--peak-gbs 3350] [--keep-tiles]

Cases sweep C (classes), tiles per image and D (embedding width) with fp16 inputs; B is
chosen so each case reads a few MB of embeddings. For every variant it records the median
time per call, the achieved GB/s over the bytes that must move (inputs read once, outputs
written once), that as a fraction of the GPU's peak memory bandwidth, and TFLOP/s over the
one M x C x D product the result needs (the two-pass Triton path computes it twice). Large
C is GEMM-bound and small C is bandwidth-bound, so both columns matter. Speedups are
ratios within one run. The Triton variant is timed through the op's dispatcher
(``score_segments(..., backend="triton")``) with the offsets already on the GPU, as the
extractor calls it.

Without CUDA only the torch reference runs (small shapes with ``--quick``); the Triton and
compile variants are recorded as needing a GPU.
"""

from __future__ import annotations

import argparse
import math
import sys
from functools import partial

import torch

from cdul.kernels.scoring import score_segments, score_segments_torch

from .common import device_name, record, timeit

SUBJECT = "kernel"
LOGIT_SCALE = 100.0
FULL = dict(classes=(20, 80, 1000, 4096), tiles=(9, 64, 1024), widths=(512, 1024))
QUICK = dict(classes=(20, 1000), tiles=(9, 1024), widths=(512,))
QUICK_CPU = dict(classes=(20, 80, 1000, 4096), tiles=(9, 64, 1024), widths=(512,))


def peak_gbs(name: str) -> float | None:
    """Peak HBM bandwidth (GB/s) from the device name; None when unknown."""
    n = name.upper()
    if "H200" in n:
        return 4800.0
    if "H100" in n:
        return 2000.0 if "PCIE" in n else 3900.0 if "NVL" in n else 3350.0
    if "A100" in n:
        return (1935.0 if "PCIE" in n else 2039.0) if "80GB" in n else 1555.0
    return None


def make_case(c: int, tiles: int, d: int, target_bytes: int, device, seed: int = 0):
    """B images of `tiles` tiles each, with about `target_bytes` of fp16 embeddings."""
    b = max(1, round(target_bytes / (2 * d * (tiles + 1))))
    gen = torch.Generator().manual_seed(seed)
    emb = torch.randn(b * (tiles + 1), d, generator=gen).to(device, torch.float16)
    text = torch.randn(c, d, generator=gen).to(device, torch.float16)
    offsets = torch.arange(0, b * (tiles + 1) + 1, tiles + 1, device=device)
    return emb, offsets, text


def moved_bytes(emb, offsets, text, keep_tiles: bool) -> int:
    m, b, c = emb.shape[0], offsets.numel() - 1, text.shape[0]
    read = emb.numel() * emb.element_size() + text.numel() * text.element_size() + offsets.numel() * 8
    return read + 3 * b * c * 4 + ((m - b) * c * 2 if keep_tiles else 0)


def variants(cuda: bool):
    out = {"torch": score_segments_torch}
    if cuda:
        # one dynamic-shape compile serves every case; keep the limit above the case count
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
        out["compile"] = torch.compile(score_segments_torch, dynamic=True)
        out["triton"] = partial(score_segments, backend="triton")
    return out


def run(args) -> tuple[list[dict], float | None]:
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    grid = QUICK if args.quick and cuda else QUICK_CPU if args.quick else FULL
    target = args.mbytes * 2**20 if args.mbytes else (8 * 2**20 if cuda else 2**20)
    peak = args.peak_gbs or (peak_gbs(device_name()) if cuda else None)
    sync = torch.cuda.synchronize if cuda else None
    inner = 5 if cuda else 1  # calls per timed sample: amortises the sync on short kernels
    fns = variants(cuda)
    if not cuda:
        msg = "needs a CUDA GPU"
        print(f"no CUDA device: timing the torch reference only (triton, compile: {msg})")
        for v in ("triton", "compile"):
            record(SUBJECT, v, {}, {"skipped": (1, msg)}, path=args.csv)
    rows = []
    for c in grid["classes"]:
        for tiles in grid["tiles"]:
            for d in grid["widths"]:
                rows += bench_case(c, tiles, d, target, device, fns, peak, sync, inner, args)
    return rows, peak


def bench_case(c, tiles, d, target, device, fns, peak, sync, inner, args) -> list[dict]:
    emb, offsets, text = make_case(c, tiles, d, target, device)
    b, m = offsets.numel() - 1, emb.shape[0]
    params = dict(C=c, tiles=tiles, D=d, B=b, M=m, dtype="float16", keep_tiles=args.keep_tiles)
    nbytes = moved_bytes(emb, offsets, text, args.keep_tiles)
    flops = 2 * m * c * d
    want = score_segments_torch(emb, offsets, text, LOGIT_SCALE, keep_tiles=args.keep_tiles)
    rows, base = [], None
    for name, fn in fns.items():

        def call(fn=fn):
            for _ in range(inner):
                fn(emb, offsets, text, LOGIT_SCALE, keep_tiles=args.keep_tiles)

        try:
            got = fn(emb, offsets, text, LOGIT_SCALE, keep_tiles=args.keep_tiles)
            sec = timeit(call, warmup=2, repeat=args.repeat, sync=sync) / inner
        except Exception as e:  # a variant that cannot run here is reported, the others still run
            print(f"  {name} failed on {params}: {type(e).__name__}: {e}", file=sys.stderr)
            continue
        err = max(
            float((g - w).abs().max())
            for g, w in ((got.global_, want.global_), (got.alpha, want.alpha), (got.beta, want.beta))
        )
        base = sec if name == "torch" else base
        metrics = {
            "time": (sec * 1e3, "ms"),
            "bandwidth": (nbytes / sec / 1e9, "GB/s"),
            "compute": (flops / sec / 1e12, "TFLOP/s"),
            "max_abs_err": (err, ""),
        }
        if peak:
            metrics["peak_fraction"] = (nbytes / sec / 1e9 / peak, "")
        if base:
            metrics["speedup_vs_torch"] = (base / sec, "x")
        record(SUBJECT, name, params, metrics, path=args.csv)
        rows.append(dict(params, variant=name, **{k: v for k, (v, _) in metrics.items()}))
    return rows


def print_table(rows: list[dict], peak: float | None) -> None:
    head = ["C", "tiles", "D", "B", "variant", "ms", "GB/s", "%peak", "TFLOP/s", "x torch", "max|err|"]
    print(" ".join(f"{h:>9}" for h in head))
    for r in rows:
        pct = f"{100 * r['peak_fraction']:.1f}" if "peak_fraction" in r else "-"
        cells = [
            r["C"],
            r["tiles"],
            r["D"],
            r["B"],
            r["variant"],
            f"{r['time']:.3f}",
            f"{r['bandwidth']:.1f}",
            pct,
            f"{r['compute']:.2f}",
            f"{r.get('speedup_vs_torch', float('nan')):.2f}",
            f"{r['max_abs_err']:.1e}",
        ]
        print(" ".join(f"{x!s:>9}" for x in cells))
    for v in sorted({r["variant"] for r in rows} - {"torch"}):
        ups = [r["speedup_vs_torch"] for r in rows if r["variant"] == v and "speedup_vs_torch" in r]
        if ups:
            gmean = math.exp(sum(math.log(u) for u in ups) / len(ups))
            print(
                f"{v}: speedup over eager torch, geometric mean {gmean:.2f}x, "
                f"min {min(ups):.2f}x, max {max(ups):.2f}x over {len(ups)} cases"
            )
    print(f"peak bandwidth: {f'{peak:.0f} GB/s' if peak else 'unknown (pass --peak-gbs)'}; device: {device_name()}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer cases (small ones on CPU)")
    p.add_argument("--peak-gbs", type=float, default=None, help="peak memory bandwidth, GB/s")
    p.add_argument(
        "--mbytes", type=float, default=None, help="fp16 embedding MiB per case (default 8 on GPU, 1 on CPU)"
    )
    p.add_argument("--repeat", type=int, default=None, help="timed samples per variant")
    p.add_argument("--keep-tiles", action="store_true", help="also write fp16 tile probabilities")
    p.add_argument("--csv", default=None, help="results CSV (default benchmarks/results/results.csv)")
    args = p.parse_args(argv)
    args.repeat = args.repeat or (20 if torch.cuda.is_available() else 3)
    print_table(*run(args))


if __name__ == "__main__":
    main()
