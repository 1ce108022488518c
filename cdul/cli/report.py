"""cdul-report: an HTML and markdown report of a store, and of a training run on it."""

from __future__ import annotations

import click

from .common import CONTEXT, fail, version_option


@click.command(context_settings=CONTEXT)
@version_option
@click.option("--store", "store_url", required=True, help="Store written by cdul-extract.")
@click.option("--run", "run_dir", default=None, help="A cdul-train run folder (training curves).")
@click.option("--eval", "eval_json", default=None, help="A cdul-eval JSON report (per-class AP).")
@click.option(
    "--out",
    "out_dir",
    default="report",
    help="Report folder: new or empty, or one an earlier report wrote (its files are replaced, nothing "
    "else is touched).",
)
@click.option("--images", type=click.IntRange(min=0), default=24, help="Images in the per-image table.")
def main(store_url, run_dir, eval_json, out_dir, images):
    """Write OUT/index.html, report.md, report.json and PNGs: pseudo-label mAP and its sweep
    over zeta, per-image top classes next to the ground truth, one image's tiles, training
    curves and per-class AP."""
    from cdul.report import write_report
    from cdul.store import StoreError

    try:
        click.echo(write_report(out_dir, store_url, run_dir, eval_json, max_images=images))
    except (StoreError, OSError, ValueError) as exc:
        fail(str(exc))
