"""A report people can look at: what CLIP said about each image, how the pseudo labels
score, how training went. One folder with ``index.html``, ``report.md``, ``report.json``
and PNGs, built aside and moved in, so a reader never sees a half-written file. The folder
keeps a list of the files the report wrote (``.cdul-report``): a new report replaces those
and nothing else, and a non-empty folder without that list is refused.

Sections: the pseudo-label mAP of S_g, S_ag and y0 and its sweep over zeta (recomputed
from the stored alpha and beta, no re-extraction); per-image top classes from S_g, S_ag
and y0 next to the ground truth; one image cut into its tiles with each tile's top class;
training curves (loss, classifier mAP, pseudo-label mAP per round); per-class AP bars.
Where the scores come from random weights (CLIP's, or the classifier's start), every
section and every plot of them says so.
"""

from __future__ import annotations

import html
import json
import os
import shutil
import tempfile
from collections.abc import Mapping

import numpy as np

from cdul.data import fs
from cdul.data.decode import decode_image
from cdul.kernels import aggregate_local, initial_labels
from cdul.metrics import pseudo_label_map
from cdul.store import Store, layout, open_verified
from cdul.trainer.report import ap_chart, pyplot, save_figure

ZETAS = tuple(round(z, 2) for z in np.arange(0.0, 1.001, 0.05))


def _top(row: np.ndarray, classes: list[str], k: int = 3) -> list[tuple[str, float]]:
    order = np.argsort(-row)[:k]
    return [(classes[i], float(row[i])) for i in order]


def _fmt_top(top) -> str:
    return ", ".join(f"{name} {score:.2f}" for name, score in top)


def _map(scores: np.ndarray, targets: np.ndarray, rows: np.ndarray) -> float:
    """Pseudo-label mAP (percent) of scores held in memory, over ``rows``."""
    return pseudo_label_map(lambda: [(scores, targets, rows)], len(rows), scores.shape[1])


def zeta_sweep(s_g, alpha, beta, targets, lam: float, rows, zetas=ZETAS) -> list[dict]:
    """Pseudo-label mAP of S_ag and y0 for every zeta: cheap, from the stored alpha and beta."""
    out = []
    for z in zetas:
        out.append(
            {
                "zeta": z,
                "aggregated": _map(aggregate_local(alpha, beta, z), targets, rows),
                "y0": _map(initial_labels(s_g, alpha, beta, z, lam), targets, rows),
            }
        )
    return out


def _thumb(image: np.ndarray, path: str, size: int = 160) -> None:
    from PIL import Image

    im = Image.fromarray(image)
    im.thumbnail((size, size))
    im.save(path)


