"""Checkpoints of a small classifier with random weights, as cdul-train writes them (the
entries a classifier needs), without a training run."""

from __future__ import annotations

import torch

from cdul.trainer.checkpoint import save_checkpoint
from cdul.trainer.images import IMAGENET_MEAN, IMAGENET_STD
from cdul.trainer.model import new_model

CLASSES = ["cat", "dog", "person", "horse"]


def make_checkpoint(path, *, arch="resnet18", classes=CLASSES, img_size=32, loss="kl", seed=0, **extra) -> str:
    """A cdul-train checkpoint at ``path`` whose model has random weights (``seed``), its
    BatchNorm statistics moved off their defaults so that they matter."""
    torch.manual_seed(seed)
    model = new_model(arch, len(classes))
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    state = {
        "epoch": 3,
        "label_round": 0,
        "model": model.state_dict(),
        "config": {"arch": arch, "weights": "none", "img_size": img_size, "loss": loss},
        "classes": list(classes),
        "arch": arch,
        "img_size": img_size,
        "loss": loss,
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "history": {},
        "dataset": "folder",
        **extra,
    }
    save_checkpoint(state, str(path))
    return str(path)


def image_folder(root, n: int = 6, seed: int = 0) -> list[str]:
    """``n`` random PNG images of assorted sizes under ``root`` (img_000.png, ...); their names."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    names = []
    for i in range(n):
        h, w = int(rng.integers(20, 70)), int(rng.integers(20, 70))
        name = f"img_{i:03d}.png"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(f"{root}/{name}")
        names.append(name)
    return names
