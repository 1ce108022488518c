"""cdul-eval: score a cdul-train checkpoint on a labelled split."""

from __future__ import annotations

import math

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
@common.ap_option("the mAP and per-class AP")
@common.difficult_option("VOC 'difficult' labels: left out for that class (VOC protocol) or counted as positives.")
@common.threshold_option("Score threshold of CF1/OF1 (softmax scores under a kl-trained model sum to 1 per image).")
@common.batch_size_option("Images per forward pass.", default=32)
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
    ap,
    difficult,
    threshold,
    batch_size,
    workers,
    device,
    amp,
    follow_symlinks,
    quiet,
):
    from cdul.data import fs
    from cdul.metrics import default_protocol
    from cdul.trainer.evaluate import classifier_report

    fs.follow_symlinks(follow_symlinks)
    _check_outputs(out, plots)
    clf, kind, ds, scores = _score(checkpoint, data, dataset, split, limit, batch_size, workers, device, amp)
    ckpt, classes = clf.checkpoint, clf.classes
    warn_random_clip(f"{checkpoint} (trained on its pseudo labels)", ckpt.get("clip"))
    protocol = ap or default_protocol(kind)
    report = classifier_report(scores, ds.targets, classes, difficult=difficult, threshold=threshold, protocol=protocol)
    if not math.isfinite(report["map"]):
        fail(f"no class has a positive among the {report['images']} images scored: mAP is undefined")
    report = {
        "checkpoint": checkpoint,
        "epoch": int(ckpt["epoch"]),
        "arch": ckpt["arch"],
        "weights": ckpt.get("config", {}).get("weights"),
        "img_size": int(ckpt["img_size"]),
        "score": clf.score_function,
        "data": ds.root,
        "dataset": kind,
        "split": split,
        "difficult": difficult,
        **report,
    }
    _write_outputs(out, plots, report, scores, ds.targets, classes, difficult)
    if not quiet:
        _print_tables(report, classes, ckpt, threshold, _dataset_name(kind, split, data))
    rule = f", difficult {'ignored' if difficult == 'ignore' else 'as positive'}" if kind.startswith("voc") else ""
    click.echo(f"mAP {report['map']:.2f} ({report['images']} images, {protocol} AP{rule})")


def _check_outputs(out: str | None, plots: str | None) -> None:
    """Refuse, before any work, an --out or --plots that cannot be written."""
    from cdul.data import outputs

    try:
        if out:
            outputs.output_file(out, "--out")
        if plots:
            outputs.output_dir(plots, "--plots")
    except outputs.OutputError as exc:
        fail(str(exc))


def _score(checkpoint, data, dataset, split, limit, batch_size, workers, device, amp):
    """The classifier of ``checkpoint``, the dataset kind, the split and its scores [N, C]
    (rows of unreadable images NaN); one line and exit where any of it cannot be had."""
    import numpy as np

    from cdul.data import DatasetError, load_labelled
    from cdul.data.transfer import SharedMemoryFull
    from cdul.trainer.classifier import ClassifierError, load_classifier
    from cdul.trainer.evaluate import predict

    try:
        clf = load_classifier(checkpoint, device)
    except ClassifierError as exc:
        fail(str(exc))
    kind = dataset or clf.checkpoint.get("dataset") or "voc2012"
    try:
        ds = load_labelled(kind, data, split, clf.classes, limit)
    except DatasetError as exc:
        fail(f"{exc} (--dataset {kind})")
    try:
        scores = predict(
            clf.model,
            ds.root,
            list(ds.ids),
            kind=ds.kind,
            size=clf.img_size,
            loss=clf.loss,
            batch_size=batch_size,
            workers=workers,
            device=clf.device,
            amp=amp,
            mean=clf.mean,
            std=clf.std,
        )
    except SharedMemoryFull as exc:
        fail(str(exc))
    if not len(scores) or not np.isfinite(scores).all(axis=1).any():
        fail(f"none of the {len(ds.ids)} images of {data} ({split}) could be read: there is nothing to score")
    return clf, kind, ds, scores


def _write_outputs(out, plots, report: dict, scores, targets, classes: list[str], difficult: str) -> None:
    """--out (the JSON report) and --plots (its figures), where asked for."""
    from cdul.report.eval_report import write_json, write_plots

    for option, path, write in (
        ("--out", out, lambda: write_json(out, report)),
        ("--plots", plots, lambda: write_plots(plots, scores, targets, classes, report, difficult)),
    ):
        try:
            if path:
                write()
        except OSError as exc:
            fail(f"{option} {path}: cannot be written ({exc.strerror or exc})")


def _print_tables(report: dict, classes: list[str], ckpt: dict, threshold: float, scored_on: str) -> None:
    """Per-class AP, then the counts and F1 scores, on stdout."""
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
            (f"{ckpt['arch']} epoch {report['epoch']} on {scored_on}", ""),
        )
    )
    if ckpt["loss"] == "kl" and report["CF1"] == 0 and report["OF1"] == 0:
        click.echo(
            f"(CF1/OF1 0: under the KL loss the scores are a softmax that sums to 1 over the classes, so few "
            f"pass --threshold {threshold:g}; try --threshold 0.1)"
        )


def _dataset_name(kind: str, split: str, data: str) -> str:
    """VOC and COCO have named splits; a folder or shards are named by where they are."""
    return f"{kind} {split}" if kind in ("voc2007", "voc2012", "coco2014") else f"{kind} {data}"


if __name__ == "__main__":
    main()
