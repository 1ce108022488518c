"""cdul-train and cdul-eval driven as a user would: extract a tiny VOC store, train two
epochs of a small network at 32 px on the CPU, score it; and the one-line refusals."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from extract_runs import extract_args
from train_runs import train
from voc_fixtures import make_label_store

from cdul.cli.eval import main as eval_main
from cdul.store import Store, layout
from cdul.trainer import checkpoint as ckpt_io
from cdul.trainer.model import new_model

BIN = os.path.dirname(sys.executable)


def extract(voc_root: str, out: str) -> str:
    subprocess.run(
        [
            os.path.join(BIN, "cdul-extract"),
            *extract_args(voc_root, out, dataset="voc2012", split="train", chunk_len=8, quiet=True),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return out


@pytest.fixture(scope="session")
def pristine_store(voc_root, tmp_path_factory) -> str:
    return extract(voc_root, str(tmp_path_factory.mktemp("extract") / "voc.zarr"))


@pytest.fixture()
def store_copy(pristine_store, tmp_path) -> str:
    dst = str(tmp_path / "voc.zarr")
    shutil.copytree(pristine_store, dst)
    return dst


@pytest.fixture(scope="module")
def trained(pristine_store, voc_root, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("run")
    store = str(tmp / "voc.zarr")
    shutil.copytree(pristine_store, store)
    run = str(tmp / "run")
    result = train(
        store, run, val_data=voc_root, val_split="train", epochs=2, warmup=0, update_every=1, workers=1, augment=True
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    return store, run


@pytest.mark.slow
def test_rounds_are_written_with_their_provenance(trained):
    store = Store.open(trained[0])
    assert store.label_rounds() == [0, 1, 2]
    ok = store.read(layout.STATUS) == layout.OK
    y0 = store.read(layout.round_name(0))
    for k in (1, 2):
        attrs = store.round_array(k).attrs.asdict()
        assert attrs["epoch"] == k and attrs["source"] == "cdul-train" and attrs["complete"]
        assert attrs["loss"] == "kl" and attrs["label_lr"] == 1.0 and attrs["psi_mu"] == 0.5
        assert attrs["psi_sigma"] == 1.0 and attrs["zeta"] == 0.5 and attrs["lam"] == 0.0
        yk = store.read(layout.round_name(k))
        assert np.isfinite(yk[ok]).all() and (yk[ok] > 0).all() and (yk[ok] < 1).all()
        assert np.abs(yk[ok] - y0[ok]).max() > 1e-4


@pytest.mark.slow
def test_metrics_and_checkpoints_are_sane(trained):
    _, run = trained
    for name in ("last.pt", "best.pt", "metrics.jsonl", "metrics.csv"):
        assert os.path.isfile(os.path.join(run, name)), name
    assert not [f for f in os.listdir(run) if f.startswith(".tmp")]
    rows = [json.loads(line) for line in open(os.path.join(run, "metrics.jsonl"))]
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    for r in rows[1:]:
        assert r["images"] == 20 and r["steps"] == 5 and r["skipped_steps"] == 0
        assert np.isfinite(r["loss"]) and r["images_per_s"] > 0
        assert 0 <= r["val_map"] <= 100 and 0 <= r["pseudo_map"] <= 100 and 0 <= r["val_OF1"] <= 1
        assert r["label_round_written"] == r["epoch"] and r["peak_label_chunks"] <= 3
    assert rows[0]["pseudo_map"] > 0
    header = open(os.path.join(run, "metrics.csv")).readline().strip().split(",")
    assert {"epoch", "loss", "val_map", "pseudo_map", "skipped_steps"} <= set(header)


@pytest.mark.slow
def test_checkpoint_round_trips_with_weights_only(trained):
    _, run = trained
    ckpt = torch.load(os.path.join(run, "last.pt"), map_location="cpu", weights_only=True)
    assert ckpt["epoch"] == 2 and ckpt["label_round"] == 2 and len(ckpt["classes"]) == 20
    assert ckpt["config"]["arch"] == "resnet18" and ckpt["img_size"] == 32
    model = new_model(ckpt["arch"], len(ckpt["classes"]))
    model.load_state_dict(ckpt["model"])
    state = ckpt_io.rng_state()
    ckpt_io.set_rng_state(ckpt["rng"])
    a = torch.rand(3)
    ckpt_io.set_rng_state(ckpt["rng"])
    torch.testing.assert_close(torch.rand(3), a)
    ckpt_io.set_rng_state(state)


@pytest.mark.slow
def test_eval_writes_report_and_plots(trained, voc_root, tmp_path):
    _, run = trained
    out, plots = str(tmp_path / "report.json"), str(tmp_path / "plots")
    result = CliRunner().invoke(
        eval_main,
        [
            "--checkpoint",
            os.path.join(run, "best.pt"),
            "--data",
            voc_root,
            "--split",
            "train",
            "--out",
            out,
            "--plots",
            plots,
            "--device",
            "cpu",
            "--workers",
            "0",
        ],
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "mAP" in result.output and "person" in result.output
    report = json.load(open(out))
    assert 0 <= report["map"] <= 100 and len(report["ap"]) == 20 and "CF1" in report and "OF1" in report
    best = [json.loads(line) for line in open(os.path.join(run, "metrics.jsonl")) if '"best": true' in line][-1]
    assert report["map"] == pytest.approx(best["val_map"], abs=1e-6)
    for name in ("pr_curves.png", "per_class_ap.png"):
        with open(os.path.join(plots, name), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_non_finite_loss_skips_the_step_and_keeps_the_labels(store_copy, tmp_path, monkeypatch):
    from cdul.trainer import labels

    original, calls = labels.per_sample_loss, []

    def first_batch_nan(logits, y, kind="kl"):
        calls.append(1)
        out = original(logits, y, kind)
        return out * float("nan") if len(calls) == 1 else out

    monkeypatch.setattr(labels, "per_sample_loss", first_batch_nan)
    run = str(tmp_path / "run")
    result = train(store_copy, run, epochs=1, workers=0)
    assert result.exit_code == 0, result.output + repr(result.exception)
    record = [json.loads(line) for line in open(os.path.join(run, "metrics.jsonl"))][-1]
    assert record["skipped_steps"] == 1 and record["steps"] == 5
    store = Store.open(store_copy)
    y0, y1 = store.read(layout.round_name(0)), store.read(layout.round_name(1))
    unchanged = (y0 == y1).all(axis=1)
    assert unchanged.sum() == 4  # the first batch only


def test_refusals_are_one_line(store_copy, voc_root, tmp_path, monkeypatch):
    def refused(result, *words):
        assert result.exit_code == 1 and isinstance(result.exception, SystemExit), repr(result.exception)
        lines = [line for line in result.output.strip().splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("Error"), result.output
        for w in words:
            assert w in lines[0], lines[0]

    run = str(tmp_path / "run")
    refused(train(tmp_path / "nope.zarr", run), "no cdul store")
    refused(train(store_copy, run, val_data=tmp_path), "--val-data")

    import torch.hub

    def offline(url, dst, *a, **k):
        raise OSError("[Errno -2] Name or service not known")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    refused(train(store_copy, run, weights="imagenet"), "--weights PATH")

    empty = make_label_store(str(tmp_path / "empty.zarr"), ["a.png", "b.png"], ["x", "y"], np.full((2, 2), 0.5))
    empty.drop_rounds_after(-1)
    refused(train(empty.url, run), "no complete label round")

    assert train(store_copy, run, epochs=1, workers=0).exit_code == 0
    refused(train(store_copy, run, epochs=1, workers=0), "--resume")
    refused(train(store_copy, run, epochs=1, workers=0, resume=True, lr="1e-2"), "--lr")


def test_images_from_an_fsspec_url(store_copy, voc_root, tmp_path):
    import fsspec

    fs = fsspec.filesystem("memory")
    base = os.path.join(voc_root, "VOCdevkit", "VOC2012", "JPEGImages")
    for name in os.listdir(base):
        fs.pipe_file(f"/vocmem/JPEGImages/{name}", open(os.path.join(base, name), "rb").read())
    run = str(tmp_path / "run")
    result = train(store_copy, run, data="memory://vocmem", epochs=1, workers=0)
    assert result.exit_code == 0, result.output + repr(result.exception)
    record = [json.loads(line) for line in open(os.path.join(run, "metrics.jsonl"))][-1]
    assert record["images"] == 20 and record["unreadable"] == 0
    fs.rm("/vocmem", recursive=True)


def test_early_stop_after_three_rounds_below_round_zero(store_copy, tmp_path, monkeypatch):
    from cdul.trainer import loop

    monkeypatch.setattr(loop, "pseudo_label_map", lambda store, k, **_: 50.0 if k == 0 else 40.0)
    run = str(tmp_path / "run")
    result = train(store_copy, run, epochs=6, early_stop=True, workers=0)
    assert result.exit_code == 0, result.output + repr(result.exception)
    rows = [json.loads(line) for line in open(os.path.join(run, "metrics.jsonl"))]
    assert [r["epoch"] for r in rows] == [0, 1, 2, 3] and rows[-1]["rounds_below_initial"] == 3
    assert torch.load(os.path.join(run, "last.pt"), weights_only=True)["epoch"] == 3


def test_weights_from_a_state_dict_file(tmp_path):
    from cdul.trainer.model import WeightsError, build_classifier

    torch.manual_seed(1)
    imagenet_like = new_model("resnet18", 1000).state_dict()
    path = str(tmp_path / "r18.pth")
    torch.save(imagenet_like, path)
    model, how = build_classifier("resnet18", 20, path)
    assert torch.equal(model.conv1.weight, imagenet_like["conv1.weight"])
    assert model.fc.out_features == 20 and "new 20-class head" in how
    with pytest.raises(WeightsError, match="does not fit"):
        build_classifier("resnet34", 20, path)
    with pytest.raises(WeightsError, match="no such file"):
        build_classifier("resnet18", 20, str(tmp_path / "missing.pth"))
