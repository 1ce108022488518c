"""cdul-extract as the tests run it: a small random-weight model on the CPU."""

from __future__ import annotations

from train_runs import option_args

TINY = {"model": "cdul-tiny-rn", "pretrained": "none", "gpus": "cpu"}


def extract_args(root, out, *extra, **options) -> list[str]:
    """The arguments of a cdul-extract run of the dataset at ``root`` into the store ``out``:
    the TINY settings as ``options`` change them (as ``train_runs.train_args`` reads them),
    then ``extra`` as given."""
    return [str(root), "--out", str(out), *option_args({**TINY, **options}), *map(str, extra)]
