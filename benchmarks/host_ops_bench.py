"""Host work per image outside the CLIP towers: torch ops dispatched and Triton launches.

    python -m cdul.benchmarks.host_ops_bench           # --views kernel and exact, snippet 3, batch 64
    python -m cdul.benchmarks.host_ops_bench --local dense --model cdul-tiny-vit --views kernel

On a GPU every dispatched op is a kernel launch plus Python work; at the thousands of
images per second a small tower encodes, a few dozen of them per image cost more than
the whole budget. This counts them on any machine (the view and scoring kernels run
through Triton's interpreter on the CPU, so the counts are the GPU path's): the ops
dispatched while no ``nn.Module`` forward is running and no batch is being decoded and
packed (the loader's worker processes do that on a GPU), in two runs of different sizes,
and reports the marginal count per image (fixed costs such as loading cancel out).
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("TRITON_INTERPRET", "1")  # before anything imports triton

import click
from torch.utils._python_dispatch import TorchDispatchMode

from cdul.data import load_dataset
from cdul.extractor.config import ExtractConfig, RunOptions, WorkerConfig
from cdul.extractor.job import extract
from cdul.extractor.plan import plan_extraction
from cdul.extractor.tiling import Tiling

from .bench_data import small_jpegs, work_dir
from .common import record


class OpCounter(TorchDispatchMode):
    """Counts aten ops dispatched outside any module's forward, by name."""

    def __init__(self):
        super().__init__()
        self.depth = 0
        self.paused = False  # inside a Triton launch: the interpreter's own copies are not ours
        self.ops: dict[str, int] = {}
        self._hooks = []

    def __enter__(self):
        from torch.nn.modules import module as m

        def pre(mod, args):
            self.depth += 1

        def post(mod, args, out):
            self.depth -= 1

        self._hooks = [m.register_module_forward_pre_hook(pre), m.register_module_forward_hook(post)]
        return super().__enter__()

    def __exit__(self, *exc):
        for h in self._hooks:
            h.remove()
        return super().__exit__(*exc)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if self.depth == 0 and not self.paused:
            name = str(func.overloadpacket.__name__)
            self.ops[name] = self.ops.get(name, 0) + 1
        return func(*args, **(kwargs or {}))

    @property
    def total(self) -> int:
        return sum(self.ops.values())


class LaunchCounter:
    """Counts Triton kernel launches (compiled or interpreted) while active, and pauses the
    op counter during each: under the interpreter a launch copies its arguments with torch
    ops of its own, which a GPU launch does not."""

    def __init__(self, ops: OpCounter):
        self.ops = ops

    def __enter__(self):
        import triton.runtime.interpreter as interp
        import triton.runtime.jit as jit

        self.launches = 0
        self._saved = []
        for cls in (jit.JITFunction, interp.InterpretedFunction):
            orig = cls.run

            def run(fn_self, *a, _orig=orig, **k):
                self.launches += 1
                paused, self.ops.paused = self.ops.paused, True
                try:
                    return _orig(fn_self, *a, **k)
                finally:
                    self.ops.paused = paused

            self._saved.append((cls, orig))
            cls.run = run
        return self

    def __exit__(self, *exc):
        for cls, orig in self._saved:
            cls.run = orig


class WorkerWork:
    """Pauses the op counter while a batch is read, decoded and packed: on a GPU that runs in
    the DataLoader's worker processes, not in the process that drives the device (here, with
    no workers, it runs in this one)."""

    def __init__(self, ops: OpCounter):
        self.ops = ops

    def __enter__(self):
        from cdul.extractor.reader import BatchReader

        self._orig = orig = BatchReader.__getitem__

        def getitem(reader, item):
            paused, self.ops.paused = self.ops.paused, True
            try:
                return orig(reader, item)
            finally:
                self.ops.paused = paused

        BatchReader.__getitem__ = getitem
        return self

    def __exit__(self, *exc):
        from cdul.extractor.reader import BatchReader

        BatchReader.__getitem__ = self._orig


def count(root: str, n: int, views: str, model: str, snippet: int, batch_size: int, local: str = "tiles") -> dict:
    data = load_dataset("voc2012", root, "train").head(n)
    out = os.path.join(work_dir(), f"ops-{views}-{n}.zarr")
    cfg = WorkerConfig(
        store=out,
        root=data.root,
        config=ExtractConfig(
            model=model, pretrained="none", tiling=Tiling.grid(snippet), precision="fp32", local=local
        ),
        run=RunOptions(batch_size=batch_size, loader_workers=0, views=views),
    )
    counter = OpCounter()
    t = time.perf_counter()
    with LaunchCounter(counter) as launches, WorkerWork(counter), counter:
        counts = extract(plan_extraction(cfg, ["cpu"], chunk_len=max(n, 1), overwrite=True), data).counts
    return {
        "ops": counter.total,
        "by_op": counter.ops,
        "launches": launches.launches,
        "images": counts["images"],
        "seconds": time.perf_counter() - t,
        "stages": counts["stage_seconds"],
    }


def marginal(
    views: str, model: str, snippet: int, batch_size: int, local: str = "tiles", small: int = 13, large: int = 45
) -> dict:
    root = small_jpegs(large, size=48)
    a = count(root, small, views, model, snippet, batch_size, local)
    b = count(root, large, views, model, snippet, batch_size, local)
    per = (b["ops"] - a["ops"]) / (large - small)
    by_op = {
        k: (b["by_op"].get(k, 0) - a["by_op"].get(k, 0)) / (large - small) for k in set(a["by_op"]) | set(b["by_op"])
    }
    return {
        "ops_per_image": per,
        "launches_per_image": (b["launches"] - a["launches"]) / (large - small),
        "by_op": {k: round(v, 2) for k, v in sorted(by_op.items(), key=lambda kv: -kv[1]) if v},
    }


@click.command()
@click.option("--model", default="cdul-tiny-rn", help="Tower (excluded from the count; a tiny one is enough).")
@click.option("--snippet", type=int, default=3)
@click.option("--batch-size", type=int, default=64)
@click.option("--views", "modes", default="kernel,exact", help="Comma list of view paths to count.")
@click.option(
    "--local",
    type=click.Choice(["tiles", "dense"]),
    default="tiles",
    help="Local scores from tiles (--snippet) or one dense pass (a ViT: --model cdul-tiny-vit).",
)
@click.option("--quick", is_flag=True, help="Accepted for cdul-bench; the counts are the same.")
def main(model, snippet, batch_size, modes, local, quick):
    for views in modes.split(","):
        r = marginal(views, model, snippet, batch_size, local)
        params = {"model": model, "snippet": snippet, "batch_size": batch_size, "views": views}
        if local != "tiles":
            params["local"] = local
        record(
            "host_ops",
            views,
            params,
            {
                "ops_per_image": (r["ops_per_image"], "ops"),
                "triton_launches_per_image": (r["launches_per_image"], "launches"),
            },
        )
        click.echo(
            f"--views {views}: {r['ops_per_image']:.2f} torch ops and {r['launches_per_image']:.2f} Triton "
            f"launches per image outside the towers ({'dense' if local == 'dense' else f'snippet {snippet}'}, "
            f"batch {batch_size})"
        )
        click.echo("  by op: " + ", ".join(f"{k} {v}" for k, v in r["by_op"].items()))


if __name__ == "__main__":
    main()
