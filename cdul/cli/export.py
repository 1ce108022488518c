"""cdul-export: a store's labels as a table (CSV, JSONL or Parquet), one row per image."""

from __future__ import annotations

import math

import click

from cdul import api

from .common import CONTEXT, decision_options, fail, table, version_option, warn_random_store
from .options import record_option

HELP = """Write the labels of the finished store --store as a table, one row per image: its id as
the store holds it, the classes decided from its scores (--threshold, --top-k or the default
rule) and, with --scores, every class's score. The format follows --out's extension: .csv
(path,labels with ';'-separated class names: the labels.csv that cdul-extract --dataset folder
reads), .jsonl or .parquet. Failed images are left out and counted. Where the store has ground
truth, per-class precision and recall of the decisions and the mAP of the scores are printed.

\b
Examples:
  cdul-export --store photos.zarr --out labels.csv
  cdul-export --store voc12_train.zarr --out labels.parquet --round y0 --top-k 2 --scores
  cdul-export --store voc12_train.zarr --out labels.jsonl --round 3 --threshold 0.3

\b
With --checkpoint instead of --store, the classifier of a cdul-train checkpoint is written as
ONNX (--out model.onnx): its outputs are probabilities (softmax or sigmoid in the graph), its
metadata holds the class names, input size, mean and std; it runs with onnxruntime alone.
  cdul-export --checkpoint runs/voc12/best.pt --out model.onnx
"""


@click.command(help=HELP, context_settings=CONTEXT)
@version_option
@click.option("--store", "-s", default=None, help="A finished store from cdul-extract (path or fsspec URL).")
@click.option(
    "--checkpoint",
    "-c",
    default=None,
    help="Instead of --store: a cdul-train checkpoint to write as ONNX (--out x.onnx).",
)
@click.option(
    "--out",
    "-o",
    required=True,
    help="The table to write, e.g. labels.csv; its extension picks the format: .csv, .jsonl or .parquet.",
)
@record_option(
    api.export,
    "round",
    "--round",
    "round_",
    help="Which scores: latest (the newest complete label round), a round number (3), y0 (round 0, the "
    "initial pseudo labels), S_g (the global view's similarities) or S_ag (the aggregated local ones, "
    "with round 0's zeta).",
)
@decision_options
@record_option(api.export, "scores", "--scores", is_flag=True, help="Add one score column per class (score:<class>).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar and no per-class table.")
def main(store, checkpoint, out, round_, decision, scores, quiet):
    if (store is None) == (checkpoint is None):
        fail("give --store (labels as a table) or --checkpoint (the classifier as ONNX), one of them")
    if checkpoint is not None:
        return _onnx(checkpoint, out)

    try:
        result = api.export(
            store=store,
            out=out,
            round=round_,
            threshold=decision.threshold,
            top_k=decision.top_k,
            scores=scores,
            quiet=quiet,
        )
    except api.CdulError as exc:
        fail(str(exc), exc.code)
    click.echo(
        f"wrote {result.images} images to {result.out} ({result.source}; labels: {result.rule}; "
        f"{result.labels_per_image:.2f} classes an image) in {result.seconds:.1f} s"
    )
    if result.failed:
        click.echo(f"{result.failed} failed images left out (their reasons: images/error in the store)")
    if result.classes and not quiet:
        click.echo(table([_row(q) for q in result.classes], ("class", "positives", "decided", "precision", "recall")))
    if result.map is not None:
        click.echo(f"mAP of the scores ({result.source}) against the store's ground truth: {result.map:.2f}")
    warn_random_store(store)


def _onnx(checkpoint: str, out: str) -> None:
    from cdul.api import CdulError, export_onnx

    try:
        done = export_onnx(checkpoint=checkpoint, out=out)
    except CdulError as exc:
        fail(str(exc), exc.code)
    check = "" if done["max_abs_diff"] is None else f"; onnxruntime matches torch within {done['max_abs_diff']:.1e}"
    click.echo(
        f"wrote {done['out']} ({done['bytes'] / 1e6:.1f} MB): {done['classes']} classes, {done['input_size']} px "
        f"input, {done['score']} scores{check}"
    )


def _row(q) -> tuple:
    def pct(x: float) -> str:
        return "-" if math.isnan(x) else f"{100 * x:.1f}"

    return (q.name, q.positives, q.decided, pct(q.precision), pct(q.recall))


if __name__ == "__main__":
    main()
