"""Evaluation reports of a trained classifier: precision-recall curves and per-class AP
charts (matplotlib, Agg backend, PNG files), and the JSON report, written atomically."""

from __future__ import annotations

import json
import math
import os

import numpy as np

from cdul.data.fs import atomic_write_text
from cdul.metrics import binary_targets, precision_recall


def pr_curve(scores: np.ndarray, targets: np.ndarray, difficult: str = "ignore") -> tuple[np.ndarray, np.ndarray]:
    """(recall, precision) at every distinct score of one class, highest score first, as
    the AP of cdul.metrics integrates them. Difficult entries follow the same rule as there."""
    scores = np.asarray(scores, dtype=np.float64)
    pos, valid = binary_targets(targets, difficult)
    valid = valid & np.isfinite(scores)
    return precision_recall(scores[valid], pos[valid])


def write_plots(
    folder: str, scores: np.ndarray, targets: np.ndarray, classes: list[str], report: dict, difficult: str = "ignore"
) -> list[str]:
    """pr_curves.png (one panel per class) and per_class_ap.png; returns the paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(folder, exist_ok=True)
    c = len(classes)
    cols = math.ceil(math.sqrt(c))
    rows = math.ceil(c / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.4 * rows), squeeze=False, sharex=True, sharey=True)
    for i, ax in enumerate(axes.flat):
        if i >= c:
            ax.axis("off")
            continue
        recall, precision = pr_curve(scores[:, i], targets[:, i], difficult)
        ap = report["ap"].get(classes[i])
        if len(recall):
            ax.step(np.r_[0.0, recall], np.r_[precision[0], precision], where="pre", lw=1.2)
        ax.set_title(f"{classes[i]} ({'-' if ap is None else f'{ap:.1f}'})", fontsize=8)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.tick_params(labelsize=6)
    fig.suptitle(f"precision-recall per class (AP in brackets); mAP {report['map']:.2f}", fontsize=10)
    fig.supxlabel("recall", fontsize=8)
    fig.supylabel("precision", fontsize=8)
    fig.tight_layout()
    pr_path = os.path.join(folder, "pr_curves.png")
    fig.savefig(pr_path, dpi=110)
    plt.close(fig)

    names = [n for n in classes if report["ap"].get(n) is not None]
    values = [report["ap"][n] for n in names]
    order = np.argsort(values)[::-1]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.35 * len(names) + 2), 4))
    ax.bar(range(len(names)), [values[j] for j in order], color="#4c72b0")
    ax.axhline(report["map"], color="#c44e52", ls="--", lw=1, label=f"mAP {report['map']:.2f}")
    ax.set_xticks(range(len(names)), [names[j] for j in order], rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("AP (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8)
    fig.tight_layout()
    bar_path = os.path.join(folder, "per_class_ap.png")
    fig.savefig(bar_path, dpi=110)
    plt.close(fig)
    return [pr_path, bar_path]


def write_json(path: str, report: dict) -> None:
    def plain(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v

    atomic_write_text(path, json.dumps(plain(report), indent=2) + "\n")
