"""What every benchmark script shares: the results CSV, the device name, the code version.

Each row is keyed by subject, variant, parameters, device and code version; the metric
columns hold numbers. Ratios between variants are only compared within one run (same
``run_id``), since absolute times drift on a shared machine.
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import os
import platform
import subprocess
import time
import uuid
from pathlib import Path


def _results_dir() -> Path:
    """benchmarks/results of the source checkout this runs from; from an installed package
    (no checkout around it) ./cdul-bench-results, never a folder inside the installation.
    CDUL_BENCH_RESULTS overrides both."""
    if os.environ.get("CDUL_BENCH_RESULTS"):
        return Path(os.environ["CDUL_BENCH_RESULTS"])
    here = Path(__file__).resolve().parent
    if (here.parent / "setup.py").is_file():
        return here / "results"
    return Path.cwd() / "cdul-bench-results"


RESULTS_DIR = _results_dir()
RESULTS_CSV = RESULTS_DIR / "results.csv"
FIELDS = ["run_id", "timestamp", "subject", "variant", "params", "device", "code_version", "metric", "value", "unit"]
RUN_ID = os.environ.get("CDUL_BENCH_RUN_ID") or uuid.uuid4().hex[:8]


def device_name() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except ImportError:
        pass
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"CPU {cpu} x{os.cpu_count()}"


def code_version() -> str:
    import cdul

    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parent,
            timeout=5,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parent,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        rev, dirty = "", ""
    return f"{cdul.__version__}+{rev}{'.dirty' if dirty else ''}" if rev else cdul.__version__


def record(
    subject: str, variant: str, params: dict, metrics: dict[str, tuple[float, str]], path: Path | None = None
) -> None:
    """Append one row per metric: metrics maps name -> (value, unit)."""
    path = Path(path or os.environ.get("CDUL_BENCH_CSV") or RESULTS_CSV)
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    stamp = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    dev, ver = device_name(), code_version()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        if new:
            w.writeheader()
        for name, (value, unit) in metrics.items():
            w.writerow(
                {
                    "run_id": RUN_ID,
                    "timestamp": stamp,
                    "subject": subject,
                    "variant": variant,
                    "params": json.dumps(params, sort_keys=True),
                    "device": dev,
                    "code_version": ver,
                    "metric": name,
                    "value": f"{value:.6g}",
                    "unit": unit,
                }
            )


def decoding_workers() -> int:
    """The decoding processes a GPU benchmark starts: cdul-extract's on one GPU."""
    from cdul.extractor.plan import default_loader_workers

    return default_loader_workers(["cuda:0"])


def timeit(fn, *, warmup: int = 1, repeat: int = 3, sync=None) -> float:
    """Median seconds of fn() over `repeat` runs after `warmup` runs."""
    for _ in range(warmup):
        fn()
        if sync:
            sync()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        if sync:
            sync()
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]
