"""A trained classifier ready to score images: what cdul-eval, cdul-predict and the ONNX
export share.

:func:`load_classifier` reads a cdul-train checkpoint (``torch.load(weights_only=True)``,
never code from the file), builds its architecture with C outputs, loads the weights,
refuses weights that are not finite, and moves the model to the device in eval mode.
:meth:`Classifier.score_batches` is the one scoring loop: each image is read and decoded
in a DataLoader worker, resized to S x S (bilinear, the whole image: trainer.images),
normalised with the checkpoint's mean and std, and scored with the function of its loss,
``softmax(f(x))`` under ``kl`` and ``sigmoid(f(x))`` under ``bce`` (trainer.labels.scores).
An image that cannot be read or decoded gets a row of NaN and ``ok`` False.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .checkpoint import CheckpointError, load_checkpoint, restore
from .distributed import pick_device
from .evaluate import score_batches
from .images import IMAGENET_MEAN, IMAGENET_STD
from .model import WeightsError, new_model
from .start import TrainError, check_finite

SCORE_FUNCTIONS = {"kl": "softmax", "bce": "sigmoid"}


class ClassifierError(Exception):
    """A checkpoint that cannot be scored with; the message is one line saying why."""


@dataclass
class Classifier:
    model: torch.nn.Module  # in eval mode, on ``device``
    classes: list[str]
    arch: str
    img_size: int
    loss: str  # kl or bce
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    device: torch.device
    checkpoint: dict  # the checkpoint's other entries (epoch, config, dataset, ...), weights left out

    @property
    def score_function(self) -> str:
        return SCORE_FUNCTIONS[self.loss]

    def score_batches(
        self, root: str, batches: Sequence[Sequence[tuple[int, str]]], *, kind: str, workers: int, amp: str = "none"
    ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(index [B] int64, scores [B, C] float32 with NaN rows where not ok, ok [B] bool)
        for each batch of ``(index, image id)`` items of the ``kind`` dataset under ``root``, in order."""
        yield from score_batches(
            self.model, root, batches, kind=kind, size=self.img_size, loss=self.loss, workers=workers,
            device=self.device, amp=amp, mean=self.mean, std=self.std,
        )  # fmt: skip


def load_classifier(path: str, device: str | torch.device = "auto") -> Classifier:
    """The classifier of the cdul-train checkpoint ``path`` on ``device`` (auto: CUDA if there
    is one); a ClassifierError says why it cannot be."""
    try:
        ckpt = load_checkpoint(path)
    except CheckpointError as exc:
        raise ClassifierError(str(exc)) from None
    try:
        classes = [str(c) for c in ckpt["classes"]]
        arch, size, loss, state = str(ckpt["arch"]), int(ckpt["img_size"]), str(ckpt["loss"]), ckpt["model"]
    except (KeyError, TypeError, ValueError) as exc:
        raise ClassifierError(f"{path}: a checkpoint without its classifier's {exc} entry") from None
    if loss not in SCORE_FUNCTIONS:
        raise ClassifierError(f"{path}: unknown loss {loss!r} (kl or bce)")
    try:
        dev = device if isinstance(device, torch.device) else pick_device(device)
        model = new_model(arch, len(classes))
        restore(model, state, path)
        check_finite(model, path)
    except (ValueError, WeightsError, CheckpointError) as exc:
        raise ClassifierError(str(exc)) from None
    except TrainError as exc:
        raise ClassifierError(f"{exc}; its scores would mean nothing") from None
    model.eval().to(dev)
    if dev.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    mean = tuple(float(v) for v in ckpt.get("mean", IMAGENET_MEAN))
    std = tuple(float(v) for v in ckpt.get("std", IMAGENET_STD))
    rest = {k: v for k, v in ckpt.items() if k not in ("model", "optimizer", "scheduler", "scaler", "rng")}
    return Classifier(model, classes, arch, size, loss, mean, std, dev, rest)  # type: ignore[arg-type]
