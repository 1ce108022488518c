"""cdul-train killed with SIGKILL at random moments: what is on disk is never half-written
(checkpoints load, visible rounds are complete), and --resume ends exactly where an
uninterrupted run ends (CPU, same thread count)."""
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from cdul.store import Store, layout

from test_trainer_cli import extract

BIN = os.path.dirname(sys.executable)
ARGS = ["--arch", "resnet18", "--weights", "none", "--img-size", "32", "--device", "cpu", "--batch-size", "4",
        "--lr", "1e-3", "--epochs", "8", "--warmup", "0", "--update-every", "1", "--workers", "0", "--seed", "3",
        "--quiet"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def train(store, out, *extra, timeout=300):
    return subprocess.run([os.path.join(BIN, "cdul-train"), "--store", store, "--out-dir", out, *ARGS, *extra],
                          capture_output=True, text=True, env=ENV, timeout=timeout)


@pytest.fixture(scope="module")
def pristine(voc_root, tmp_path_factory):
    return extract(voc_root, str(tmp_path_factory.mktemp("ft") / "voc.zarr"))


@pytest.fixture(scope="module")
def reference(pristine, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ft-ref")
    store = str(tmp / "voc.zarr")
    shutil.copytree(pristine, store)
    r = train(store, str(tmp / "run"))
    assert r.returncode == 0, r.stderr
    return store, str(tmp / "run")


def check_nothing_half_written(store, out):
    s = Store.open(store)
    ok = s.read(layout.STATUS) == layout.OK
    for k in s.label_rounds():  # visible rounds are whole
        assert np.isfinite(s.read(layout.round_name(k))[ok]).all(), f"round {k} is visible but incomplete"
        assert s.round_array(k).attrs["complete"] is True
    for name in ("last.pt", "best.pt"):
        path = os.path.join(out, name)
        if os.path.exists(path):
            torch.load(path, weights_only=True)  # never truncated
    return s.label_rounds()


@pytest.mark.parametrize("seed", [0, 1])
def test_kill_at_a_random_moment_then_resume(pristine, reference, tmp_path, seed):
    store, out = str(tmp_path / "voc.zarr"), str(tmp_path / "run")
    shutil.copytree(pristine, store)
    proc = subprocess.Popen([os.path.join(BIN, "cdul-train"), "--store", store, "--out-dir", out, *ARGS],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    time.sleep(random.Random(seed).uniform(4.5, 8.0))
    assert proc.poll() is None, "the run ended before the kill: nothing was tested"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    check_nothing_half_written(store, out)
    resumed = train(store, out, *(["--resume"] if os.path.exists(os.path.join(out, "last.pt")) else []))
    assert resumed.returncode == 0, resumed.stderr
    ref_store, ref_out = reference
    a = torch.load(os.path.join(ref_out, "last.pt"), weights_only=True)
    b = torch.load(os.path.join(out, "last.pt"), weights_only=True)
    assert a["epoch"] == b["epoch"] == 8
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    assert check_nothing_half_written(store, out) == Store.open(ref_store).label_rounds() == list(range(9))
    for k in range(1, 9):
        np.testing.assert_array_equal(Store.open(store).read(layout.round_name(k)),
                                      Store.open(ref_store).read(layout.round_name(k)))


def test_a_damaged_store_is_refused_with_one_line(pristine, tmp_path):
    store = str(tmp_path / "voc.zarr")
    shutil.copytree(pristine, store)
    with open(os.path.join(store, "sim", "beta", "c", "1", "0"), "r+b") as f:
        f.truncate(10)
    r = train(store, str(tmp_path / "run"))
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 1 and len(lines) == 1 and "sim/beta, chunk 1" in lines[0], r.stderr
