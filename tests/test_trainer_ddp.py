"""cdul-train under torchrun with two CPU ranks (gloo): ranks own whole chunks of uneven
size (8, 8 and 4 images: uneven batch counts), every round is written once and completely,
and the run finishes instead of hanging."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from test_trainer_cli import extract
from train_runs import CDUL_TRAIN, two_rank_args

from cdul.store import Store, layout

BIN = os.path.dirname(sys.executable)


@pytest.mark.slow
def test_two_ranks_write_each_round_once(voc_root, tmp_path):
    store = extract(voc_root, str(tmp_path / "voc.zarr"))
    before = Store.open(store).read(layout.round_name(0))
    out = str(tmp_path / "run")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        os.path.join(BIN, "torchrun"),
        "--standalone",
        "--nproc_per_node",
        "2",
        CDUL_TRAIN,
        *two_rank_args(store, out, voc_root),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    s = Store.open(store)
    assert s.label_rounds() == [0, 1, 2]
    ok = s.read(layout.STATUS) == layout.OK
    for k in (1, 2):
        y = s.read(layout.round_name(k))
        assert np.isfinite(y[ok]).all()
        moved = (y != s.read(layout.round_name(k - 1))).any(axis=1)
        assert moved[ok].all(), np.flatnonzero(ok & ~moved)  # every chunk, from both ranks
    assert not np.array_equal(before, s.read(layout.round_name(2)))
    rows = [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))]
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    assert all(r["images"] == int(ok.sum()) and r["val_images"] == 20 for r in rows[1:])
    assert os.path.isfile(os.path.join(out, "last.pt"))
