"""cdul-report: an HTML and markdown report of a store, and of a training run on it."""

from __future__ import annotations

import csv

import click

from .common import CONTEXT, fail, version_option, warn_random_store


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
@click.option(
    "--sources",
    "sources_csv",
    default=None,
    help="A CSV of image id and a word per image (columns id,source; e.g. photo or filler), shown as a "
    "column of the per-image table. E.g. --sources sample/sources.csv",
)
@click.option("--note", default=None, help="A paragraph about the data, shown under the report's header.")
def main(store_url, run_dir, eval_json, out_dir, images, sources_csv, note):
    """Write OUT/index.html, report.md, report.json and PNGs: pseudo-label mAP and its sweep
    over zeta, per-image top classes next to the ground truth, one image's tiles, training
    curves and per-class AP."""
    from cdul.report import write_report
    from cdul.store import StoreError

    try:
        sources = read_sources(sources_csv) if sources_csv else None
        index = write_report(out_dir, store_url, run_dir, eval_json, max_images=images, sources=sources, note=note)
    except (StoreError, OSError, ValueError) as exc:
        fail(str(exc))
    warn_random_store(store_url)
    click.echo(index)


def read_sources(path: str) -> dict[str, str]:
    """--sources: image id -> its word, from a CSV with columns id and source."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if rows and not {"id", "source"} <= set(rows[0]):
        raise ValueError(f"{path}: needs the columns id and source, found {', '.join(rows[0])}")
    return {row["id"]: row["source"] for row in rows}
