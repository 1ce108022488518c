"""cdul-predict driven as a user would (click's runner, in this process): scores against an
independent reference, the three table formats, bad images as rows, resume after an
interruption, and every refusal as one line with a non-zero exit."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from classifier_checkpoints import CLASSES, image_folder, make_checkpoint
from click.testing import CliRunner
from PIL import Image

from cdul.cli.predict import main
from cdul.labels import Decision, decide
from cdul.trainer import predict_parts

N_IMAGES = 9  # plus one broken file and one listed but missing


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """A folder with labels.csv (paths only): N_IMAGES images, a broken file, a missing one."""
    root = tmp_path_factory.mktemp("photos")
    names = image_folder(root, N_IMAGES)
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    listed = [*names[:4], "broken.jpg", "gone.png", *names[4:]]
    (root / "labels.csv").write_text("path\n" + "\n".join(listed) + "\n")
    return root, listed


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("run") / "best.pt", img_size=24)


def predict(*args):
    return CliRunner().invoke(main, ["--workers", "0", "--device", "cpu", "-q", *map(str, args)])


def reference_scores(checkpoint: str, paths: list) -> np.ndarray:
    """softmax(f(x)) with x: PIL's bilinear resize of the whole image, ImageNet normalisation."""
    ckpt = torch.load(checkpoint, weights_only=True)
    from torchvision.models import resnet18

    model = resnet18(num_classes=len(CLASSES))
    model.load_state_dict(ckpt["model"])
    model.eval()
    n = ckpt["img_size"]
    x = np.stack([np.asarray(Image.open(p).convert("RGB").resize((n, n), Image.BILINEAR)) for p in paths])
    x = (x / 255.0 - np.array(ckpt["mean"])) / np.array(ckpt["std"])
    with torch.no_grad():
        return torch.softmax(model(torch.from_numpy(x.transpose(0, 3, 1, 2)).float()), 1).numpy()


def read_table(path) -> list[dict]:
    path = str(path)
    if path.endswith(".parquet"):
        return pq.read_table(path).to_pylist()
    if path.endswith(".jsonl"):
        with open(path) as f:
            return [json.loads(line) for line in f]
    import csv

    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_scores_labels_and_bad_images_in_every_format(tmp_path, photos, checkpoint):
    root, listed = photos
    good = [n for n in listed if n not in ("broken.jpg", "gone.png")]
    want = reference_scores(checkpoint, [root / n for n in good])
    kept = decide(want, Decision(top_k=2))
    for ext in (".parquet", ".jsonl", ".csv"):
        out = tmp_path / f"preds{ext}"
        r = predict("-c", checkpoint, "--data", root, "--out", out, "--top-k", 2, "--scores", "--part-size", 4)
        assert r.exit_code == 0, r.output
        assert f"{len(listed)} images labelled (2 failed" in r.output
        rows = read_table(out)
        assert [row["path"] for row in rows] == listed  # the dataset's order, failures in place
        by = {row["path"]: row for row in rows}
        assert "no such file" in by["gone.png"]["error"] and by["broken.jpg"]["error"]
        assert not by["broken.jpg"]["labels"]
        for i, name in enumerate(good):
            row = by[name]
            assert not row["error"]
            got = row["scores"] if ext == ".jsonl" else {c: row[f"score:{c}"] for c in CLASSES}
            np.testing.assert_allclose([float(got[c]) for c in CLASSES], want[i], atol=2e-6)
            labels = row["labels"].split(";") if ext == ".csv" else row["labels"]
            assert labels == [c for c, k in zip(CLASSES, kept[i]) if k]
        assert not [n for n in os.listdir(tmp_path) if n.endswith(".parts") or "partial" in n]


@pytest.mark.slow
def test_an_interrupted_run_resumes_to_the_same_table(tmp_path, photos, checkpoint, monkeypatch):
    root = photos[0]
    common = ["-c", checkpoint, "--data", root, "--part-size", 3, "--batch-size", 2, "--scores"]
    r = predict(*common, "--out", tmp_path / "whole.parquet")
    assert r.exit_code == 0, r.output
    out = tmp_path / "preds.parquet"
    write = predict_parts.write_part
    written = []

    def dies_after_two(folder, k, *args):
        if len(written) == 2:
            raise KeyboardInterrupt  # as a kill would, between two parts
        write(folder, k, *args)
        written.append(k)

    monkeypatch.setattr(predict_parts, "write_part", dies_after_two)
    r = predict(*common, "--out", out)
    assert r.exit_code != 0 and written == [0, 1]
    monkeypatch.setattr(predict_parts, "write_part", write)
    work = tmp_path / "preds.parquet.parts"
    assert not out.exists() and not [n for n in os.listdir(tmp_path) if "partial" in n]  # nothing looks complete
    assert sorted(os.listdir(work)) == ["manifest.json", "part-000000.npz", "part-000001.npz"]

    r = predict(*common[:-5], "--part-size", 4, "--batch-size", 2, "--scores", "--out", out)  # other settings
    assert r.exit_code == 1 and r.output.count("\n") == 1 and "part_size" in r.output, r.output

    r = predict(*common, "--out", out, "--top-k", 1)  # the rule is applied at assembly: parts still fit
    assert r.exit_code == 0, r.output
    assert "2 of 4 parts from an earlier run" in r.output
    assert not work.exists()
    whole, resumed = read_table(tmp_path / "whole.parquet"), read_table(out)
    assert repr([{k: v for k, v in row.items() if k != "labels"} for row in whole]) == repr(
        [{k: v for k, v in row.items() if k != "labels"} for row in resumed]
    )  # repr: NaN rows compare equal
    assert all(len(row["labels"]) == 1 for row in resumed if not row["error"])


