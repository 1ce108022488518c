"""The extraction's limit: the image tower alone, in every mode the device offers.

The encoder stage (``extractor.encoder.Encoder``, at the pipeline's batch size and
precision) on one ready batch, called back to back, no I/O. Modes:

- ``none``: eager (on CUDA channels_last, as ``modes._tower`` runs every tower there);
- ``cuda-graph`` (CUDA): the eager tower replayed from one CUDA graph;
- ``default``: ``torch.compile``; ``reduce-overhead`` (CUDA): compiled and replayed from
  CUDA graphs;
- ``channels-last`` (ResNets on the CPU): eager with channels_last weights and input (on CUDA
  that is ``none``); the pipeline has no such mode on the CPU, so it only bounds what one
  could gain.
- ``cudnn-benchmark`` (ResNets on CUDA): ``cuda-graph`` with ``torch.backends.cudnn.benchmark``
  on while the graph is made, so cuDNN times its convolution algorithms for the batch's one
  shape instead of taking its heuristic's. The pipeline leaves it off (the timed choice can
  differ from run to run, and with it the last bits of a resumed store's chunks); this row
  says what it would gain.
- ``half-weights`` (CUDA): ``cuda-graph`` on a copy of the tower whose weights are in the
  run's half precision, with autocast off inside it (CLIP's own code runs its towers so).
  Under autocast, which cdul uses, every layer norm and softmax runs in float32 and the
  activations around them are cast back and forth; here they stay in half precision. The
  numbers move (a few 1e-3 on unit embeddings), so the pipeline does not run it; the row
  says what it would gain, and ``half_max_diff`` how far its embeddings are from autocast's.

The fastest is the limit; ours runs the fastest mode the pipeline has. Each mode's row also
gives the tower's FLOP rate and its share of the device's dense fp16 peak (``devices.py``).
"""

from __future__ import annotations

import copy
import math

import torch

from cdul.extractor import modes as tower_modes
from cdul.extractor.encoder import Encoder
from cdul.extractor.options import COMPILE_MODES

from .common import device_name, record, timeit
from .devices import share_of_peak, tower_flops


class HalfTower(torch.nn.Module):
    """A tower whose weights are in half precision, run without autocast on inputs of its dtype."""

    def __init__(self, visual: torch.nn.Module):
        super().__init__()
        self.visual = visual
        self.dtype = next(visual.parameters()).dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return self.visual(x.to(self.dtype))


def available_modes(on_gpu: bool, model: str) -> list[str]:
    """Every mode of the tower the device offers, eager first."""
    if on_gpu:
        resnet = ["cudnn-benchmark"] if model.startswith("RN") else []
        return ["none", "cuda-graph", "default", "reduce-overhead", "half-weights", *resnet]
    return ["none", "default"] + (["channels-last"] if model.startswith("RN") else [])


def run_limit(bundle, device, batch_size, crops: int, max_batches: int, mode: str = "none", visual=None) -> dict:
    """The encoder stage alone on one ready batch, called back to back: as many calls as
    ``crops`` need, at most ``max_batches`` and about a second's worth per timing."""
    if mode != "cudnn-benchmark":
        return _run_limit(bundle, device, batch_size, crops, max_batches, mode, visual)
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        return _run_limit(bundle, device, batch_size, crops, max_batches, "cuda-graph", visual)
    finally:
        torch.backends.cudnn.benchmark = before


def _run_limit(bundle, device, batch_size, crops: int, max_batches: int, mode: str, visual) -> dict:
    dev = torch.device(device)
    precision = tower_modes.resolve_precision("auto", dev)
    visual = visual or bundle.visual
    fmt = torch.channels_last if dev.type == "cuda" or mode == "channels-last" else torch.contiguous_format
    if mode == "channels-last":
        tower = copy.deepcopy(visual).to(memory_format=torch.channels_last)  # the model itself stays as it is
        mode_run = "none"
    elif mode == "half-weights":
        dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision, torch.float32)
        tower = HalfTower(tower_modes._tower(copy.deepcopy(visual).to(dtype), dev, "none"))
        mode_run = "cuda-graph" if dev.type == "cuda" else "none"
    else:
        tower, mode_run = tower_modes._tower(visual, dev, mode), mode  # channels_last on CUDA, as ours
    enc = Encoder(
        tower,
        batch_size,
        dev,
        precision,
        mode_run != "none",
        graph=mode_run == "cuda-graph",
        static_out=mode_run in tower_modes.STATIC_OUT,
    )
    enc.capture(bundle.input_size)
    x = torch.randn(batch_size, 3, bundle.input_size, bundle.input_size, device=dev).to(enc.in_dtype)
    x = x.contiguous(memory_format=fmt)
    sync = torch.cuda.synchronize if dev.type == "cuda" else None
    one = timeit(lambda: enc(x, batch_size), warmup=1 if mode_run == "none" else 2, repeat=1, sync=sync)
    n = max(1, min(max_batches, math.ceil(crops / batch_size), math.ceil(1.0 / max(one, 1e-6))))

    def go():
        for _ in range(n):
            enc(x, batch_size)

    seconds = timeit(go, warmup=0, repeat=3, sync=sync)
    out = {"crops_per_s": n * batch_size / seconds}
    if mode == "half-weights":  # how far the half tower's unit embeddings are from autocast's
        ref = Encoder(tower_modes._tower(visual, dev, "none"), batch_size, dev, precision)
        a = torch.nn.functional.normalize(enc(x, batch_size).float(), dim=-1)
        b = torch.nn.functional.normalize(ref(x, batch_size).float(), dim=-1)
        out["half_max_diff"] = float((a - b).abs().max())
    return out


def tower_limits(bundle, params: dict, crops: int, max_batches: int, modes: list[str], visual=None, size=None):
    """Every mode's views/s, recorded with its FLOP rate and share of the peak; returns
    (limits by mode, the fastest mode, the fastest mode the pipeline runs)."""
    device, batch_size = params["device"], params["batch_size"]
    flops = tower_flops(visual or bundle.visual, size or bundle.input_size, device)
    name = device_name()
    limits = {}
    for mode in modes:
        result = run_limit(bundle, device, batch_size, crops, max_batches, mode, visual)
        rate = limits[mode] = result["crops_per_s"]
        metrics = {"views_per_s": (rate, "views/s"), "tflops": (rate * flops / 1e12, "TFLOP/s")}
        if "half_max_diff" in result:
            metrics["half_max_diff"] = (result["half_max_diff"], "")
        share = share_of_peak(rate, flops, name)
        if share is not None:
            metrics["peak_share"] = (share, "")
        record("extract", "tower", {**params, "mode": mode, "gflops_per_view": round(flops / 1e9, 3)}, metrics)
        shown = f"{100 * share:5.1f}% of peak" if share is not None else "no peak known"
        print(f"  tower {mode:15s} {rate:10.1f} views/s  {rate * flops / 1e12:8.3f} TFLOP/s  {shown}")
    best = max(limits, key=limits.__getitem__)
    runnable = max((m for m in limits if m in COMPILE_MODES), key=limits.__getitem__)
    record(
        "extract",
        "tower-best",
        {**params, "mode": best, "pipeline_mode": runnable},
        {"views_per_s": (limits[best], "views/s")},
    )
    return limits, best, runnable
