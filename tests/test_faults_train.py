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
import train_runs
from test_trainer_cli import extract
from train_runs import CDUL_TRAIN, train_args

from cdul.store import Store, layout

pytestmark = pytest.mark.slow  # trainer runs killed and resumed

BIN = os.path.dirname(sys.executable)
RUN = {"epochs": 8, "warmup": 0, "update_every": 1, "workers": 0, "seed": 3}
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def train(store, out, timeout=300, **options):
    return subprocess.run(
        [CDUL_TRAIN, *train_args(store, out, **{**RUN, **options})],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=timeout,
    )


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
    proc = subprocess.Popen(
        [CDUL_TRAIN, *train_args(store, out, **RUN)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=ENV,
    )
    time.sleep(random.Random(seed).uniform(4.5, 8.0))
    assert proc.poll() is None, "the run ended before the kill: nothing was tested"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    check_nothing_half_written(store, out)
    resumed = train(store, out, resume=os.path.exists(os.path.join(out, "last.pt")))
    assert resumed.returncode == 0, resumed.stderr
    ref_store, ref_out = reference
    a = torch.load(os.path.join(ref_out, "last.pt"), weights_only=True)
    b = torch.load(os.path.join(out, "last.pt"), weights_only=True)
    assert a["epoch"] == b["epoch"] == 8
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    assert check_nothing_half_written(store, out) == Store.open(ref_store).label_rounds() == list(range(9))
    for k in range(1, 9):
        np.testing.assert_array_equal(
            Store.open(store).read(layout.round_name(k)), Store.open(ref_store).read(layout.round_name(k))
        )


def test_a_damaged_store_is_refused_with_one_line(pristine, tmp_path):
    store = str(tmp_path / "voc.zarr")
    shutil.copytree(pristine, store)
    with open(os.path.join(store, "sim", "beta", "c", "1", "0"), "r+b") as f:
        f.truncate(10)
    r = train(store, str(tmp_path / "run"))
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 1 and len(lines) == 1 and "sim/beta, chunk 1" in lines[0], r.stderr


def _store_with_labels(pristine, tmp_path, edit, round_k=0):
    """A copy of the store whose label round round_k (0, or a new round 1 made from it) is edited."""
    store = str(tmp_path / "voc.zarr")
    shutil.copytree(pristine, store)
    s = Store.open(store, mode="r+")
    labels = s.read(layout.round_name(0))
    edit(labels)
    arr = s.begin_round(round_k, {"source": "test"}) if round_k else s.round_array(0)
    arr[:] = labels
    if round_k:
        s.finish_round(round_k)
    return store


def _one_line_refusal(r, *needles):
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 1 and len(lines) == 1, r.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_round_with_labels_that_are_not_finite_is_refused(pristine, tmp_path, bad):
    def spoil(labels):
        labels[3] = bad

    # a training round: more than the tolerated share
    r = train(_store_with_labels(pristine, tmp_path, spoil, round_k=1), str(tmp_path / "run"), epochs=1)
    _one_line_refusal(r, "labels/round_001", "1 of 20", "not finite", "image 3")
    r = train(_store_with_labels(pristine, tmp_path / "all", lambda y: y.fill(bad), round_k=1), str(tmp_path / "r2"))
    _one_line_refusal(r, "20 of 20", "not finite")
    # round 0 is computed from finite scores: not finite there is damage, repaired by cdul-extract
    r = train(_store_with_labels(pristine, tmp_path / "r0", spoil), str(tmp_path / "r3"))
    _one_line_refusal(r, "labels/round_000", "not finite", "image 3")
    assert not any(os.path.exists(tmp_path / run / "last.pt") for run in ("run", "r2", "r3"))


def test_labels_outside_the_unit_interval_are_clipped(pristine, tmp_path):
    def spoil(labels):
        labels[2, :3] = -5.0
        labels[5, 4] = 7.0

    store = _store_with_labels(pristine, tmp_path, spoil)
    r = train(store, str(tmp_path / "run"), epochs=1, label_lr=0)
    assert r.returncode == 0, r.stderr
    y1 = Store.open(store).read(layout.round_name(1))
    assert (y1 >= 0).all() and (y1 <= 1).all()


def test_a_diverging_run_stops_with_an_error_and_keeps_batchnorm_clean(pristine, tmp_path, monkeypatch):
    from cdul.trainer import labels, loop

    original, seen = labels.per_sample_loss, []
    monkeypatch.setattr(labels, "per_sample_loss", lambda z, y, kind="kl": original(z, y, kind) * float("nan"))
    real_check = loop.check_finite

    def spy(model, what):
        seen.extend(int(m.num_batches_tracked) for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
        real_check(model, what)

    monkeypatch.setattr(loop, "check_finite", spy)
    store = str(tmp_path / "voc.zarr")
    shutil.copytree(pristine, store)
    run = str(tmp_path / "run")
    r = train_runs.train(store, run, **{**RUN, "epochs": 2})
    assert r.exit_code == 1 and "diverged" in r.output and "Traceback" not in r.output, r.output
    assert seen and set(seen) == {0}  # no skipped step moved the BatchNorm statistics
    assert not os.path.exists(os.path.join(run, "last.pt"))


def test_eval_refuses_a_model_that_is_not_finite(reference, voc_root, tmp_path):
    from cdul.trainer import checkpoint as ckpt_io

    ckpt = ckpt_io.load_checkpoint(os.path.join(reference[1], "last.pt"))
    ckpt["model"]["bn1.running_var"][:] = float("nan")
    path = str(tmp_path / "nan.pt")
    ckpt_io.atomic_save(ckpt, path)
    r = subprocess.run(
        [
            os.path.join(BIN, "cdul-eval"),
            "--checkpoint",
            path,
            "--data",
            voc_root,
            "--split",
            "train",
            "--device",
            "cpu",
            "--workers",
            "0",
        ],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
    )
    _one_line_refusal(r, "not finite", "bn1.running_var")


def test_a_full_disk_during_training_is_one_line(pristine, tmp_path, monkeypatch):
    import errno

    from cdul.trainer import checkpoint as ckpt_io

    def full(state, path):
        raise OSError(errno.ENOSPC, "No space left on device", path)

    monkeypatch.setattr(ckpt_io, "save_checkpoint", full)
    store = str(tmp_path / "voc.zarr")
    shutil.copytree(pristine, store)
    r = train_runs.train(store, str(tmp_path / "run"), **{**RUN, "epochs": 1})
    assert r.exit_code == 1, repr(r.exception)
    # the store's random-weights warning comes first; the failure itself is one line
    lines = [line for line in r.output.splitlines() if line.strip() and not line.startswith("warning: ")]
    assert len(lines) == 1 and "disk full" in lines[0] and "--resume" in lines[0], r.output


def test_rounds_of_an_attempt_killed_before_its_first_checkpoint_are_redone(pristine, tmp_path):
    """Killed after finishing a label round but before writing last.pt, a run is rerun without
    --resume (there is nothing to resume): it must start again from the round the killed
    attempt started from, not from the round that attempt wrote."""
    ref_store, ref_out = str(tmp_path / "ref.zarr"), str(tmp_path / "ref")
    shutil.copytree(pristine, ref_store)
    assert train(ref_store, ref_out, epochs=2).returncode == 0
    store, out = str(tmp_path / "voc.zarr"), str(tmp_path / "run")
    shutil.copytree(pristine, store)
    s = Store.open(store, mode="r+")
    orphan = s.begin_round(1, {"source": "cdul-train", "run": os.path.abspath(out), "from_round": 0, "epoch": 1})
    orphan[:] = np.clip(s.read(layout.round_name(0)) + 0.2, 0, 1)
    s.finish_round(1)
    r = train(store, out, epochs=2)
    assert r.returncode == 0, r.stderr
    a = torch.load(os.path.join(ref_out, "last.pt"), weights_only=True)
    b = torch.load(os.path.join(out, "last.pt"), weights_only=True)
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    np.testing.assert_array_equal(
        Store.open(store).read(layout.round_name(1)), Store.open(ref_store).read(layout.round_name(1))
    )
