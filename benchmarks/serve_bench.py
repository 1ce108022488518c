"""cdul-serve on a large store: start-up time and the latency of each kind of page, first
request (what has to be read or built) and then warm (median of repeats), plus the
server's resident memory at the end. The store is generated (serve_store.py) once per size.

    python -m cdul.benchmarks.serve_bench                  # 100,000 images, 20 classes
    python -m cdul.benchmarks.serve_bench --images 20000 --repeat 3
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request

import click

from .bench_data import work_dir
from .common import record
from .serve_store import synthetic_store

REQUESTS = (  # (what, path): in this order, so "first" is the first time the server sees each
    ("overview", "/api/s/0/overview"),
    ("class page, first page", "/api/s/0/class/3?size=60"),
    ("class page, page 100", "/api/s/0/class/3?page=100&size=60"),
    ("class page ranked by S_ag", "/api/s/0/class/5?source=S_ag&size=60"),
    ("class page as HTML", "/s/0/class/3"),
    ("image (with 12 neighbours)", "/api/s/0/image/12345"),
    ("neighbours of another image", "/api/s/0/image/777/neighbours"),
    ("thumbnail 160 px", "/api/s/0/thumb/7?size=160"),
    ("search by a store image", "/api/s/0/search?like=42"),
    ("search by text", "/api/s/0/search?q=a+photo+of+a+dog"),
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=120) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def start(store: str, port: int, timeout: float = 60.0) -> tuple[subprocess.Popen, float]:
    """The server in its own process, and the seconds until it first answered."""
    t = time.perf_counter()
    cmd = [sys.executable, "-m", "cdul.cli.serve", "--store", store, "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    while time.perf_counter() - t < timeout:
        try:
            if get(f"http://127.0.0.1:{port}/api/stores")[0] == 200:
                return proc, time.perf_counter() - t
        except OSError:
            time.sleep(0.05)
        if proc.poll() is not None:
            raise RuntimeError(f"cdul-serve stopped: {proc.stderr.read().decode()[-500:] if proc.stderr else ''}")
    proc.kill()
    raise RuntimeError(f"cdul-serve did not answer within {timeout} s")


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.option("--images", type=click.IntRange(min=100), default=100_000, help="Images in the generated store.")
@click.option("--classes", type=click.IntRange(min=2), default=20, help="Classes in the generated store.")
@click.option("--dim", type=click.IntRange(min=8), default=32, help="Embedding width (32: the tiny test CLIP's).")
@click.option("--repeat", type=click.IntRange(min=1), default=5, help="Warm requests per kind of page.")
@click.option(
    "--settle",
    type=click.FloatRange(min=0),
    default=10.0,
    help="Seconds to wait after start-up, while the server imports torch in the background, before the pages.",
)
def main(images, classes, dim, repeat, settle):
    """Start-up time and page latency of cdul-serve on a generated store."""
    url = os.path.join(work_dir(), f"serve-{images}-{classes}-{dim}.zarr")
    root = os.path.join(work_dir(), f"serve-{images}-{classes}-{dim}-data")
    if not os.path.exists(os.path.join(url, "zarr.json")):
        t = time.perf_counter()
        synthetic_store(url, root, images, classes=classes, dim=dim)
        click.echo(f"generated {url} in {time.perf_counter() - t:.1f} s")
    port = free_port()
    proc, startup = start(url, port)
    rows = [("start-up (process start to first answer)", startup, float("nan"))]
    time.sleep(settle)
    try:
        for what, path in REQUESTS:
            t = time.perf_counter()
            status, _ = get(f"http://127.0.0.1:{port}{path}")
            first = time.perf_counter() - t
            if status != 200:
                raise RuntimeError(f"{path}: HTTP {status}")
            warm = []
            for _ in range(repeat):
                t = time.perf_counter()
                get(f"http://127.0.0.1:{port}{path}")
                warm.append(time.perf_counter() - t)
            rows.append((what, first, statistics.median(warm)))
        memory = rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    params = {"images": images, "classes": classes, "dim": dim, "repeat": repeat, "settle": settle}
    metrics = {f"{what}, first": (first * 1000, "ms") for what, first, _ in rows}
    metrics.update({f"{what}, warm": (warm * 1000, "ms") for what, _, warm in rows[1:]})
    metrics["resident memory at the end"] = (memory, "MB")
    record("serve", "cdul-serve", params, metrics)
    click.echo(f"{images} images, {classes} classes; ms (warm: median of {repeat})")
    click.echo(f"{'request':45s} {'first':>9s} {'warm':>9s}")
    for what, first, warm in rows:
        click.echo(f"{what:45s} {first * 1000:9.1f} {warm * 1000:9.1f}")
    click.echo(f"server resident memory at the end: {memory:.0f} MB")


if __name__ == "__main__":
    main()
