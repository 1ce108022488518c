"""The report on partial inputs: images it cannot read are named, not linked; the per-image
table shows the latest label round beside y0; a one-epoch run without validation gets
whole-number epoch ticks and a note in the empty panel."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from extract_runs import extract_args

import cdul.report.figures as figures
from cdul.cli.extract import main as extract
from cdul.cli.report import main as report
from cdul.store import Store


@pytest.mark.slow  # extracts a store
def test_missing_images_and_the_latest_round(voc_root, tmp_path):
    root = str(tmp_path / "voc")
    shutil.copytree(voc_root, root)
    store = str(tmp_path / "s.zarr")
    r = CliRunner().invoke(extract, extract_args(root, store, workers=0, limit=4, chunk_len=2, quiet=True))
    assert r.exit_code == 0, r.output
    s = Store.open(store, mode="r+")
    arr = s.begin_round(1, {"source": "test", "epoch": 1})
    arr[:] = np.eye(s.n, len(s.classes), dtype=np.float32)
    s.finish_round(1)
    gone = s.ids()[0]
    os.remove(os.path.join(str(s.section("dataset")["root"]), gone))
    out = tmp_path / "report"
    r = CliRunner().invoke(report, ["--store", store, "--out", str(out), "--images", "4"])
    assert r.exit_code == 0, r.output
    data = json.loads((out / "report.json").read_text())
    assert data["latest_round"] == 1 and data["images"][1]["latest"][0][0] == s.classes[1]
    md = (out / "report.md").read_text()
    assert "round 1 |" in md and "images could not be read for their thumbnails; the first: " + gone in md
    assert f"![](img/{0:06d}.png)" not in md and f"![](img/{1:06d}.png)" in md
    assert not (out / "img" / f"{0:06d}.png").exists()


def test_one_epoch_without_validation(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(figures, "save_figure", lambda fig, path, caveat=None: seen.append(fig))
    records = [{"epoch": 0, "label_round": 0, "pseudo_map": 20.0}, {"epoch": 1, "loss": 0.5, "label_round": 0}]
    figures.curves_figure(records, str(tmp_path / "c.png"))
    loss, val, _ = seen[0].axes
    assert all(float(t).is_integer() for t in loss.get_xticks())
    assert [t.get_text() for t in val.texts] == ["no validation mAP: train with --val-data ROOT"]
