"""The README's first command, run as a user runs it, in a temporary copy of the project:
it builds the sample, extracts, trains, evaluates and writes the report."""

import json
import os
import shlex
import shutil
import subprocess
import sys

import pytest
import zarr

pytestmark = pytest.mark.slow  # the README's demo, end to end

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.dirname(os.path.dirname(sys.executable))


def test_demo_writes_a_full_report(tmp_path):
    copy = tmp_path / "cdul"
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for rel in files:
        if os.path.exists(os.path.join(REPO, rel)):
            os.makedirs(copy / os.path.dirname(rel), exist_ok=True)
            shutil.copy2(os.path.join(REPO, rel), copy / rel)
    # The copy shares this venv: bring the venv up to date from this repository first, so the
    # copy's set-up step finds nothing to do and the editable install keeps pointing here.
    env = {**os.environ, "CDUL_VENV": VENV, "HF_HUB_OFFLINE": "1"}
    subprocess.run(["bash", "scripts/env.sh"], cwd=REPO, env=env, check=True, capture_output=True, timeout=900)
    out = tmp_path / "demo"
    r = subprocess.run(
        ["bash", "scripts/demo.sh", "--out-dir", str(out), "--epochs", "2", "--img-size", "64", "-q"],
        cwd=copy,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "setting up" not in r.stderr  # the set-up step was a no-op
    assert "report:" in r.stdout
    assert f"cdul-serve --store {out / 'sample.zarr'}" in r.stdout  # the closing lines: how to browse it
    report = out / "report"
    for name in (
        "index.html",
        "report.md",
        "report.json",
        "zeta_sweep.png",
        "tiles.png",
        "curves.png",
        "per_class_ap.png",
    ):
        assert (report / name).stat().st_size > 0, name
        if name.endswith(".png"):
            assert (report / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (report / "index.html").read_text()
    for section in (
        "Pseudo-label mAP against the ground truth",
        "Per image: top classes",
        "One image, its tiles and their top class",
        "Training",
        "Classifier on voc2012 val",
    ):
        assert section in page, section
    # offline here: every section and every plot of scores says that its numbers mean nothing
    assert page.count("class='warn'") == 1 + 5 and page.count("meaningless") == 6
    assert "meaningless" in r.stderr.splitlines()[-1]  # and so do the demo's closing lines
    assert "Images marked photo are real photographs" in page and "<td>filler</td>" in page
    data = json.loads((report / "report.json").read_text())
    store = zarr.open_group(str(out / "sample.zarr"), mode="r")
    summary = store.attrs["summary"]["pseudo_label_map"]
    for key in ("global", "aggregated", "y0"):
        assert abs(data["pseudo_label_map"][key] - summary[key]) < 1e-6
    sweep = {r["zeta"]: r for r in data["zeta_sweep"]}
    assert abs(sweep[0.5]["y0"] - summary["y0"]) < 1e-6
    names = {rec["id"] for rec in data["images"]}
    assert {"JPEGImages/astronaut.jpg", "JPEGImages/chelsea.jpg"} <= names
    chelsea = next(rec for rec in data["images"] if rec["id"] == "JPEGImages/chelsea.jpg")
    assert chelsea["truth"] == ["cat"] and len(chelsea["S_g"]) == 3
    assert [r["epoch"] for r in data["training"]][-1] == 2 and data["eval"]["split"] == "val"
    assert (report / "img").is_dir() and len(list((report / "img").iterdir())) == len(data["images"])
    assert {rec["source"] for rec in data["images"]} == {"photo", "filler"}

    # the echoed commands, pasted in order after the demo, run and give the same results
    echoed = [line[2:] for line in r.stderr.splitlines() if line.startswith("$ ")]
    names = [os.path.basename(shlex.split(c)[0]) for c in echoed]
    assert names == ["cdul-extract", "cdul-train", "cdul-eval", "cdul-report"]
    assert "--pretrained none" in echoed[0] and "--overwrite" in echoed[1] and "--sources" in echoed[3]
    lines = r.stderr.splitlines()
    real = next(lines[i + 1] for i, line in enumerate(lines) if line.startswith("cdul-extract with the real")).strip()
    assert real == echoed[0].replace("--pretrained none", "--pretrained openai")  # printed apart, not run
    metrics = (out / "run" / "metrics.jsonl").read_text().splitlines()
    (out / "run" / "notes.txt").write_text("mine")
    for name, command in zip(names, echoed):
        rerun = subprocess.run(shlex.split(command), cwd=copy, capture_output=True, text=True, env=env, timeout=600)
        assert rerun.returncode == 0, rerun.stderr[-2000:]
        if name == "cdul-eval":
            assert f"mAP {data['eval']['map']:.2f}" in rerun.stdout
        flagged = [line for line in rerun.stderr.splitlines() if "comes from a CLIP with random weights" in line]
        assert len(flagged) == (name != "cdul-extract"), (name, rerun.stderr)  # one line each (offline here)
    again = json.loads((report / "report.json").read_text())
    assert again["pseudo_label_map"] == data["pseudo_label_map"] and again["eval"]["map"] == data["eval"]["map"]
    assert again["images"] == data["images"] and "<td>filler</td>" in (report / "index.html").read_text()
    drop = ("seconds", "time", "images_per_s")
    rows = [json.loads(m) for m in (out / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [{k: v for k, v in row.items() if not k.endswith(drop)} for row in rows] == [
        {k: v for k, v in json.loads(m).items() if not k.endswith(drop)} for m in metrics
    ]
    assert (out / "run" / "notes.txt").read_text() == "mine"  # --overwrite removes only the run's files
