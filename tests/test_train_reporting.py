"""cdul-train --report-to tensorboard: the per-epoch metrics of metrics.jsonl, read back from
the event files with TensorBoard's own reader; without the package, one line."""

from __future__ import annotations

import json
import os
import sys

import pytest
from test_trainer_cli import extract
from train_runs import train


def test_missing_tensorboard_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import tensorboard raises ImportError
    result = train(tmp_path / "absent.zarr", tmp_path / "run", report_to="tensorboard")
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines == ["Error: --report-to tensorboard needs the tensorboard package: pip install tensorboard"]


@pytest.mark.slow  # a two-epoch run
def test_tensorboard_scalars_match_metrics(voc_root, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    store = extract(voc_root, str(tmp_path / "voc.zarr"))
    out = tmp_path / "run"
    (out / "tensorboard").mkdir(parents=True)
    (out / "tensorboard" / "mine.txt").write_text("mine")
    val = {"val_data": voc_root, "val_split": "train", "epochs": 2, "workers": 0}
    result = train(store, out, report_to="tensorboard", **val)
    assert result.exit_code == 0, result.output + repr(result.exception)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"loss", "val_map", "pseudo_map", "lr"} <= tags
    for tag in ("loss", "val_map", "pseudo_map", "label_change"):
        logged = {e.step: e.value for e in events.Scalars(tag)}
        expected = {r["epoch"]: r[tag] for r in rows if isinstance(r.get(tag), float)}
        assert logged.keys() == expected.keys() and expected, tag
        assert all(abs(logged[k] - expected[k]) <= 1e-6 * max(1.0, abs(expected[k])) for k in expected), tag
    # --overwrite removes the event files the run wrote, and nothing else there
    again = train(store, out, report_to="none", overwrite=True, **val)
    assert again.exit_code == 0, again.output
    assert os.listdir(out / "tensorboard") == ["mine.txt"]