def _tiles_figure(
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
        name, p = _top(tiles[j].astype(np.float32), classes, 1)[0]
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


def _sweep_figure(
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


def _curves_figure(records: list[dict], path: str, caveat: str | None = None) -> None:
    plt = pyplot()
    epochs = [r for r in records if r.get("epoch", 0) >= 1]
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    axes[0].plot([r["epoch"] for r in epochs], [r.get("loss") for r in epochs], marker="o", ms=3)
    axes[0].set_title("training loss", fontsize=9)
    val = [r for r in epochs if r.get("val_map") is not None]
    axes[1].plot([r["epoch"] for r in val], [r["val_map"] for r in val], marker="o", ms=3, color="C1")
    axes[1].set_title("classifier mAP (validation)", fontsize=9)
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
    save_figure(fig, path, caveat)


def gather(
    store_url: str,
    run_dir: str | None = None,
    eval_json: str | None = None,
    max_images: int = 24,
    sources: Mapping[str, str] | None = None,
) -> dict:
    """Everything the report shows, as plain data (also written as report.json). ``sources``
    (image id -> what it is, e.g. photo or filler) adds a column to the per-image table."""
    store = open_verified(store_url)
    classes = store.classes
    status = store.read(layout.STATUS)
    ok = status == layout.OK
    s_g, alpha, beta = (store.read(n) for n in (layout.SIM_GLOBAL, layout.SIM_ALPHA, layout.SIM_BETA))
    r0 = store.round_array(0).attrs.asdict() if 0 in store.label_rounds() else {}
    zeta, lam = float(r0.get("zeta", 0.5)), float(r0.get("lam", 0.0))
    y0 = initial_labels(s_g, alpha, beta, zeta, lam)
    s_ag = aggregate_local(alpha, beta, zeta)
    targets = store.read(layout.TARGETS) if store.has(layout.TARGETS) else None
    data = {
        "store": store.url,
        "classes": classes,
        "model": store.attrs.get("model", {}),
        "tiling": store.attrs.get("tiling", {}),
        "summary": store.attrs.get("summary", {}),
        "zeta": zeta,
        "lam": lam,
        "images": [],
    }
    if targets is not None and ok.any():
        data["pseudo_label_map"] = {
            "global": _map(s_g, targets, ok),
            "aggregated": _map(s_ag, targets, ok),
            "y0": _map(y0, targets, ok),
        }
        data["zeta_sweep"] = zeta_sweep(s_g, alpha, beta, targets, lam, ok)
        data["max_alpha"] = float(np.nanmax(alpha[ok]))
    ids = store.ids()
    for i in np.flatnonzero(ok)[:max_images]:
        truth = [classes[c] for c in np.flatnonzero(targets[i] == 1)] if targets is not None else None
        data["images"].append(
            {
                "row": int(i),
                "id": ids[i],
                "truth": truth,
                "S_g": _top(s_g[i], classes),
                "S_ag": _top(s_ag[i], classes),
                "y0": _top(y0[i], classes),
                **({"source": sources.get(ids[i], "?")} if sources else {}),
            }
        )
    if run_dir and os.path.exists(os.path.join(run_dir, "metrics.jsonl")):
        with open(os.path.join(run_dir, "metrics.jsonl")) as f:
            data["training"] = [json.loads(line) for line in f if line.strip()]
    if eval_json and os.path.exists(eval_json):
        with open(eval_json) as f:
            data["eval"] = json.load(f)
    return data


MANIFEST = ".cdul-report"  # in the report folder: the files the report wrote, one a line


def _written_before(out_dir: str) -> list[str]:
    """The files an earlier report wrote into out_dir; refuses a folder it did not make."""
    if not os.path.exists(out_dir):
        return []
    if not os.path.isdir(out_dir):
        raise ValueError(f"--out {out_dir} is a file, not a folder")
    try:
        with open(os.path.join(out_dir, MANIFEST), encoding="utf-8") as f:
            names = f.read().splitlines()
    except FileNotFoundError:
        if os.listdir(out_dir):
            raise ValueError(
                f"--out {out_dir} is not empty and holds no cdul report; choose a new or empty folder"
            ) from None
        return []
    # only plain relative names inside the folder, whatever the list says
    return [n for n in names if n and not os.path.isabs(n) and ".." not in n.split("/")]


def _move_in(tmp: str, out_dir: str, old: list[str]) -> None:
    """Replace the files of the old report by those built in tmp, touching nothing else."""
    for name in old:
        path = os.path.join(out_dir, name)
        if os.path.isfile(path) and not os.path.islink(path):
            os.remove(path)
    new = sorted(
        os.path.relpath(os.path.join(d, f), tmp).replace(os.sep, "/") for d, _, files in os.walk(tmp) for f in files
    )
    for name in new:
        os.makedirs(os.path.dirname(os.path.join(out_dir, name)), exist_ok=True)
        os.replace(os.path.join(tmp, name), os.path.join(out_dir, name))
    fs.atomic_write_text(os.path.join(out_dir, MANIFEST), "".join(n + "\n" for n in new))


def write_report(
    out_dir: str,
    store_url: str,
    run_dir: str | None = None,
    eval_json: str | None = None,
    max_images: int = 24,
    sources: Mapping[str, str] | None = None,
    note: str | None = None,
) -> str:
    """Build the report next to out_dir and move it in; returns the path of index.html.
    ``note``: a paragraph about the data, shown under the header."""
    old = _written_before(out_dir)
    data = gather(store_url, run_dir, eval_json, max_images, sources)
    if note:
        data["note"] = note
    store = Store.open(store_url)
    root = store.attrs.get("dataset", {}).get("root", "")
    parent = os.path.dirname(os.path.abspath(out_dir)) or "."
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".report-", dir=parent)
    try:
        _build(tmp, data, store, root)
        _move_in(tmp, out_dir, old)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # holds only what _build wrote
    return os.path.join(out_dir, "index.html")


def _image(root: str, rel: str) -> np.ndarray | None:
    try:
        return decode_image(fs.read_bytes(fs.join(root, rel)))
    except Exception:  # a thumbnail that cannot be made is left out, the report goes on
        return None


def caveats(data: dict) -> tuple[str | None, str | None]:
    """(for CLIP's scores, for the classifier's): why the numbers mean nothing, or None."""
    clip_random = data["model"].get("pretrained") in (None, "none")
    records = data.get("training") or [{}]
    init = data.get("eval", {}).get("weights") or records[0].get("weights")
    clip = "Random CLIP weights: these scores are meaningless." if clip_random else None
    why = (["trained on pseudo labels from a CLIP with random weights"] if clip_random else []) + (
        ["started from random weights"] if init == "none" else []
    )
    classifier = f"This classifier was {' and '.join(why)}: its scores are meaningless." if why else None
    return clip, classifier


def _build(folder: str, data: dict, store: Store, root: str) -> None:
    from cdul.extractor.tiling import Tiling

    os.makedirs(os.path.join(folder, "img"))
    classes = data["classes"]
    md, body = [], []
    clip_caveat, classifier_caveat = caveats(data)

    def paragraph(text: str, warning: bool = False):
        md.extend(["", f"> **Warning.** {text}" if warning else text, ""])
        body.append(
            f"<p class='warn'><b>Warning.</b> {html.escape(text)}</p>" if warning else f"<p>{html.escape(text)}</p>"
        )

    def section(title: str, caveat: str | None):
        md.extend(["", f"## {title}", ""])
        body.append(f"<h2>{html.escape(title)}</h2>")
        if caveat:
            paragraph(caveat, warning=True)

    model = data["model"]
    tiling = str(Tiling.from_description(data["tiling"])) if data["tiling"] else "no tiles"
    weights = "random" if clip_caveat else model.get("pretrained", "?")
    header = (
        f"{data['summary'].get('images', '?')} images, {len(classes)} classes, model {model.get('name', '?')} "
        f"({weights} weights), {tiling}."
    )
    md += ["# cdul report", "", f"Store `{data['store']}`: {header}"]
    body.append(f"<h1>cdul report</h1><p>Store <code>{html.escape(data['store'])}</code>: {html.escape(header)}</p>")
    if clip_caveat:
        paragraph(
            "These scores come from a CLIP with random weights: they are meaningless. Run the same command "
            "on a machine that can download the weights (or pass --pretrained FILE) for real ones.",
            True,
        )
    if data.get("note"):
        paragraph(data["note"])

    if "pseudo_label_map" in data:
        section("Pseudo-label mAP against the ground truth", clip_caveat)
        m = data["pseudo_label_map"]
        rows = [
            ("S_g (global view)", m["global"]),
            (f"S_ag (aggregated local, zeta {data['zeta']:g})", m["aggregated"]),
            (f"y0 (initial pseudo label, lambda {data['lam']:g})", m["y0"]),
        ]
        md += ["| similarity | mAP |", "|---|---:|"] + [f"| {n} | {v:.2f} |" for n, v in rows]
        body.append(
            "<table><tr><th>similarity</th><th>mAP</th></tr>"
            + "".join(f"<tr><td>{html.escape(n)}</td><td>{v:.2f}</td></tr>" for n, v in rows)
            + "</table>"
        )
        _sweep_figure(
            data["zeta_sweep"],
            data["zeta"],
            data["lam"],
            data["max_alpha"],
            os.path.join(folder, "zeta_sweep.png"),
            clip_caveat,
        )
        paragraph(
            f"Sweep over zeta, recomputed from the stored alpha and beta. S_ag takes alpha for a class where "
            f"alpha >= zeta and beta elsewhere, so the curves move only where zeta passes some image's alpha: "
            f"above the largest alpha ({data['max_alpha']:.2f} here) S_ag is beta everywhere and they are "
            "flat. mAP ranks the images of each class, so a stretch of zeta that changes no ranking is flat "
            "too."
        )
        md += ["", "![zeta sweep](zeta_sweep.png)", "", "| zeta | S_ag | y0 |", "|---:|---:|---:|"] + [
            f"| {r['zeta']:.2f} | {r['aggregated']:.2f} | {r['y0']:.2f} |" for r in data["zeta_sweep"]
        ]
        body.append("<img src='zeta_sweep.png' alt='zeta sweep'>")

    section("Per image: top classes", clip_caveat)
    cols = [
        "image",
        *(["source"] if data.get("images") and "source" in data["images"][0] else []),
        "ground truth",
        "S_g",
        "S_ag",
        "y0",
    ]
    md += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    rows_html = []
    for rec in data["images"]:
        image = _image(root, rec["id"])
        thumb = f"img/{rec['row']:06d}.png"
        if image is not None:
            _thumb(image, os.path.join(folder, thumb))
        truth = ", ".join(rec["truth"]) if rec["truth"] is not None else "-"
        cells = [
            *([rec["source"]] if "source" in cols else []),
            truth or "(none of the classes)",
            *(_fmt_top(rec[k]) for k in ("S_g", "S_ag", "y0")),
        ]
        md.append(f"| ![]({thumb}) `{rec['id']}` | " + " | ".join(cells) + " |")
        img_tag = f"<img src='{thumb}' alt=''><br>" if image is not None else ""
        rows_html.append(
            f"<tr><td>{img_tag}<code>{html.escape(rec['id'])}</code></td>"
            + "".join(f"<td>{html.escape(c)}</td>" for c in cells)
            + "</tr>"
        )
    body.append("<table><tr>" + "".join(f"<th>{c}</th>" for c in cols) + "</tr>" + "".join(rows_html) + "</table>")

    if store.has(layout.SIM_TILES):
        n_tiles = store.read(layout.N_TILES)
        candidates = [r["row"] for r in data["images"] if n_tiles[r["row"]] > 1 and r["truth"]] or [
            r["row"] for r in data["images"] if n_tiles[r["row"]] > 1
        ]
        if candidates:
            row = candidates[0]
            image = _image(root, store.ids()[row])
            if image is not None:
                tiles = store.array(layout.SIM_TILES)[row]
                _tiles_figure(
                    image,
                    tiles,
                    int(n_tiles[row]),
                    data["tiling"],
                    classes,
                    os.path.join(folder, "tiles.png"),
                    clip_caveat,
                )
                section("One image, its tiles and their top class", clip_caveat)
                md += [f"`{store.ids()[row]}`", "", "![tiles](tiles.png)"]
                body.append(f"<p><code>{html.escape(store.ids()[row])}</code></p><img src='tiles.png' alt='tiles'>")

    if data.get("training"):
        caveat = classifier_caveat or clip_caveat
        section("Training", caveat)
        _curves_figure(data["training"], os.path.join(folder, "curves.png"), caveat)
        md += [
            "![training curves](curves.png)",
            "",
            "| epoch | loss | val mAP | pseudo-label mAP | img/s |",
            "|---:|---:|---:|---:|---:|",
        ]
        for r in data["training"]:
            if r.get("epoch", 0) >= 1:
                md.append(
                    f"| {r['epoch']} | {_num(r.get('loss'))} | {_num(r.get('val_map'))} | "
                    f"{_num(r.get('pseudo_map'))} | {_num(r.get('images_per_s'), '.1f')} |"
                )
        body.append("<img src='curves.png' alt='training curves'>")

    if data.get("eval"):
        ev = data["eval"]
        section(f"Classifier on {ev.get('dataset', '')} {ev.get('split', '')}: mAP {ev['map']:.2f}", classifier_caveat)
        ap_chart(
            os.path.join(folder, "per_class_ap.png"),
            ev["ap"],
            ev["map"],
            "per-class AP (classes without a positive left out)",
            classifier_caveat,
        )
        md += [
            f"CF1 {ev['CF1']:.3f}, OF1 {ev['OF1']:.3f} at threshold {ev['threshold']}.",
            "",
            "![per-class AP](per_class_ap.png)",
        ]
        body.append(
            f"<p>CF1 {ev['CF1']:.3f}, OF1 {ev['OF1']:.3f} at threshold {ev['threshold']}.</p>"
            "<img src='per_class_ap.png' alt='per-class AP'>"
        )

    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;"
        "font-size:13px;vertical-align:top}.warn{background:#fff3cd;padding:8px;border:1px solid #e0c060}"
        "img{max-width:100%}"
    )
    with open(os.path.join(folder, "index.html"), "w", encoding="utf-8") as f:
        f.write(
            f"<!doctype html><html><head><meta charset='utf-8'><title>cdul report</title>"
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n"
        )
    with open(os.path.join(folder, "report.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(md) + "\n")
    with open(os.path.join(folder, "report.json"), "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, default=_plain)


def _num(v, spec: str = ".3f") -> str:
    return "-" if v is None else format(v, spec)


def _plain(v):
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    raise TypeError(type(v).__name__)
