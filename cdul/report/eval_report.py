"""Evaluation reports of a trained classifier (cdul-eval): precision-recall curves and per-class
AP charts (matplotlib, Agg backend, PNG files), and the JSON report, written atomically. The
report's pages draw their figures with the same helpers."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping

import numpy as np

from cdul.data import outputs
from cdul.data.fs import atomic_write_text
from cdul.metrics import binary_targets, precision_recall


def pr_curve(scores: np.ndarray, targets: np.ndarray, difficult: str = "ignore") -> tuple[np.ndarray, np.ndarray]:
    """(recall, precision) at every distinct score of one class, highest score first, as
    the AP of cdul.metrics integrates them. Difficult entries follow the same rule as there."""
    scores = np.asarray(scores, dtype=np.float64)
    pos, valid = binary_targets(targets, difficult)
    valid = valid & np.isfinite(scores)
    return precision_recall(scores[valid], pos[valid])


def pyplot():
    """matplotlib's pyplot on the Agg backend (files only, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str, caveat: str | None = None, dpi: int = 110) -> str:
    """Lay out, write and close a figure; a caveat (random weights) goes under it in red.
    Returns the path."""
    if caveat:
        fig.text(0.5, 0.01, caveat, ha="center", va="bottom", color="#b00020", fontsize=8, wrap=True)
    fig.tight_layout(rect=(0, 0.08 if caveat else 0, 1, 1))
    folder, name = os.path.split(os.path.abspath(path))
    final = outputs.inside(folder, name)  # never through a symbolic link
    tmp = f"{final}.tmp-{os.getpid()}.png"
    try:
        fig.savefig(tmp, dpi=dpi)
        os.replace(tmp, final)
    finally:
        pyplot().close(fig)
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def ap_chart(path: str, ap: Mapping[str, float | None], mean: float, title: str = "", caveat: str | None = None) -> str:
    """The per-class AP chart (per_class_ap.png): a bar for each class with a positive (AP in
    percent, highest first; classes without one have AP None and are left out) and the mAP
    as a dashed line. Returns the path."""
    kept = {n: float(v) for n, v in ap.items() if v is not None}
    names, values = list(kept), list(kept.values())
    order = np.argsort(values)[::-1]
    fig, ax = pyplot().subplots(figsize=(max(6.0, 0.35 * len(names) + 2), 4))
    ax.bar(range(len(names)), [values[j] for j in order], color="#4c72b0")
    ax.axhline(mean, color="#c44e52", ls="--", lw=1, label=f"mAP {mean:.2f}")
    ax.set_xticks(range(len(names)), [names[j] for j in order], rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("AP (%)")
    ax.set_ylim(0, 100)
    if title:
        ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    return save_figure(fig, path, caveat)


def write_plots(
    folder: str, scores: np.ndarray, targets: np.ndarray, classes: list[str], report: dict, difficult: str = "ignore"
) -> list[str]:
    """pr_curves.png (one panel per class) and per_class_ap.png; returns the paths."""
    plt = pyplot()
    outputs.output_dir(folder, "--plots")
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
    pr_path = save_figure(fig, os.path.join(folder, "pr_curves.png"))
    ap = {c: report["ap"].get(c) for c in classes}
    return [pr_path, ap_chart(os.path.join(folder, "per_class_ap.png"), ap, report["map"])]


def write_json(path: str, report: dict) -> None:
    def plain(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v

    atomic_write_text(outputs.output_file(path), json.dumps(plain(report), indent=2) + "\n")
