"""An interrupted run resumed with --resume ends with exactly the weights, optimizer state
and label rounds of the same run left alone (CPU, same process, same thread count).

Interruptions are injected with monkeypatch: a crash after a label round was finished but
before the checkpoint that knows it, and a crash halfway through writing a round."""

import json
import os
import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from test_trainer_cli import extract
from train_runs import train

from cdul.cli.eval import main as evaluate
from cdul.store import Store, layout
from cdul.trainer import checkpoint as ckpt_io
from cdul.trainer import stream as stream_mod

pytestmark = pytest.mark.slow  # whole training runs, interrupted and resumed

RUN = {"epochs": 3, "warmup": 1, "update_every": 1, "augment": True, "workers": 0, "seed": 7}
TIMING = {"seconds", "images_per_s"}


class Crash(Exception):
    pass


@pytest.fixture(scope="module")
def pristine(voc_root, tmp_path_factory):
    return extract(voc_root, str(tmp_path_factory.mktemp("resume") / "voc.zarr"))


def run(store, out, **options):
    return train(store, out, **RUN, **options)


@pytest.fixture(scope="module")
def reference(pristine, voc_root, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("uninterrupted")
    store = str(tmp / "voc.zarr")
    shutil.copytree(pristine, store)
    result = run(store, str(tmp / "run"), val_data=voc_root, val_split="train")
    assert result.exit_code == 0, result.output + repr(result.exception)
    return store, str(tmp / "run")


def crash_before_checkpoint(monkeypatch, epoch):
    original = ckpt_io.save_checkpoint

    def save(state, path):
        if state["epoch"] == epoch:
            raise Crash(f"killed before the checkpoint of epoch {epoch}")
        original(state, path)

    monkeypatch.setattr(ckpt_io, "save_checkpoint", save)


def crash_mid_round(monkeypatch, epoch):
    original = stream_mod.LabelStream.flush

    def flush(self):
        if self.epoch == epoch and self.out is not None and self.chunks_written >= 1 and self._done:
            raise Crash(f"killed while writing the round of epoch {epoch}")
        original(self)

    monkeypatch.setattr(stream_mod.LabelStream, "flush", flush)


@pytest.mark.parametrize("interrupt", [crash_before_checkpoint, crash_mid_round])
def test_resume_reproduces_the_uninterrupted_run(interrupt, pristine, reference, voc_root, tmp_path, monkeypatch):
    store, out = str(tmp_path / "voc.zarr"), str(tmp_path / "run")
    shutil.copytree(pristine, store)
    val = {"val_data": voc_root, "val_split": "train"}
    with monkeypatch.context() as patch:
        interrupt(patch, 2)
        result = run(store, out, **val)
    assert isinstance(result.exception, Crash), result.output + repr(result.exception)
    assert torch.load(os.path.join(out, "last.pt"), weights_only=True)["epoch"] == 1
    crashed = Store.open(store)
    # epoch 1 was the warmup; epoch 2 (partly) wrote round 1 after the last checkpoint
    assert crashed.has(layout.round_name(1))
    assert (1 in crashed.label_rounds()) == (interrupt is crash_before_checkpoint)

    resumed = run(store, out, resume=True, **val)
    assert resumed.exit_code == 0, resumed.output + repr(resumed.exception)
    assert_same_run(reference, store, out)


def test_overwrite_starts_the_run_over(pristine, reference, voc_root, tmp_path):
    """A second run into the same --out-dir: refused, then --overwrite drops the first run's
    files and label rounds (nothing else) and retraces the run from round 0."""
    store, out = str(tmp_path / "voc.zarr"), str(tmp_path / "run")
    shutil.copytree(pristine, store)
    val = {"val_data": voc_root, "val_split": "train"}
    assert run(store, out, **val).exit_code == 0
    with open(os.path.join(out, "notes.txt"), "w") as f:
        f.write("mine")
    again = run(store, out, **val)
    assert again.exit_code == 1 and "--overwrite" in again.output
    both = run(store, out, resume=True, overwrite=True, **val)
    assert both.exit_code == 2 and "pass one" in both.output
    result = train(store, out, **{**RUN, "quiet": False}, overwrite=True, **val)
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "--overwrite: removed last.pt, best.pt, metrics.jsonl, metrics.csv" in result.output
    assert "written by the run --overwrite replaces: starting again from round 0" in result.output
    assert open(os.path.join(out, "notes.txt")).read() == "mine"
    assert_same_run(reference, store, out)
    # the store came from random CLIP weights: cdul-train and cdul-eval of its checkpoint say so once
    evaluated = CliRunner().invoke(
        evaluate, ["--checkpoint", os.path.join(out, "best.pt"), "--data", voc_root, "--split", "train", "-q"]
    )
    assert evaluated.exit_code == 0, evaluated.output
    for output in (result.stderr, evaluated.stderr):
        assert sum("comes from a CLIP with random weights" in line for line in output.splitlines()) == 1, output


def assert_same_run(reference, store, out):
    """The run in ``out`` on ``store`` ended exactly as the uninterrupted reference run."""
    ref_store, ref_out = reference
    a = torch.load(os.path.join(ref_out, "last.pt"), weights_only=True)
    b = torch.load(os.path.join(out, "last.pt"), weights_only=True)
    assert a["epoch"] == b["epoch"] == 3 and a["label_round"] == b["label_round"] == 2
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    for pid, state in a["optimizer"]["state"].items():
        for key, value in state.items():
            assert torch.equal(value, b["optimizer"]["state"][pid][key]), (pid, key)
    assert a["scheduler"] == b["scheduler"]

    sa, sb = Store.open(ref_store), Store.open(store)
    assert sa.label_rounds() == sb.label_rounds() == [0, 1, 2]
    for k in (1, 2):
        np.testing.assert_array_equal(sa.read(layout.round_name(k)), sb.read(layout.round_name(k)))
        assert sb.round_array(k).attrs["epoch"] == k + 1

    def metrics(path):
        rows = [json.loads(line) for line in open(os.path.join(path, "metrics.jsonl"))]
        return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]

    assert metrics(out) == metrics(ref_out)
