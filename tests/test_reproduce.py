"""scripts/reproduce.sh: every benchmark's tree is read, the steps run end to end (tiny models),
a rerun skips what is done, and results.md sets the run beside the published numbers."""

import json
import os
import subprocess
import sys

import pytest
import zarr
from benchmark_trees import make_tree

from cdul.data import load_dataset
from cdul.reproduce.published import REPORTED
from cdul.reproduce.results import render, write_results
from cdul.reproduce.steps import SPLITS, Plan

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "reproduce.sh")
CDUL_EVAL = os.path.join(os.path.dirname(sys.executable), "cdul-eval")
BENCHMARKS = ("voc2012", "voc2007", "coco2014", "nuswide")


def reproduce(*args, cwd=None):
    return subprocess.run(["bash", SCRIPT, *map(str, args)], capture_output=True, text=True, timeout=400, cwd=cwd)


@pytest.mark.parametrize("kind", BENCHMARKS)
def test_each_benchmark_tree_reads_with_the_splits_the_steps_use(tmp_path, kind):
    root = make_tree(kind, str(tmp_path / kind), n=3)
    train, test = SPLITS[kind]
    for split in (train, test):
        ds = load_dataset(kind, root, split)
        assert len(ds) == 3 and ds.targets is not None
    commands = Plan(kind, root, str(tmp_path / "out")).commands()
    assert commands["extract"][commands["extract"].index("--split") + 1] == train
    assert commands["eval"][commands["eval"].index("--split") + 1] == test
    assert "RN50x64" in commands["extract"] and "resnet101" in commands["train"]


def test_results_table_by_hand(tmp_path):
    plan = Plan("coco2014", "data/coco", str(tmp_path))
    inputs = {
        "summary": {"images": 10, "ok": 9, "failed": 1, "pseudo_label_map": {"global": 61.25, "aggregated": 58.0}},
        "epochs": [
            {"epoch": 0, "pseudo_map": 60.0},
            {"epoch": 1, "loss": 0.12345, "pseudo_map": 62.0, "val_map": 55.55},
        ],
        "eval": {"map": 66.66, "epoch": 1, "images": 40, "ap_protocol": "all-points"},
    }
    text = render(plan, inputs)
    assert "| S_g, the global view | 61.2 |" in text and "| y0, the initial pseudo labels | - |" in text
    assert "9 of 10 training images read, 1 failed" in text
    assert "| 1 | 0.1235 | 62.0 | 55.5 |" in text and "Final: **66.7** mAP" in text
    assert (
        "| CDUL (reported by its authors) | 69.2 |" in text and "| PIAA (reported by its authors) | 73.0-74.6 |" in text
    )
    assert "| CCD (reported by its authors) | - |" in text and "all-points AP" in text
    empty = render(Plan("voc2007", "v", str(tmp_path)), {"summary": None, "epochs": [], "eval": None})
    assert "11-point AP" in empty and "| cdul, this run | - |" in empty  # nothing run yet, the default protocol
    assert {k: v["CDUL"] for k, v in REPORTED.items()} == {
        "voc2012": "88.6",
        "voc2007": None,
        "coco2014": "69.2",
        "nuswide": "44.0",
    }
    assert os.path.basename(write_results(plan)) == "results.md"


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["voc2007", "nuswide"])  # the full pipeline: the 11-point AP, the new reader
def test_smoke_run_end_to_end_then_resumed(tmp_path, kind):
    root = make_tree(kind, str(tmp_path / "data"), n=6)
    out = tmp_path / "run"
    first = reproduce(kind, root, "--out", out, "--smoke")
    assert first.returncode == 0, first.stderr[-2000:]
    for step in ("extract", "train", "eval"):
        assert (out / "done" / f"{step}.json").exists()
    evaluation = json.loads((out / "eval.json").read_text())
    protocol = "voc07-11pt" if kind == "voc2007" else "all-points"
    assert evaluation["ap_protocol"] == protocol
    assert zarr.open_group(str(out / "train.zarr"), mode="r").attrs["summary"]["pseudo_label_map"]["ap"] == protocol
    text = (out / "results.md").read_text()
    assert f"{evaluation['map']:.1f}" in text and "Smoke run" in text and "| 1 |" in text
    assert "| S_g, the global view | - |" not in text  # the store's pseudo-label mAP is there
    if kind == "voc2007":  # --ap chooses the other protocol
        args = ["--checkpoint", out / "run" / "best.pt", "--data", root, "--split", "test", "--device", "cpu"]
        other = subprocess.run(
            [CDUL_EVAL, *map(str, args), "--workers", "0", "--ap", "all-points", "--out", str(tmp_path / "all.json")],
            capture_output=True,
            text=True,
        )
        assert other.returncode == 0, other.stderr
        assert json.loads((tmp_path / "all.json").read_text())["ap_protocol"] == "all-points"
        assert "all-points AP" in other.stdout
    # a rerun after the last step was lost redoes that step only
    os.remove(out / "done" / "eval.json")
    again = reproduce(kind, root, "--out", out, "--smoke")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "[extract] done before, skipped" in again.stderr and "[train] done before, skipped" in again.stderr
    assert "[eval] " in again.stderr and (out / "done" / "eval.json").exists()
    # other settings in the same folder: one line, no traceback
    other = reproduce(kind, root, "--out", out, "--smoke", "--extract-args", "--snippet 2")
    assert other.returncode == 1 and "Traceback" not in other.stderr
    assert "its extract step ran with other settings" in other.stderr.splitlines()[-1]


@pytest.mark.slow
def test_bad_input_is_one_line(tmp_path):
    missing = reproduce("nuswide", tmp_path / "nowhere", "--out", tmp_path / "o")
    assert missing.returncode == 1 and missing.stderr.strip().endswith("not a directory (the nuswide dataset root)")
    root = make_tree("nuswide", str(tmp_path / "nus"), n=2)
    os.remove(os.path.join(root, "ImageList", "TestImagelist.txt"))
    bad = reproduce("nuswide", root, "--out", tmp_path / "o", "--smoke")
    assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr  # before any step
    assert "TestImagelist.txt: image list not found" in bad.stderr and not (tmp_path / "o").exists()
