"""cdul-predict: label new images with a trained classifier (a thin layer over cdul.api.predict)."""

from __future__ import annotations

import functools

import click

from cdul import api
from cdul.data import DATASETS

from . import common
from .common import CONTEXT, fail, follow_symlinks_option, table, version_option
from .options import record_option

# The defaults of cdul.api.predict, which the command calls, are the command's.
option = functools.partial(record_option, api.predict)

HELP = """Label the images of DATA with the classifier of CHECKPOINT (best.pt or last.pt of a
cdul-train run): one row per image with the classes it keeps, optionally every class's
score, and for an image that cannot be read or decoded an error instead of labels. The
format follows the extension of --out: .csv, .jsonl or .parquet.

\b
Large collections: the scores are made in parts of --part-size images, kept in OUT.parts/
beside the output. Rerun the same command after a crash or a kill and the finished parts
are kept; a rerun with other settings (checkpoint, data, split, --part-size, --amp) is
refused (--overwrite starts over). The output appears only when complete, and the parts
folder is removed then.

\b
Examples:
  cdul-predict --checkpoint runs/voc12/best.pt --data photos/ --out preds.parquet
  cdul-predict -c best.pt --data 'shards/{000000..000099}.tar' --dataset webdataset \\
      --out preds.jsonl --top-k 3 --scores
  cdul-predict -c best.pt --data data/VOCdevkit --dataset voc2012 --split val --out val.csv
"""


@click.command(help=HELP, context_settings=CONTEXT)
@version_option
@click.option("--checkpoint", "-c", required=True, help="A cdul-train checkpoint (best.pt, last.pt).")
@click.option("--data", required=True, help="Dataset root (path or fsspec URL); for webdataset, the shards.")
@option(
    "dataset",
    "--dataset",
    type=click.Choice(DATASETS),
    help="Layout of --data: folder is any folder of images (no labels needed).",
)
@option("split", "--split", help="Split to label (VOC: ImageSets/Main/<split>.txt; COCO: val or train).")
@click.option("--out", "-o", required=True, help="The table to write: preds.csv, preds.jsonl or preds.parquet.")
@common.decision_options
@option("scores", "--scores", is_flag=True, help="Add every class's score to each row.")
@option("limit", "--limit", type=click.IntRange(min=1), help="Only the first N images.")
@option(
    "part_size",
    "--part-size",
    type=click.IntRange(min=1),
    help="Images a finished part holds: what a killed run can lose.",
)
@common.batch_size_option("Images per forward pass.", record=api.predict)
@common.workers_option("DataLoader processes decoding images.")
@common.device_option
@common.amp_option("Mixed precision on CUDA (part of the settings a resumed run must keep).")
@follow_symlinks_option
@option(
    "overwrite",
    "--overwrite",
    is_flag=True,
    help="Drop the parts of an earlier run with other settings and start over.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar; print only the summary line.")
def main(
    checkpoint,
    data,
    dataset,
    split,
    out,
    decision,
    scores,
    limit,
    part_size,
    batch_size,
    workers,
    device,
    amp,
    follow_symlinks,
    overwrite,
    quiet,
):
    try:
        summary = api.predict(
            checkpoint=checkpoint,
            data=data,
            out=out,
            dataset=dataset,
            split=split,
            threshold=decision.threshold,
            top_k=decision.top_k,
            scores=scores,
            limit=limit,
            part_size=part_size,
            batch_size=batch_size,
            workers=workers,
            device=device,
            amp=amp,
            follow_symlinks=follow_symlinks,
            overwrite=overwrite,
            quiet=quiet,
        )
    except api.CdulError as exc:
        fail(str(exc), exc.code)
    report(summary, quiet)


def report(summary, quiet: bool) -> None:
    if not quiet and summary.failures:
        rows = summary.failures + ([("...", "")] if summary.failed > len(summary.failures) else [])
        click.echo(table(rows, ("failed image", "why")))
    kept = f", {summary.parts_kept} of {summary.parts} parts from an earlier run" if summary.parts_kept else ""
    rate = f", {summary.images_per_s:.1f} img/s" if summary.scored else ""
    click.echo(
        f"{summary.images} images labelled ({summary.failed} failed; {summary.rule}) -> {summary.out}{kept}{rate}"
    )


if __name__ == "__main__":
    main()
