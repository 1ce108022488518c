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


@pytest.mark.slow
def test_every_rank_stops_when_rank_0_cannot_lock_the_store(voc_root, tmp_path):
    """Rank 0 is refused the store's lock (another process holds it): every rank ends with
    the refusal at once, none waits at a barrier for a rank 0 that has left."""
    store = extract(voc_root, str(tmp_path / "voc.zarr"))
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time; from cdul.store import StoreLock; "
            f"l = StoreLock({store!r}); l.acquire(); print('held', flush=True); time.sleep(300)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        cmd = [os.path.join(BIN, "torchrun"), "--standalone", "--nproc_per_node", "2", CDUL_TRAIN]
        cmd += two_rank_args(store, str(tmp_path / "run"), voc_root)
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    finally:
        holder.kill()
        holder.wait()
    assert proc.returncode != 0
    assert "in use" in proc.stderr and "rank 0 could not lock the store" in proc.stderr, proc.stderr[-3000:]
    ours = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]  # torchrun's own report follows
    assert len(ours) == 2 and any("rank 0 could not lock" in line for line in ours), proc.stderr[-3000:]
    assert Store.open(store).label_rounds() == [0]
