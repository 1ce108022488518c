"""The main job end to end on a sample that needs no download (see scripts/demo.sh)."""
from __future__ import annotations

import os
import sys

import click

from cdul.cli.common import CONTEXT, warn


def pick_weights(model: str, pretrained: str) -> str:
    """The real weights when open_clip can load them (cache or network), else random ones."""
    from cdul.extractor.clip_model import WeightsUnavailableError, register_model, resolve_weights

    try:
        resolve_weights(register_model(model), pretrained)
        return pretrained
    except WeightsUnavailableError as exc:
        warn(f"{exc}\nFalling back to random weights: every score below is meaningless. On a connected machine "
             f"the same command downloads the real {model} weights and gives real pseudo labels.")
        return "none"


@click.command(context_settings=CONTEXT)
@click.option("--out-dir", default="sample", help="Where the sample dataset, store and results go.")
@click.option("--model", default="ViT-B-32", help="CLIP architecture (small enough for a CPU).")
@click.option("--pretrained", default="openai", help="Weights tag; random weights if they cannot be loaded.")
@click.option("--gpus", default="auto", help="Devices for extraction (see cdul-extract --help).")
def main(out_dir, model, pretrained, gpus):
    """Build the sample (real photos shipped by scikit-image plus generated filler), then
    extract CLIP similarities and initial pseudo labels into a store."""
    from cdul.cli.extract import main as extract
    from cdul.sample import build_sample

    os.makedirs(out_dir, exist_ok=True)
    data_root = os.path.join(out_dir, "data")
    build_sample(data_root)
    weights = pick_weights(model, pretrained)
    args = [data_root, "--dataset", "voc2012", "--split", "train", "--out", os.path.join(out_dir, "sample.zarr"),
            "--model", model, "--pretrained", weights, "--gpus", gpus, "--overwrite"]
    click.echo("cdul-extract " + " ".join(args), err=True)
    extract.main(args, standalone_mode=False)


if __name__ == "__main__":
    sys.exit(main())
