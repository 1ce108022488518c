"""cdul-export: a store's labels as a table (CSV, JSONL or Parquet), one row per image."""

from __future__ import annotations

import math

import click

from .common import CONTEXT, decision_options, fail, table

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
"""


@click.command(help=HELP, context_settings=CONTEXT)
@click.option("--store", "-s", required=True, help="A finished store from cdul-extract (path or fsspec URL).")
@click.option(
    "--out",
    "-o",
    required=True,
    help="The table to write, e.g. labels.csv; its extension picks the format: .csv, .jsonl or .parquet.",
)
@click.option(
    "--round",
    "round_",
    default="latest",
    help="Which scores: latest (the newest complete label round), a round number (3), y0 (round 0, the "
    "initial pseudo labels), S_g (the global view's similarities) or S_ag (the aggregated local ones, "
    "with round 0's zeta).",
)
@decision_options
@click.option("--scores", is_flag=True, help="Add one score column per class (score:<class>).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar and no per-class table.")
def main(store, out, round_, decision, scores, quiet):
    from cdul.api import CdulError, export

    try:
        result = export(
            store=store,
            out=out,
            round=round_,
            threshold=decision.threshold,
            top_k=decision.top_k,
            scores=scores,
            quiet=quiet,
        )
    except CdulError as exc:
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


def _row(q) -> tuple:
    def pct(x: float) -> str:
        return "-" if math.isnan(x) else f"{100 * x:.1f}"

    return (q.name, q.positives, q.decided, pct(q.precision), pct(q.recall))


if __name__ == "__main__":
    main()
