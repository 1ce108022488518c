"""cdul-eval: score a cdul-train checkpoint on a labelled split."""

from __future__ import annotations

import click

from cdul.data import DATASETS

from . import common
from .common import CONTEXT, fail, follow_symlinks_option, table, version_option, warn_random_clip

HELP = """Score the classifier of CHECKPOINT (last.pt or best.pt of a cdul-train run) on a labelled
split: mAP (VOC protocol), per-class AP, CF1/OF1. The checkpoint carries the architecture,
input size, class names and score function (softmax under --loss kl, sigmoid under bce);
nothing else is needed.

\b
Example:
  cdul-eval --checkpoint runs/voc12/best.pt --data data/VOCdevkit --split val \\
      --out runs/voc12/val.json --plots runs/voc12/plots
"""


@click.command(help=HELP, context_settings=CONTEXT)
@version_option
@click.option("--checkpoint", "-c", required=True, help="A cdul-train checkpoint (last.pt, best.pt).")
@click.option("--data", required=True, help="Dataset root (path or fsspec URL).")
@click.option(
    "--dataset",
    type=click.Choice(DATASETS),
    default=None,
    help="Layout of --data.  [default: the dataset kind the run trained on, else voc2012]",
)
@click.option("--split", default="val", help="Split to score (VOC: ImageSets/Main/<split>.txt).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the first N images of the split.")
@click.option("--out", "-o", "out", default=None, help="Write the report (mAP, per-class AP, F1 scores) as JSON here.")
@click.option("--plots", default=None, help="Write pr_curves.png and per_class_ap.png into this folder.")
@common.difficult_option("VOC 'difficult' labels: left out for that class (VOC protocol) or counted as positives.")
@common.threshold_option("Score threshold of CF1/OF1 (softmax scores under a kl-trained model sum to 1 per image).")
@common.batch_size_option(32, "Images per forward pass.")
@common.workers_option("DataLoader processes decoding images.")
@common.device_option
@common.amp_option("Mixed precision on CUDA.")
@follow_symlinks_option
@click.option("--quiet", "-q", is_flag=True, help="Print only the mAP line.")
def main(
    checkpoint,
    data,
    dataset,
    split,
    limit,
    out,
    plots,
    difficult,
    threshold,
    batch_size,
    workers,
    device,
    amp,
    follow_symlinks,
    quiet,
):
    import torch

    from cdul.data import DatasetError, fs, load_labelled
    from cdul.data.transfer import SharedMemoryFull
    from cdul.trainer.checkpoint import CheckpointError, load_checkpoint
    from cdul.trainer.distributed import pick_device
    from cdul.trainer.evaluate import classifier_report, predict
    from cdul.trainer.model import WeightsError, new_model
    from cdul.trainer.prepare import TrainError, check_finite
    from cdul.trainer.report import write_json, write_plots

    fs.follow_symlinks(follow_symlinks)
    try:
        ckpt = load_checkpoint(checkpoint)
    except CheckpointError as exc:
        fail(str(exc))
    classes = list(ckpt["classes"])
    kind = dataset or ckpt.get("dataset") or "voc2012"
    try:
        ds = load_labelled(kind, data, split, classes, limit)
    except DatasetError as exc:
        fail(f"{exc} (--dataset {kind})")
    try:
        dev = pick_device(device)
        model = new_model(ckpt["arch"], len(classes))
    except (ValueError, WeightsError) as exc:
        fail(str(exc))
    model.load_state_dict(ckpt["model"])
    try:
        check_finite(model, checkpoint)
    except TrainError as exc:
        fail(f"{exc}; its scores would mean nothing")
    model.to(dev)
    if dev.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    try:
        scores = predict(
            model,
            ds.root,
            list(ds.ids),
            kind=ds.kind,
            size=int(ckpt["img_size"]),
            loss=ckpt["loss"],
            batch_size=batch_size,
            workers=workers,
            device=dev,
            amp=amp,
        )
    except SharedMemoryFull as exc:
        fail(str(exc))
    warn_random_clip(f"{checkpoint} (trained on its pseudo labels)", ckpt.get("clip"))
    report = classifier_report(scores, ds.targets, classes, difficult=difficult, threshold=threshold)
    report = {
        "checkpoint": checkpoint,
        "epoch": int(ckpt["epoch"]),
        "arch": ckpt["arch"],
        "weights": ckpt.get("config", {}).get("weights"),
        "img_size": int(ckpt["img_size"]),
        "score": "softmax" if ckpt["loss"] == "kl" else "sigmoid",
        "data": ds.root,
        "dataset": kind,
        "split": split,
        "difficult": difficult,
        **report,
    }
    if out:
        write_json(out, report)
    if plots:
        write_plots(plots, scores, ds.targets, classes, report, difficult)
    if not quiet:
        rows = [(c, "-" if report["ap"][c] is None else f"{report['ap'][c]:.2f}") for c in classes]
        click.echo(table(rows, ("class", "AP")))
        click.echo()
        click.echo(
            table(
                [
                    ("images", report["images"]),
                    ("unreadable", report["unreadable"]),
                    (f"CF1 @ {threshold:g}", f"{report['CF1']:.3f}"),
                    (f"OF1 @ {threshold:g}", f"{report['OF1']:.3f}"),
                    ("CP / CR", f"{report['CP']:.3f} / {report['CR']:.3f}"),
                    ("OP / OR", f"{report['OP']:.3f} / {report['OR']:.3f}"),
                ],
                (f"{ckpt['arch']} epoch {report['epoch']} on {kind} {split}", ""),
            )
        )
    rule = "difficult ignored" if difficult == "ignore" else "difficult as positive"
    click.echo(f"mAP {report['map']:.2f} ({report['images']} images, {rule})")


if __name__ == "__main__":
    main()
