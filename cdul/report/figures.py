"""The report's pictures: thumbnails, one image with its tiles, the zeta sweep and the
training curves (the per-class AP chart is eval_report.ap_chart, shared with cdul-eval)."""

from __future__ import annotations

import numpy as np

from .contents import top_classes
from .eval_report import pyplot, save_figure


def thumbnail(image: np.ndarray, path: str, size: int = 160) -> None:
    from PIL import Image

    im = Image.fromarray(image)
    im.thumbnail((size, size))
    im.save(path)


def tiles_figure(
    image: np.ndarray, tiles: np.ndarray, n_tiles: int, tiling: dict, classes, path: str, caveat: str | None = None
) -> None:
    """The image with its grid drawn and each tile's top class written in it."""
    from cdul.extractor.tiling import Tiling

    plt = pyplot()
    t = Tiling.from_description(tiling)
    h, w = image.shape[:2]
    fig, ax = plt.subplots(figsize=(6, 6 * h / max(w, 1)))
    ax.imshow(image)
    for j, (top, left, th, tw) in enumerate(t.boxes(h, w)[:n_tiles]):
        ax.add_patch(plt.Rectangle((left, top), tw, th, fill=False, color="yellow", lw=1.5))
        name, p = top_classes(tiles[j].astype(np.float32), classes, 1)[0]
        ax.text(
            left + 4,
            top + 14,
            f"{name}\n{p:.2f}",
            color="white",
            fontsize=7,
            bbox=dict(facecolor="black", alpha=0.55, pad=1.5, lw=0),
        )
    ax.axis("off")
    save_figure(fig, path, caveat, dpi=100)


def sweep_figure(
    sweep: list[dict], chosen: float, lam: float, max_alpha: float, path: str, caveat: str | None = None
) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.8))
    zs = [r["zeta"] for r in sweep]
    ax.plot(zs, [r["aggregated"] for r in sweep], marker="o", ms=3, label="S_ag (aggregated local)")
    ax.plot(zs, [r["y0"] for r in sweep], marker="o", ms=3, label=f"y0 (initial label, lambda {lam:g})")
    ax.axvline(chosen, color="grey", ls="--", lw=1, label=f"zeta of the stored y0 ({chosen:g})")
    if max_alpha < zs[-1]:
        ax.axvline(max_alpha, color="C3", ls=":", lw=1, label=f"largest alpha ({max_alpha:.2f}): S_ag = beta above")
    ax.set_title("Pseudo-label mAP over zeta", fontsize=10)
    ax.set_xlabel("zeta")
    ax.set_ylabel("pseudo-label mAP (%)")
    ax.set_xlim(-0.02, 1.02)
    ax.legend(fontsize=7)
    save_figure(fig, path, caveat)


def curves_figure(records: list[dict], path: str, caveat: str | None = None) -> None:
    plt = pyplot()
    epochs = [r for r in records if r.get("epoch", 0) >= 1]
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    axes[0].plot([r["epoch"] for r in epochs], [r.get("loss") for r in epochs], marker="o", ms=3)
    axes[0].set_title("training loss", fontsize=9)
    val = [r for r in epochs if r.get("val_map") is not None]
    axes[1].plot([r["epoch"] for r in val], [r["val_map"] for r in val], marker="o", ms=3, color="C1")
    axes[1].set_title("classifier mAP (validation)", fontsize=9)
    if not val:
        note = "no validation mAP: train with --val-data ROOT"
        axes[1].text(0.5, 0.5, note, ha="center", va="center", fontsize=8, transform=axes[1].transAxes)
    rounds = {}
    for r in records:
        if r.get("pseudo_map") is not None:
            rounds[r.get("label_round_written", r.get("label_round"))] = r["pseudo_map"]
    ks = sorted(k for k in rounds if k is not None)
    axes[2].plot(ks, [rounds[k] for k in ks], marker="o", ms=3, color="C2")
    axes[2].set_title("pseudo-label mAP per label round", fontsize=9)
    from matplotlib.ticker import MaxNLocator

    for ax, x, y in zip(axes, ("epoch", "epoch", "label round"), ("loss", "mAP (%)", "mAP (%)")):
        ax.set_xlabel(x)
        ax.set_ylabel(y)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        lo, hi = ax.get_xlim()
        if hi - lo < 2:  # one point (a one-epoch run): whole-number ticks around it, not 0.96 ... 1.04
            mid = round((lo + hi) / 2)
            ax.set_xlim(mid - 1, mid + 1)
    save_figure(fig, path, caveat)