def test_a_run_over_a_voc_split(tmp_path, voc_root, checkpoint):
    out = tmp_path / "voc.jsonl"
    r = predict("-c", checkpoint, "--data", voc_root, "--dataset", "voc2012", "--split", "train", "--out", out)
    assert r.exit_code == 0, r.output
    rows = read_table(out)
    assert len(rows) == 20 and all(row["labels"] and not row["error"] for row in rows)
    assert rows[0]["path"].startswith("JPEGImages/")


@pytest.mark.parametrize(
    "args, says",
    [
        (["--threshold", "1.5"], "--threshold must be"),
        (["--threshold", "0.3", "--top-k", "2"], "not both"),
        (["--top-k", "0"], "--top-k must be"),
        (["--out", "{tmp}/preds.txt"], "unknown table format"),
        (["--out", "{tmp}/nowhere/preds.csv"], "does not exist"),
        (["--out", "{tmp}/dir.csv"], "is a folder"),
        (["--data", "{tmp}/nothing"], "not a directory"),
        (["--dataset", "voc2012"], "--dataset voc2012"),
        (["--checkpoint", "{tmp}/missing.pt"], "no checkpoint at"),
        (["--checkpoint", "{tmp}/text.pt"], "cannot be read as a checkpoint"),
        (["--checkpoint", "{tmp}/state.pt"], "is not a cdul-train checkpoint"),
        (["--device", "cuda:0"] if not torch.cuda.is_available() else ["--device", "tpu"], "device"),
    ],
)
def test_wrong_input_is_one_line(tmp_path, photos, checkpoint, args, says):
    (tmp_path / "text.pt").write_text("hello")
    (tmp_path / "dir.csv").mkdir()
    torch.save({"weights": torch.zeros(3)}, tmp_path / "state.pt")
    base = {"--checkpoint": checkpoint, "--data": str(photos[0]), "--out": str(tmp_path / "p.csv")}
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    for name in list(base):
        if name in args:
            base.pop(name)
    r = predict(*[x for kv in base.items() for x in kv], *args)
    assert r.exit_code != 0
    assert r.output.count("\n") == 1 and says in r.output, r.output
    assert not r.exception or isinstance(r.exception, SystemExit)
    assert not (tmp_path / "p.csv").exists() and not (tmp_path / "p.csv.parts").exists()


def test_a_work_folder_in_use_or_not_ours_is_refused(tmp_path, photos, checkpoint):
    out = tmp_path / "p.csv"
    work = tmp_path / "p.csv.parts"
    work.mkdir()
    (work / "notes.txt").write_text("mine")
    r = predict("-c", checkpoint, "--data", photos[0], "--out", out)
    assert r.exit_code == 1 and "not a work folder of cdul-predict" in r.output
    assert (work / "notes.txt").read_text() == "mine"  # nothing of the user's is removed
    (work / "notes.txt").unlink()
    (work / "lock").write_text(str(os.getppid()))  # a live process holds it
    r = predict("-c", checkpoint, "--data", photos[0], "--out", out)
    assert r.exit_code == 1 and "another cdul-predict" in r.output


@pytest.mark.slow
def test_webdataset_shards_labelled_with_other_classes(tmp_path, checkpoint):
    from test_webdataset import samples, write_shards

    items = samples()
    write_shards(str(tmp_path / "shards"), items)  # labels: bird, cat, dog; a corrupt jpeg; a shard cut short
    out = tmp_path / "preds.jsonl"
    r = predict("-c", checkpoint, "--data", tmp_path / "shards", "--dataset", "webdataset", "--out", out)
    assert r.exit_code == 0, r.output
    rows = read_table(out)
    assert [row["path"].split("/")[-1] for row in rows] == [key for key, *_ in items]
    failed = {row["path"].split("/")[-1] for row in rows if row["error"]}
    assert failed == {"00099", items[4][0]}  # the corrupt one and the one the cut goes through
    assert all(set(row["labels"]) <= set(CLASSES) and row["labels"] for row in rows if not row["error"])
