"""cdul-demo: the main job end to end on a sample that needs no download.

It builds a VOC-layout folder from real photos that scikit-image ships (with their VOC
labels written by hand) plus generated filler, extracts CLIP similarities and initial
pseudo labels, trains a small classifier on them for a few epochs, evaluates it, and
writes a report (``<out-dir>/report/index.html``); its last lines give the cdul-serve
command that browses the store. Real weights are used when they can be
had (cache or network); otherwise random ones, with a warning that the numbers then mean
nothing. scripts/demo.sh runs it after setting up the environment.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import sys

import click

from cdul.cli.common import CONTEXT, version_option, warn


def pick_clip_weights(model: str, pretrained: str) -> str:
    """The real CLIP weights when open_clip can load them (cache or network), else random ones."""
    from cdul.extractor.clip_model import WeightsUnavailableError, register_model, resolve_weights

    try:
        resolve_weights(register_model(model), pretrained)
        return pretrained
    except WeightsUnavailableError as exc:
        warn(
            f"{exc}\nFalling back to random CLIP weights: every score below is meaningless. On a connected "
            f"machine the same command downloads the real {model} weights and gives real pseudo labels."
        )
        return "none"


def pick_classifier_weights(arch: str) -> str:
    """torchvision's ImageNet weights when cached or downloadable, else a random start."""
    import torch
    import torchvision

    try:
        url = torchvision.models.get_model_weights(arch).DEFAULT.url
    except (ValueError, KeyError, AttributeError):
        return "none"
    if os.path.exists(os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(url))):
        return "imagenet"
    try:
        socket.create_connection(("download.pytorch.org", 443), timeout=3).close()
        return "imagenet"
    except OSError:
        warn(f"no ImageNet weights for {arch} (not cached, no network): the classifier starts from random weights")
        return "none"


def runnable(name: str) -> str:
    """How a user types console script ``name``: bare when it is on PATH, else its path beside
    the running cdul-demo (``.venv/bin/cdul-extract`` when scripts/demo.sh started it)."""
    beside = os.path.join(os.path.dirname(sys.argv[0]), name)
    return beside if not shutil.which(name) and os.path.isfile(beside) else name


def _run(name: str, command, args: list[str]) -> None:
    """Echo the command as a user can copy and run it, then run it in this process. The
    echoed commands, pasted in order after the demo, redo it with the same results."""
    click.secho(f"$ {shlex.join([runnable(name), *args])}", fg="cyan", err=True)
    command.main(args, prog_name=name, standalone_mode=False)


def real_weights_line(name: str, args: list[str], option: str, real: str) -> str:
    """``name args`` with ``option``'s value replaced by the real weights' name."""
    i = args.index(option)
    return shlex.join([runnable(name), *args[: i + 1], real, *args[i + 2 :]])


def write_sources(path: str, sources: dict[str, str]) -> None:
    """The photo/filler word of each image, as cdul-report --sources reads it."""
    from cdul.data.fs import atomic_write_text

    atomic_write_text(path, "id,source\n" + "".join(f"{k},{v}\n" for k, v in sorted(sources.items())))


@click.command(context_settings=CONTEXT)
@version_option
@click.option("--out-dir", default="sample", help="Where the sample dataset, store, run and report go.")
@click.option("--model", default="ViT-B-32", help="CLIP architecture (small enough for a CPU).")
@click.option("--pretrained", default="openai", help="CLIP weights; random ones if they cannot be had.")
@click.option("--gpus", default="auto", help="Devices for extraction (see cdul-extract --help).")
@click.option("--arch", default="resnet18", help="Classifier (a small one keeps the demo short on a CPU).")
@click.option("--epochs", type=click.IntRange(min=1), default=3, help="Classifier training epochs.")
@click.option("--img-size", type=click.IntRange(min=32), default=128, help="Classifier input size.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def main(out_dir, model, pretrained, gpus, arch, epochs, img_size, quiet):
    """Extract, train, evaluate and report on a sample that needs no download."""
    from cdul.cli.eval import main as evaluate
    from cdul.cli.extract import main as extract
    from cdul.cli.report import main as report
    from cdul.cli.train import main as train
    from cdul.sample import SAMPLE_NOTE, build_sample

    os.makedirs(out_dir, exist_ok=True)
    data = os.path.join(out_dir, "data")
    store = os.path.join(out_dir, "sample.zarr")
    run = os.path.join(out_dir, "run")
    sources = build_sample(data)
    q = ["-q"] if quiet else []
    clip_weights, classifier_weights = pick_clip_weights(model, pretrained), pick_classifier_weights(arch)
    extract_args = [
        *(data, "--dataset", "voc2012", "--split", "train", "--out", store, "--model", model),
        *("--pretrained", clip_weights, "--gpus", gpus, "--keep-tiles", "--keep-embeddings", "--overwrite", *q),
    ]
    _run("cdul-extract", extract, extract_args)
    train_args = [
        *("--store", store, "--out-dir", run, "--val-data", data, "--val-split", "val", "--arch", arch),
        *("--weights", classifier_weights, "--img-size", str(img_size), "--epochs", str(epochs)),
        *("--batch-size", "8", "--lr", "1e-4", "--workers", "0", "--overwrite", *(["--quiet"] if quiet else [])),
    ]
    _run("cdul-train", train, train_args)
    eval_json = os.path.join(run, "eval.json")
    eval_args = [
        *("--checkpoint", os.path.join(run, "best.pt"), "--data", data, "--dataset", "voc2012"),
        *("--split", "val", "--out", eval_json, "--workers", "0"),
    ]
    _run("cdul-eval", evaluate, eval_args)
    sources_csv = os.path.join(out_dir, "sources.csv")
    write_sources(sources_csv, sources)
    report_args = ["--store", store, "--run", run, "--eval", eval_json, "--out", os.path.join(out_dir, "report")]
    _run("cdul-report", report, [*report_args, "--sources", sources_csv, "--note", SAMPLE_NOTE])
    index = os.path.join(out_dir, "report", "index.html")
    click.secho(f"\nreport: {index} (also report.md beside it)", fg="green", bold=True)
    serve = shlex.join([runnable("cdul-serve"), "--store", store])
    click.secho(f"browse, search and check the labels: {serve}  (then open http://127.0.0.1:8000/)", fg="green")
    if clip_weights == "none" and pretrained != "none":
        click.echo("cdul-extract with the real CLIP weights (on a connected machine, it downloads them):", err=True)
        click.echo(f"  {real_weights_line('cdul-extract', extract_args, '--pretrained', pretrained)}", err=True)
    random = [what for what, w in (("CLIP", clip_weights), ("classifier", classifier_weights)) if w == "none"]
    if random:
        warn(
            f"the {' and the '.join(random)} started from random weights (offline): every mAP above and in the "
            "report is meaningless; on a connected machine the demo, and the extract line above, use the real weights"
        )


if __name__ == "__main__":
    sys.exit(main())
