"""cdul-train as the tests run it: a small network with random weights at 32 px on the CPU."""

from __future__ import annotations

import os
import sys

from click.testing import CliRunner

from cdul.cli.common import option_args

CDUL_TRAIN = os.path.join(os.path.dirname(sys.executable), "cdul-train")
SMALL = {
    "arch": "resnet18",
    "weights": "none",
    "img_size": 32,
    "device": "cpu",
    "batch_size": 4,
    "lr": "1e-3",
    "quiet": True,
}


def train_args(store, out_dir, **options) -> list[str]:
    """The arguments of a cdul-train run of ``store`` into ``out_dir``: the SMALL settings as
    ``options`` change them (underscores for dashes; True gives a flag, None or False leaves
    the option out, to cdul-train's default)."""
    return ["--store", str(store), "--out-dir", str(out_dir), *option_args({**SMALL, **options})]


def train(store, out_dir, **options):
    """That run in this process, through click's CliRunner (its exceptions are caught)."""
    from cdul.cli.train import main

    return CliRunner().invoke(main, train_args(store, out_dir, **options), catch_exceptions=True)


def two_rank_args(store, out_dir, voc_root) -> list[str]:
    """The run the tests train with two ranks (torchrun on one node, or two nodes): batches of 3,
    two epochs, scored on the training images."""
    return train_args(store, out_dir, batch_size=3, epochs=2, workers=0, val_data=voc_root, val_split="train")
