"""cdul-export on stores written straight through the store API: what each --round reads,
the rows and columns of the table, the quality lines against the ground truth, the one-line
refusals, flat memory in the store's size, and a killed export that leaves nothing complete."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.metrics import average_precision_score, precision_score, recall_score

import cdul
from cdul.benchmarks.export_bench import synthetic_store
from cdul.cli.export import main as export_cli
from cdul.data.folder import load_folder
from cdul.labels import Decision, decide
from cdul.store import Store, layout

CDUL_EXPORT = os.path.join(os.path.dirname(sys.executable), "cdul-export")
FAILED_EVERY = 7


@pytest.fixture(scope="module")
def store_path(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("export") / "s.zarr")
    store = synthetic_store(path, 300, 4, chunk_len=64, failed_every=FAILED_EVERY)
    r0 = store.round_array(0)
    r0.attrs["zeta"] = 0.3  # S_ag must use the store's zeta, not the default
    arr = store.begin_round(1, {"source": "cdul-train", "epoch": 2})
    arr[:] = np.random.default_rng(5).random((300, 4)).astype(np.float32)
    store.finish_round(1)
    return path


def _read(path, name):
    return Store.open(path).read(name)


def _ok(path):
    return _read(path, layout.STATUS) == layout.OK


def _export(*args):
    return CliRunner().invoke(export_cli, list(map(str, args)), catch_exceptions=False)


@pytest.mark.parametrize("round_", ["latest", "1", "y0", "0", "S_g", "S_ag"])
def test_each_round_reads_its_scores(store_path, tmp_path, round_):
    expected = {
        "latest": lambda: _read(store_path, layout.round_name(1)),
        "1": lambda: _read(store_path, layout.round_name(1)),
        "y0": lambda: _read(store_path, layout.round_name(0)),
        "0": lambda: _read(store_path, layout.round_name(0)),
        "S_g": lambda: _read(store_path, layout.SIM_GLOBAL),
        "S_ag": lambda: np.where(  # paper Eq. 5 with the store's zeta (0.3)
            _read(store_path, layout.SIM_ALPHA) >= 0.3,
            _read(store_path, layout.SIM_ALPHA),
            _read(store_path, layout.SIM_BETA),
        ),
    }[round_]()
    out = tmp_path / "l.parquet"
    result = _export("--store", store_path, "--out", out, "--round", round_, "--scores", "-q")
    assert result.exit_code == 0, result.output
    import pyarrow.parquet as pq

    table = pq.read_table(out).to_pydict()
    ok = _ok(store_path)
    classes = Store.open(store_path).classes
    np.testing.assert_array_equal(np.array([table[f"score:{c}"] for c in classes]).T, expected[ok].astype(np.float32))
    kept = decide(expected[ok])
    assert table["labels"] == [[classes[j] for j in np.flatnonzero(row)] for row in kept]


def test_the_table_and_what_the_command_says(store_path, tmp_path):
    out = tmp_path / "labels.csv"
    result = _export("--store", store_path, "--out", out, "--top-k", "2")
    assert result.exit_code == 0, result.output
    ok, ids = _ok(store_path), Store.open(store_path).ids()
    n_failed = int((~ok).sum())
    assert n_failed == len(range(0, 300, FAILED_EVERY))
    data = load_folder(str(tmp_path), classes=Store.open(store_path).classes)
    assert data.ids == [i for i, good in zip(ids, ok) if good]
    kept = decide(_read(store_path, layout.round_name(1))[ok], Decision(top_k=2))
    np.testing.assert_array_equal(data.targets == 1, kept)
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"wrote {ok.sum()} images to {out} (round 1; labels: the top 2 classes; 2.00 classes")
    assert lines[1] == f"{n_failed} failed images left out (their reasons: images/error in the store)"
    # per-class precision and recall of the decisions and the scores' mAP, against scikit-learn
    truth = _read(store_path, layout.TARGETS)[ok] == 1
    scores = _read(store_path, layout.round_name(1))[ok]
    for j, line in enumerate(lines[4:8]):
        name, positives, decided, precision, recall = line.rsplit(None, 4)
        assert name == f"class {j}" and int(positives) == truth[:, j].sum() and int(decided) == kept[:, j].sum()
        assert float(precision) == pytest.approx(100 * precision_score(truth[:, j], kept[:, j]), abs=0.05)
        assert float(recall) == pytest.approx(100 * recall_score(truth[:, j], kept[:, j]), abs=0.05)
    ap = np.mean([average_precision_score(truth[:, j], scores[:, j]) for j in range(4)])
    assert lines[8] == f"mAP of the scores (round 1) against the store's ground truth: {100 * ap:.2f}"


def _damaged(tmp_path):
    path = str(tmp_path / "d.zarr")
    synthetic_store(path, 100, 3, chunk_len=32)
    os.remove(os.path.join(path, "sim", "global", "c", "1", "0"))
    return path


def _unfinished(tmp_path):
    path = str(tmp_path / "u.zarr")
    store = synthetic_store(path, 100, 3, chunk_len=32)
    store.array(layout.DONE)[2] = False
    store.set_attrs(complete=False)
    return path


@pytest.mark.parametrize(
    "case,args,needle",
    [
        ("unknown round", ["--round", "7"], "has no complete label round 7 (its complete rounds: 0, 1)"),
        ("bad round", ["--round", "best"], "--round 'best': give latest, a round number, y0, S_g or S_ag"),
        ("bad extension", ["--out", "{tmp}/labels.txt"], "unknown table format '.txt'; use .csv, .jsonl, .parquet"),
        ("top-k 0", ["--top-k", "0"], "--top-k must be a whole number >= 1, not 0"),
        ("threshold", ["--threshold", "1.5"], "--threshold must be a number in [0, 1], not 1.5"),
        ("both", ["--threshold", "0.5", "--top-k", "1"], "give --threshold or --top-k, not both"),
        ("no store", ["--store", "{tmp}/none.zarr"], "no cdul store at"),
        (
            "unfinished",
            ["--store", _unfinished],
            "is not finished (1 of 4 chunks still to extract): rerun the cdul-extract",
        ),
        ("damaged", ["--store", _damaged], "is damaged: sim/global, chunk 1"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(store_path, tmp_path, case, args, needle):
    args = [a(tmp_path) if callable(a) else a.format(tmp=tmp_path) for a in args]
    result = _export("--store", store_path, "--out", tmp_path / "l.csv", *args)
    assert result.exit_code == 1, result.output
    assert result.output.strip().startswith("Error: ") and len(result.output.strip().splitlines()) == 1
    assert needle in result.output, result.output
    assert not [f for f in os.listdir(tmp_path) if "l." in f or "labels" in f]


def test_the_api_raises_the_same_line(store_path, tmp_path):
    with pytest.raises(cdul.CdulError, match="has no complete label round 7") as info:
        cdul.export(store=store_path, out=tmp_path / "l.csv", round=7)
    assert info.value.code == 1
    result = cdul.export(store=store_path, out=tmp_path / "l.jsonl", round="y0", threshold=0.2)
    assert result.source == "round 0" and result.images == _ok(store_path).sum() and result.failed > 0
    assert result.map is not None and len(result.classes) == 4


def _peak_rss_mb(store: str, out: str) -> float:
    """Peak resident memory of an export in a fresh process: VmHWM, which starts afresh at
    exec (getrusage's ru_maxrss keeps the forking parent's peak, here pytest's with torch)."""
    code = (
        "import sys, cdul\n"
        "cdul.export(store=sys.argv[1], out=sys.argv[2], scores=True)\n"
        "print(next(line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM:')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code, store, out], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return float(done.stdout.split()[-1]) / 1024  # kB


@pytest.fixture(scope="module")
def big_store(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("big") / "big.zarr")
    synthetic_store(path, 20_000, 3, chunk_len=512, failed_every=97)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("classes", [3, 200])
def test_memory_stays_flat_in_the_store_size(big_store, tmp_path, classes):
    """20,000 images against 2,000: with 3 classes and ground truth (the quality figures
    included), and with 200 classes and none, where a table held whole would take
    20,000 x 200 scores (16 MB as float32, 32 MB as the rule's float64) and fail the bound."""
    stores = {}
    for n in (2_000, 20_000):
        if n == 20_000 and classes == 3:
            stores[n] = big_store
            continue
        stores[n] = str(tmp_path / f"s{n}.zarr")
        synthetic_store(stores[n], n, classes, chunk_len=512, failed_every=97, truth=classes == 3)
    small_mb, big_mb = (_peak_rss_mb(stores[n], str(tmp_path / f"{n}.parquet")) for n in (2_000, 20_000))
    assert big_mb - small_mb < 30, (small_mb, big_mb)


@pytest.mark.slow
def test_a_killed_export_leaves_no_complete_looking_table(big_store, tmp_path):
    out = tmp_path / "labels.csv"
    proc = subprocess.Popen([CDUL_EXPORT, "--store", big_store, "--out", str(out), "--scores", "-q"])
    partial = tmp_path / f".labels.csv.partial-{proc.pid}"
    deadline = time.time() + 60
    while not partial.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert partial.exists() and not out.exists()
    assert os.listdir(tmp_path) == [partial.name]
