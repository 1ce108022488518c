"""A learning check that can fail: images whose true labels are known (a coloured square
per class present), starting pseudo labels that are those labels under heavy noise; the
trained classifier must rank held-out images clearly better than the noisy labels rank the
training images, and the refined labels must end up better than they started."""

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from voc_fixtures import make_label_store

from cdul.cli.train import main as train_main
from cdul.metrics import mean_ap

pytestmark = pytest.mark.slow  # a classifier trained for real

COLOURS = {"red": (230, 30, 30), "green": (30, 200, 30), "blue": (40, 40, 230), "yellow": (230, 220, 20)}
CLASSES = list(COLOURS)
SIZE = 32


def make_shapes(folder: str, n: int, seed: int) -> tuple[list[str], np.ndarray]:
    """n PNGs of SIZE px: noisy grey background, each class present with probability 0.4
    (at least one), drawn as a square in a quadrant of its own at a random offset."""
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    ids, truth = [], np.zeros((n, len(CLASSES)), dtype=np.int8)
    half = SIZE // 2
    for i in range(n):
        present = rng.random(len(CLASSES)) < 0.4
        if not present.any():
            present[rng.integers(len(CLASSES))] = True
        img = rng.integers(90, 160, (SIZE, SIZE, 3)).astype(np.uint8)
        quadrants = rng.permutation(4)
        for c in np.flatnonzero(present):
            side = int(rng.integers(11, 16))
            qy, qx = divmod(int(quadrants[c]), 2)
            y0 = qy * half + int(rng.integers(0, half - side + 1))
            x0 = qx * half + int(rng.integers(0, half - side + 1))
            img[y0 : y0 + side, x0 : x0 + side] = COLOURS[CLASSES[c]]
        name = f"{i:04d}.png"
        Image.fromarray(img).save(os.path.join(folder, name))
        ids.append(name)
        truth[i] = present
    return ids, np.where(truth == 1, 1, -1).astype(np.int8)


def noisy(truth: np.ndarray, seed: int) -> np.ndarray:
    """Flip 30% of the entries, then blur the rest: soft labels that rank poorly."""
    rng = np.random.default_rng(seed)
    pos = truth == 1
    flipped = np.where(rng.random(truth.shape) < 0.3, ~pos, pos)
    return np.clip(0.3 + 0.4 * flipped + rng.uniform(-0.25, 0.25, truth.shape), 0.01, 0.99).astype(np.float32)


def test_classifier_beats_its_noisy_labels(tmp_path):
    train_ids, train_truth = make_shapes(str(tmp_path / "train"), 256, seed=1)
    val_ids, val_truth = make_shapes(str(tmp_path / "val"), 128, seed=2)
    with open(tmp_path / "val" / "labels.csv", "w") as f:
        f.write("path,labels\n")
        for name, row in zip(val_ids, val_truth):
            f.write(f"{name},{';'.join(c for c, t in zip(CLASSES, row) if t == 1)}\n")
    y0 = noisy(train_truth, seed=3)
    store = make_label_store(
        str(tmp_path / "shapes.zarr"),
        train_ids,
        CLASSES,
        y0,
        targets=train_truth,
        chunk_len=64,
        root=str(tmp_path / "train"),
    )
    noisy_map = 100 * mean_ap(y0, train_truth)

    out = str(tmp_path / "run")
    result = CliRunner().invoke(
        train_main,
        [
            "--store",
            store.url,
            "--out-dir",
            out,
            "--val-data",
            str(tmp_path / "val"),
            "--val-dataset",
            "folder",
            "--arch",
            "resnet18",
            "--weights",
            "none",
            "--img-size",
            str(SIZE),
            "--device",
            "cpu",
            "--workers",
            "0",
            "--batch-size",
            "32",
            "--optimizer",
            "adam",
            "--lr",
            "2e-3",
            "--schedule",
            "constant",
            "--augment",
            "--epochs",
            "8",
            "--warmup",
            "3",
            "--update-every",
            "1",
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    rows = [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))]
    final = rows[-1]
    print(
        f"noisy labels {noisy_map:.1f} mAP; classifier {[round(r.get('val_map', 0), 1) for r in rows[1:]]}; "
        f"pseudo labels {[round(r['pseudo_map'], 1) for r in rows]}"
    )
    assert abs(rows[0]["pseudo_map"] - noisy_map) < 1e-6
    assert final["val_map"] > noisy_map + 15, (final["val_map"], noisy_map)
    # gradient alignment moved the labels towards the truth, round after round
    assert final["pseudo_map"] > rows[0]["pseudo_map"] + 1
    written = [r["pseudo_map"] for r in rows if r.get("label_round_written")]
    assert len(written) == 5 and written == sorted(written)
