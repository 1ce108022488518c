"""Evaluation: classifier scores on a labelled split, and the pseudo labels against the
training split's ground truth.

Scores are the classifier's own probabilities (labels.scores: softmax under ``--loss kl``,
sigmoid under ``--loss bce``); mAP ranks them per class, and CF1/OF1 threshold them at
``threshold`` (0.5 by default). Under ``kl`` the probabilities of an image sum to one, so a
threshold of 0.5 admits at most one class per image; lower it for more.

mAP values are in percent, as the paper and cdul-extract report them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from cdul import metrics
from cdul.data.transfer import handed_over
from cdul.metrics import f1_scores, mean_of, per_class_ap
from cdul.store import Store, layout

from . import labels as L
from .distributed import Dist
from .images import IMAGENET_MEAN, IMAGENET_STD, ImageSet, Normalise, collate


def autocast(device: torch.device, amp: str):
    """The one autocast context of training and evaluation: CUDA only, bf16 or fp16."""
    if device.type != "cuda" or amp == "none":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def score_batches(
    model: torch.nn.Module,
    root: str,
    batches: Sequence[Sequence[tuple[int, str]]],
    *,
    kind: str,
    size: int,
    loss: str,
    workers: int,
    device: torch.device,
    amp: str = "none",
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The one scoring loop: (index [B] int64, scores [B, C] float32, ok [B] bool) for each
    batch of ``(index, image id)`` items of the ``kind`` dataset under ``root``, in order; NaN
    rows where an image could not be read. ``model`` is in eval mode while it runs, in its own after."""
    loader = torch.utils.data.DataLoader(
        ImageSet(root, size, kind=kind),
        batch_sampler=[list(b) for b in batches],
        num_workers=workers,
        collate_fn=collate,
        pin_memory=device.type == "cuda",
    )
    norm = Normalise(mean, std).to(device)
    was_training = model.training
    model.eval()
    try:
        for images, index, ok in handed_over(loader, "batches of images"):
            with torch.inference_mode():
                x = norm(images.to(device, non_blocking=True), contiguous=device.type != "cuda")
                with autocast(device, amp):
                    logits = model(x)
                s = L.scores(logits, loss).cpu().numpy().astype(np.float32)
            good = ok.numpy()
            s[~good] = np.nan
            yield index.numpy(), s, good
    finally:
        model.train(was_training)


def predict(
    model: torch.nn.Module,
    root: str,
    ids: list[str],
    *,
    kind: str = "folder",
    size: int,
    loss: str,
    batch_size: int,
    workers: int,
    device: torch.device,
    amp: str = "none",
    env: Dist | None = None,
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
) -> np.ndarray:
    """[N, C] float32 scores of the images ``ids`` of the ``kind`` dataset under ``root``; NaN
    rows for unreadable images. Under torchrun every rank scores a share and every rank gets all rows."""
    rank, world = (env.rank, env.world) if env is not None else (0, 1)
    mine = list(range(rank, len(ids), world))
    batches = [[(i, ids[i]) for i in mine[j : j + batch_size]] for j in range(0, len(mine), batch_size)]
    rows, out = [], []
    for index, s, _ok in score_batches(
        model, root, batches, kind=kind, size=size, loss=loss, workers=workers, device=device, amp=amp,
        mean=mean, std=std,
    ):  # fmt: skip
        rows.append(index)
        out.append(s)
    n_classes = out[0].shape[1] if out else 0
    part = (
        np.concatenate(rows) if rows else np.zeros(0, np.int64),
        np.concatenate(out) if out else np.zeros((0, n_classes), np.float32),
    )
    parts = env.gather(part) if env is not None else [part]
    n_classes = max(p[1].shape[1] for p in parts)
    scores = np.full((len(ids), n_classes), np.nan, dtype=np.float32)
    for index, s in parts:
        scores[index] = s
    return scores


def classifier_report(
    scores: np.ndarray,
    targets: np.ndarray,
    classes: list[str],
    *,
    difficult: str = "ignore",
    threshold: float = 0.5,
    protocol: str = "all-points",
) -> dict:
    """mAP and per-class AP (percent, under the AP ``protocol``), CP/CR/CF1/OP/OR/OF1 at
    ``threshold`` (fractions)."""
    rows = np.isfinite(scores).all(axis=1)
    ap = per_class_ap(scores, targets, difficult, rows=rows, protocol=protocol)
    f1 = f1_scores(np.nan_to_num(scores, nan=-1.0), targets, threshold, difficult, rows=rows)
    return {
        "map": 100 * mean_of(ap),
        "ap_protocol": protocol,
        "ap": {c: (float(100 * a) if np.isfinite(a) else None) for c, a in zip(classes, ap)},
        "images": int(rows.sum()),
        "unreadable": int((~rows).sum()),
        **{k: float(v) for k, v in f1.items()},
    }


def pseudo_label_map(
    store: Store,
    round_k: int,
    *,
    difficult: str = "ignore",
    max_bytes: int = 256 << 20,
    protocol: str = "all-points",
) -> float | None:
    """mAP (percent, under the AP ``protocol``) of label round ``round_k`` against the store's
    ground truth, or None when the store has none (or no class has a positive). Reads chunk by
    chunk (see cdul.metrics.pseudo_label_map), so it needs at most about ``max_bytes`` whatever N is."""
    if not store.has(layout.TARGETS):
        return None
    name = layout.round_name(round_k)

    def chunks():
        for chunk in store.chunks(name, layout.TARGETS, layout.STATUS):
            yield chunk[name], chunk[layout.TARGETS], chunk[layout.STATUS] == layout.OK

    m = metrics.pseudo_label_map(chunks, store.n, len(store.classes), difficult, max_bytes, protocol)
    return None if np.isnan(m) else m
