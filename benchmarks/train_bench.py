"""Training throughput: cdul-train's loop (labels streamed from the store, updated every
batch and written back as a round) against a bare torchvision loop with the same model,
images, batch, optimiser and precision on labels held in memory.

    python -m cdul.benchmarks.train_bench --quick      # resnet18, 64 px, this CPU
    python -m cdul.benchmarks.train_bench              # resnet101, 448 px, a GPU

Both run two epochs; the second is timed (the first pays start-up and warm-up). The two
loops alternate ``--repeat`` times (bare, ours, ours, bare, ...) and each keeps its best
rate: on a shared machine a burst of other work lands on one loop's run, and on a CPU two
threads that lose a core to another process can run several times slower (on a 2-core CPU
with another job running, runs of the same loop varied by 3x). Recorded: each loop's img/s, and
ours over the bare loop's (``ours_over_bare``; 1 - that is the trainer's overhead).
"""

from __future__ import annotations

import json
import os
import time

import click
import numpy as np
import torch

from .bench_data import jpeg_dataset, label_store, small_jpegs, work_dir
from .common import record


def run_ours(store_path: str, arch: str, size: int, batch: int, workers: int, device: str, amp: str) -> float:
    from cdul.trainer import TrainConfig, train

    out = os.path.join(work_dir(), "train-ours")
    cfg = TrainConfig(
        store=store_path,
        out_dir=out,
        arch=arch,
        weights="none",
        img_size=size,
        batch_size=batch,
        epochs=2,
        workers=workers,
        device=device,
        amp=amp,
        quiet=True,
        lr=1e-4,
    )
    if os.path.exists(out):
        import shutil

        shutil.rmtree(out)
    train(cfg)
    with open(os.path.join(out, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return next(r for r in rows if r.get("epoch") == 2)["images_per_s"]


def run_bare(store_path: str, arch: str, size: int, batch: int, workers: int, device: str, amp: str) -> float:
    """The loop as torchvision's reference script writes it, on the same image pipeline."""
    import torchvision

    from cdul.store import Store, layout
    from cdul.trainer.evaluate import autocast
    from cdul.trainer.images import ImageSet, Normalise, collate
    from cdul.trainer.labels import per_sample_loss

    store = Store.open(store_path)
    labels = torch.from_numpy(store.read(layout.round_name(store.latest_round())))
    ids = store.ids()
    dev = torch.device(device)
    data = ImageSet(store.attrs["dataset"]["root"], size)
    loader = torch.utils.data.DataLoader(
        [(i, ids[i]) for i in range(len(ids))],
        batch_size=batch,
        shuffle=True,
        num_workers=workers,
        collate_fn=lambda items: collate([data[x] for x in items]),
        persistent_workers=workers > 0,
        pin_memory=dev.type == "cuda",
    )
    torch.manual_seed(0)
    model = torchvision.models.get_model(arch, weights=None, num_classes=labels.shape[1]).to(dev)
    if dev.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    norm = Normalise().to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    model.train()
    rate = 0.0
    for _epoch in (1, 2):
        t, n = time.time(), 0
        for images, index, _ok in loader:
            x = norm(images.to(dev, non_blocking=True), contiguous=dev.type != "cuda")
            y = labels[index].to(dev, non_blocking=True)
            with autocast(dev, amp):
                logits = model(x)
            loss = per_sample_loss(logits, y, "kl").mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss.item()  # the per-step sync a logging loop has too
            n += len(index)
        rate = n / (time.time() - t)
    return rate


@click.command()
@click.option("--quick", is_flag=True, help="CPU-sized: resnet18 at 64 px on 1024 small images.")
@click.option("--arch", default=None)
@click.option("--img-size", type=int, default=None)
@click.option("--images", type=int, default=None)
@click.option("--batch-size", type=int, default=None)
@click.option("--workers", type=int, default=None)
@click.option("--repeat", type=int, default=2, show_default=True, help="Runs of each loop, alternated; best counts.")
def main(quick, arch, img_size, images, batch_size, workers, repeat):
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    arch = arch or ("resnet101" if cuda and not quick else "resnet18")
    img_size = img_size or (448 if cuda and not quick else 64)
    images = images or (4096 if cuda and not quick else 1024)
    batch_size = batch_size or 32
    workers = (min(12, os.cpu_count() or 1) if cuda else 1) if workers is None else workers
    amp = "bf16" if cuda else "none"
    root = jpeg_dataset(images) if cuda and not quick else small_jpegs(images, size=img_size)
    store = os.path.join(work_dir(), "train-bench.zarr")
    label_store(store, root)
    params = {
        "arch": arch,
        "img_size": img_size,
        "images": images,
        "batch_size": batch_size,
        "amp": amp,
        "device": device,
    }
    loops = {"bare": run_bare, "ours": run_ours}
    best = {"bare": 0.0, "ours": 0.0}
    for r in range(max(1, repeat)):
        for name in ("bare", "ours") if r % 2 == 0 else ("ours", "bare"):
            best[name] = max(best[name], loops[name](store, arch, img_size, batch_size, workers, device, amp))
    bare, ours = best["bare"], best["ours"]
    params["repeat"] = max(1, repeat)
    record("train", "bare torchvision loop", params, {"images_per_s": (bare, "img/s")})
    record(
        "train",
        "cdul-train",
        params,
        {"images_per_s": (ours, "img/s"), "overhead": (1 - ours / bare, ""), "ours_over_bare": (ours / bare, "x")},
    )
    click.echo(
        f"{arch} {img_size}px batch {batch_size} on {device}: bare {bare:.1f} img/s, cdul-train {ours:.1f} "
        f"img/s (labels streamed, updated and written): ours/bare {ours / bare:.3f}, "
        f"overhead {100 * (1 - ours / bare):.1f}%"
    )
    return np.array([bare, ours])


if __name__ == "__main__":
    main()
