"""Labelling throughput: cdul-predict's path (parts written to a work folder, failures
explained, the decision rule, a Parquet table with every score, assembled at the end)
against cdul-eval's (the same classifier scoring the same images into memory), in one run.

    python -m cdul.benchmarks.predict_bench --quick    # resnet18, 64 px, this CPU
    python -m cdul.benchmarks.predict_bench            # resnet101, 448 px, a GPU

Both are timed from the checkpoint file to their result, after one warm-up run each on a
few images; the order alternates over ``--repeat`` rounds and the median is kept.
"""

from __future__ import annotations

import os
import statistics
import time

import click
import torch

from .bench_data import jpeg_dataset, small_jpegs, work_dir
from .common import decoding_workers, record


def random_checkpoint(path: str, arch: str, size: int, classes: list[str]) -> str:
    """A cdul-train checkpoint of ``arch`` with random weights (speed does not depend on them)."""
    from cdul.trainer.checkpoint import save_checkpoint
    from cdul.trainer.images import IMAGENET_MEAN, IMAGENET_STD
    from cdul.trainer.model import new_model

    torch.manual_seed(0)
    state = {
        "epoch": 1,
        "model": new_model(arch, len(classes)).state_dict(),
        "classes": classes,
        "arch": arch,
        "img_size": size,
        "loss": "kl",
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "dataset": "voc2012",
    }
    save_checkpoint(state, path)
    return path


def run_eval(ckpt: str, root: str, limit: int, batch: int, workers: int, device: str, amp: str) -> float:
    """Seconds of cdul-eval's path: load the classifier and the split, score, report."""
    from cdul.data import load_labelled
    from cdul.trainer.classifier import load_classifier
    from cdul.trainer.evaluate import classifier_report, predict

    t = time.perf_counter()
    clf = load_classifier(ckpt, device)
    ds = load_labelled("voc2012", root, "train", clf.classes, limit)
    scores = predict(
        clf.model, ds.root, list(ds.ids), kind=ds.kind, size=clf.img_size, loss=clf.loss, batch_size=batch,
        workers=workers, device=clf.device, amp=amp, mean=clf.mean, std=clf.std,
    )  # fmt: skip
    classifier_report(scores, ds.targets, clf.classes)
    return time.perf_counter() - t


def run_predict(ckpt: str, root: str, limit: int, batch: int, workers: int, device: str, amp: str) -> float:
    """Seconds of cdul-predict's path, to a Parquet table with every score."""
    from cdul.trainer.predict import predict_dataset

    out = os.path.join(work_dir(), "predict-bench.parquet")
    t = time.perf_counter()
    predict_dataset(
        checkpoint=ckpt, data=root, out=out, dataset="voc2012", split="train", scores=True, limit=limit,
        part_size=1024, batch_size=batch, workers=workers, device=device, amp=amp, overwrite=True, progress=False,
    )  # fmt: skip
    seconds = time.perf_counter() - t
    os.remove(out)
    return seconds


@click.command()
@click.option("--quick", is_flag=True, help="CPU-sized: resnet18 at 64 px on 512 small images.")
@click.option("--arch", default=None)
@click.option("--img-size", type=int, default=None)
@click.option("--images", type=int, default=None)
@click.option("--batch-size", type=int, default=None)
@click.option("--workers", type=int, default=None)
@click.option("--repeat", type=int, default=3, help="Timed rounds of each path (median kept).")
def main(quick, arch, img_size, images, batch_size, workers, repeat):
    from cdul.data import VOC_NAMES

    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    big = cuda and not quick
    arch = arch or ("resnet101" if big else "resnet18")
    img_size = img_size or (448 if big else 64)
    images = images or (4096 if big else 512)
    batch_size = batch_size or (64 if big else 32)
    workers = (decoding_workers() if cuda else 1) if workers is None else workers
    amp = "bf16" if cuda else "none"
    root = jpeg_dataset(images) if big else small_jpegs(images, size=img_size)
    ckpt = random_checkpoint(os.path.join(work_dir(), f"predict-bench-{arch}.pt"), arch, img_size, list(VOC_NAMES))
    args = (ckpt, root, images, batch_size, workers, device, amp)
    warm = (ckpt, root, min(images, 2 * batch_size), batch_size, workers, device, amp)
    run_eval(*warm), run_predict(*warm)
    times: dict[str, list[float]] = {"eval": [], "predict": []}
    for r in range(repeat):
        for name in ("eval", "predict") if r % 2 == 0 else ("predict", "eval"):
            times[name].append((run_eval if name == "eval" else run_predict)(*args))
    params = {"arch": arch, "img_size": img_size, "images": images, "batch_size": batch_size, "workers": workers}
    params.update({"amp": amp, "device": device, "repeat": repeat})
    rate = {k: images / statistics.median(v) for k, v in times.items()}
    record("predict", "cdul-eval", params, {"images_per_s": (rate["eval"], "img/s")})
    ratio = rate["predict"] / rate["eval"]
    record("predict", "cdul-predict", params, {"images_per_s": (rate["predict"], "img/s"), "vs_eval": (ratio, "x")})
    click.echo(
        f"{arch} {img_size}px batch {batch_size} on {device}, {images} images: cdul-eval {rate['eval']:.1f} img/s, "
        f"cdul-predict {rate['predict']:.1f} img/s (parts, Parquet with scores): {ratio:.2f}x"
    )


if __name__ == "__main__":
    main()
