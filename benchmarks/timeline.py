"""Where the device's time goes while ours runs, and where it waits.

One timed extraction (after a warm-up) runs as in production, under torch.profiler; its
trace is read back and the device's work in the timed loop is summed by kind:

- ``encoder``: the image tower's kernels (inside its CUDA graph or not);
- ``views``: the view kernel's two launches; ``score``: the scorer's;
- ``copy in`` / ``copy out``: host-to-device and device-to-host copies;
- ``idle``: the loop's wall time with nothing running on the device, split by the host
  stage that was running at the time (``load`` means the device waited for a packed batch,
  ``score`` for the host to issue the scorer, and so on).

For each ``--settings`` entry the same run is also timed without the profiler (img/s).
``before`` is the pipeline as it was: the copy on the compute stream, two batches in
flight, decoding workers at their parent's priority, the host spinning while it waits for
scores; ``now`` is the current default.

    python -m cdul.benchmarks.timeline --models ViT-B-32,RN50 --images 2048 --settings now,before

On the CPU there is no device timeline; the host stages are still printed.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import defaultdict

import click
import torch
from torch.profiler import ProfilerActivity, profile

from cdul.data import load_dataset
from cdul.extractor import pipeline
from cdul.extractor.config import ExtractConfig, RunOptions, WorkerConfig
from cdul.extractor.job import extract
from cdul.extractor.plan import ExtractPlan, plan_extraction, with_run
from cdul.extractor.tiling import Tiling

from .bench_data import jpeg_dataset, work_dir
from .common import record

DEVICE_CATS = ("kernel", "gpu_memcpy", "gpu_memset")
KINDS = ("encoder", "views", "score", "copy in", "copy out", "copy on device")
VIEW_KERNELS = ("_rows_kernel", "_cols_kernel")
SCORE_KERNELS = ("segment_scores_kernel", "inv_norm_kernel", "row_stats_kernel")
SETTINGS = {  # name: the RunOptions fields it changes
    "now": {},
    "before": {"in_flight": 2, "worker_nice": 0, "copy_stream": False, "blocking_wait": False},
}


def kind_of(event: dict) -> str:
    """What one device event of the trace is (see the module docstring)."""
    name = event.get("name", "")
    if event.get("cat") == "gpu_memcpy" or "Memcpy" in name:
        if "HtoD" in name:
            return "copy in"
        if "DtoH" in name:
            return "copy out"
        return "copy on device"
    if any(k in name for k in VIEW_KERNELS):
        return "views"
    if any(k in name for k in SCORE_KERNELS):
        return "score"
    return "encoder"


def _merge(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[list[float]] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def summarize(events: list[dict], gap_us: float = 20.0) -> dict:
    """The timed loop's device work and idle time from a Chrome trace's events (times in
    microseconds, as the trace has them; results in ms). The loop is the span of the
    ``stage:*`` ranges; idle gaps shorter than ``gap_us`` (launch latency) count as busy."""
    stages = [
        (e["ts"], e["ts"] + e["dur"], e["name"][len("stage:") :])
        for e in events
        if e.get("ph") == "X" and e.get("cat") == "user_annotation" and e.get("name", "").startswith("stage:")
    ]
    if not stages:
        raise ValueError("the trace has no stage ranges: was the extraction run under the profiler?")
    t0, t1 = min(s[0] for s in stages), max(s[1] for s in stages)
    device = [
        e for e in events if e.get("ph") == "X" and e.get("cat") in DEVICE_CATS and t0 <= e["ts"] and e["ts"] < t1
    ]
    kinds = [kind_of(e) for e in device]
    by_kind: dict[str, float] = dict.fromkeys(KINDS, 0.0)
    for e, kind in zip(device, kinds):
        by_kind[kind] += e["dur"] / 1000
    busy = _merge([(e["ts"], min(e["ts"] + e["dur"], t1)) for e in device])
    compute = _merge([(e["ts"], e["ts"] + e["dur"]) for e, k in zip(device, kinds) if not k.startswith("copy")])
    copy_in = [(e["ts"], e["ts"] + e["dur"]) for e, k in zip(device, kinds) if k == "copy in"]
    idle_by_stage: dict[str, float] = defaultdict(float)
    gaps = []
    edges = [t0] + [x for span in busy for x in span] + [t1]
    for a, b in zip(edges[0::2], edges[1::2]):
        if b - a < gap_us:
            continue
        gaps.append((b - a) / 1000)
        _split_by_stage(a, b, stages, idle_by_stage)
    batches = sum(1 for s in stages if s[2] == "encode")
    return {
        "loop_ms": (t1 - t0) / 1000,
        "busy_ms": sum(b - a for a, b in busy) / 1000,
        "idle_ms": sum(gaps),
        "batches": batches,
        "device_ms": by_kind,
        "copy_in_hidden_ms": _overlap(copy_in, compute) / 1000,
        "idle_by_stage_ms": dict(idle_by_stage),
        "gaps": {
            "count": len(gaps),
            "over_1ms": sum(g > 1 for g in gaps),
            "over_10ms": sum(g > 10 for g in gaps),
            "largest_ms": sorted(gaps, reverse=True)[:5],
        },
    }


def _split_by_stage(a: float, b: float, stages, into: dict) -> None:
    """Add the gap [a, b) to the host stages running during it ('between' where none ran)."""
    covered = 0.0
    for s0, s1, name in stages:
        lo, hi = max(a, s0), min(b, s1)
        if hi > lo:
            into[name] += (hi - lo) / 1000
            covered += hi - lo
    if b - a > covered:
        into["between"] += (b - a - covered) / 1000


def _overlap(spans, merged) -> float:
    total = 0.0
    for a, b in spans:
        for c, d in merged:
            total += max(0.0, min(b, d) - max(a, c))
    return total


def format_summary(s: dict) -> list[str]:
    loop = s["loop_ms"]
    per = max(s["batches"], 1)
    lines = [
        f"  loop {loop:.1f} ms, {s['batches']} batches: device busy {100 * s['busy_ms'] / loop:.1f}%, "
        f"idle {100 * s['idle_ms'] / loop:.1f}%",
        f"  {'device work':16s} {'ms':>9s} {'% of loop':>9s} {'ms/batch':>9s}",
    ]
    for kind, ms in s["device_ms"].items():
        lines.append(f"  {kind:16s} {ms:9.1f} {100 * ms / loop:8.1f}% {ms / per:9.3f}")
    lines.append(f"  copy in hidden behind compute: {s['copy_in_hidden_ms']:.1f} ms")
    idle = ", ".join(
        f"{k} {v:.1f} ms" for k, v in sorted(s["idle_by_stage_ms"].items(), key=lambda kv: -kv[1]) if v >= 0.05
    )
    lines.append(f"  device idle while the host was in: {idle or 'nothing'}")
    g = s["gaps"]
    lines.append(
        f"  idle gaps: {g['count']} ({g['over_1ms']} over 1 ms, {g['over_10ms']} over 10 ms); largest "
        + ", ".join(f"{x:.1f}" for x in g["largest_ms"])
        + " ms"
    )
    return lines


def settings(plan: ExtractPlan, name: str) -> ExtractPlan:
    """The plan with the pipeline settings ``name`` (``SETTINGS``)."""
    if name not in SETTINGS:
        raise ValueError(f"unknown setting {name!r}; choose from {', '.join(SETTINGS)}")
    return with_run(plan, **SETTINGS[name])


@click.command()
@click.option("--models", default="ViT-B-32", help="Comma-separated open_clip model names.")
@click.option("--images", type=int, default=2048)
@click.option("--snippet", type=int, default=3)
@click.option("--local", type=click.Choice(["tiles", "dense"]), default="tiles", help="Local scores: tiles or dense.")
@click.option("--device", default="auto")
@click.option("--workers", type=int, default=None)
@click.option("--batch-size", type=int, default=None, help="Default: the command's (256 on CUDA, 8 on the CPU).")
@click.option(
    "--compile", "compile_mode", default="auto", help="The tower's --compile mode (auto: a CUDA graph on CUDA)."
)
@click.option("--settings", "names", default="now,before", help=f"Comma-separated, from: {', '.join(SETTINGS)}.")
@click.option("--trace-dir", default=None, help="Keep each run's Chrome trace here (otherwise deleted).")
def main(models, images, snippet, local, device, workers, batch_size, compile_mode, names, trace_dir):
    names = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in names if n not in SETTINGS]
    if unknown or not names:
        raise click.BadParameter(
            f"{', '.join(unknown) or 'none given'}; choose from {', '.join(SETTINGS)}", param_hint="--settings"
        )
    device = ("cuda:0" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    data = load_dataset("voc2012", jpeg_dataset(images), "train")
    for model in [m.strip() for m in models.split(",") if m.strip()]:
        run_model(model, data, images, snippet, local, device, workers, batch_size, compile_mode, names, trace_dir)


def run_model(model, data, images, snippet, local, device, workers, batch_size, compile_mode, names, trace_dir) -> None:
    """The runs of one model: a warm-up, then for each setting a plain and a profiled run."""
    cuda = device.startswith("cuda")
    out = os.path.join(work_dir(), "timeline.zarr")
    cfg = WorkerConfig(
        store=out,
        root=data.root,
        config=ExtractConfig(model=model, pretrained="none", tiling=Tiling.grid(snippet), local=local),
        run=RunOptions(
            batch_size=batch_size or 0,
            loader_workers=-1 if workers is None else workers,
            compile=compile_mode,
            reuse_loaded=True,  # one model load and graph capture for every run
        ),
    )
    plan = plan_extraction(cfg, [device], chunk_len=256, overwrite=True)
    workers = plan.worker.run.loader_workers
    params = {
        "model": model,
        "images": images,
        "snippet": snippet,
        "local": local,
        "device": device,
        "workers": workers,
    }
    try:
        extract(plan, data.head(max(32, 2 * workers)))
        for name in names:
            run = settings(plan, name)
            plain = extract(run, data).counts
            rate = plain["images"] / plain["work_seconds"]
            activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
            with profile(activities=activities) as prof:
                profiled = extract(run, data).counts
            click.echo(
                f"{model} {local} [{name}] {rate:.1f} img/s without the profiler, "
                f"{profiled['images'] / profiled['work_seconds']:.1f} with it ({plain['images']} images)"
            )
            record("timeline", name, params, {"images_per_s": (rate, "img/s")})
            if not cuda:
                click.echo("  no device timeline on the CPU")
                continue
            summary = summarize(_trace_events(prof, trace_dir, f"{model}-{local}-{name}"))
            for line in format_summary(summary):
                click.echo(line)
            if summary["device_ms"]["encoder"] < 0.1 * summary["loop_ms"]:
                click.echo("  (the tower's kernels are missing from the trace: rerun with --compile none to see them)")
            loop = summary["loop_ms"]
            metrics = {f"{k}_share": (v / loop, "") for k, v in summary["device_ms"].items()}
            metrics["idle_share"] = (summary["idle_ms"] / loop, "")
            metrics.update({f"idle_in_{k}_share": (v / loop, "") for k, v in summary["idle_by_stage_ms"].items()})
            record("timeline", name, params, metrics)
    finally:
        pipeline._LOADED.clear()


def _trace_events(prof, trace_dir: str | None, label: str) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(trace_dir or tmp, f"timeline-{label}.json")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        prof.export_chrome_trace(path)
        with open(path) as f:
            return json.load(f)["traceEvents"]


if __name__ == "__main__":
    main()
