"""A report people can look at: what CLIP said about each image, how the pseudo labels
score, how training went. One folder with ``index.html``, ``report.md``, ``report.json``
and PNGs, built aside and moved in, so a reader never sees a half-written file. The folder
keeps a list of the files the report wrote (``.cdul-report``): a new report replaces those
and nothing else, and a non-empty folder without that list is refused.

Sections: the pseudo-label mAP of S_g, S_ag and y0 and its sweep over zeta (recomputed
from the stored alpha and beta, no re-extraction); per-image top classes from S_g, S_ag
and y0 next to the ground truth; one image cut into its tiles with each tile's top class;
training curves (loss, classifier mAP, pseudo-label mAP per round); per-class AP bars.
"""
from __future__ import annotations

import html
import json
import os
import shutil
import tempfile

import numpy as np

from cdul.data import fs
from cdul.data.decode import decode_image
from cdul.kernels import aggregate_local, initial_labels
from cdul.metrics import mean_ap
from cdul.store import Store, layout, open_verified

ZETAS = tuple(round(z, 2) for z in np.arange(0.0, 0.95, 0.05))


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _top(row: np.ndarray, classes: list[str], k: int = 3) -> list[tuple[str, float]]:
    order = np.argsort(-row)[:k]
    return [(classes[i], float(row[i])) for i in order]


def _fmt_top(top) -> str:
    return ", ".join(f"{name} {score:.2f}" for name, score in top)


def zeta_sweep(s_g, alpha, beta, targets, lam: float, rows, zetas=ZETAS) -> list[dict]:
    """Pseudo-label mAP of S_ag and y0 for every zeta: cheap, from the stored alpha and beta."""
    out = []
    for z in zetas:
        out.append({"zeta": z, "aggregated": 100 * mean_ap(aggregate_local(alpha, beta, z), targets, rows=rows),
                    "y0": 100 * mean_ap(initial_labels(s_g, alpha, beta, z, lam), targets, rows=rows)})
    return out


def _thumb(image: np.ndarray, path: str, size: int = 160) -> None:
    from PIL import Image

    im = Image.fromarray(image)
    im.thumbnail((size, size))
    im.save(path)


def _tiles_figure(image: np.ndarray, tiles: np.ndarray, n_tiles: int, tiling: dict, classes, path: str) -> None:
    """The image with its grid drawn and each tile's top class written in it."""
    from cdul.extractor.tiling import Tiling

    plt = _plt()
    mode = tiling.get("mode", "grid")
    t = Tiling.grid(tiling["G"]) if mode == "grid" else Tiling.pixel(tiling["P"])
    h, w = image.shape[:2]
    fig, ax = plt.subplots(figsize=(6, 6 * h / max(w, 1)))
    ax.imshow(image)
    for j, (top, left, th, tw) in enumerate(t.boxes(h, w)[:n_tiles]):
        ax.add_patch(plt.Rectangle((left, top), tw, th, fill=False, color="yellow", lw=1.5))
        name, p = _top(tiles[j].astype(np.float32), classes, 1)[0]
        ax.text(left + 4, top + 14, f"{name}\n{p:.2f}", color="white", fontsize=7,
                bbox=dict(facecolor="black", alpha=0.55, pad=1.5, lw=0))
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _sweep_figure(sweep: list[dict], chosen: float, path: str) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    zs = [r["zeta"] for r in sweep]
    ax.plot(zs, [r["aggregated"] for r in sweep], marker="o", ms=3, label="S_ag (aggregated local)")
    ax.plot(zs, [r["y0"] for r in sweep], marker="o", ms=3, label="y0 (initial label)")
    ax.axvline(chosen, color="grey", ls="--", lw=1)
    ax.set_xlabel("zeta")
    ax.set_ylabel("pseudo-label mAP")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _curves_figure(records: list[dict], path: str) -> None:
    plt = _plt()
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

    for ax, label in zip(axes, ("epoch", "epoch", "round")):
        ax.set_xlabel(label)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _ap_figure(ap: dict, path: str, title: str = "") -> None:
    plt = _plt()
    names = [n for n, v in ap.items() if v is not None]  # classes with no positive have no AP
    fig, ax = plt.subplots(figsize=(max(5, 0.38 * len(names) + 1.5), 3.4))
    ax.bar(range(len(names)), [ap[n] for n in names], color="C0")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("AP")
    ax.set_ylim(0, 100)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def gather(store_url: str, run_dir: str | None = None, eval_json: str | None = None, max_images: int = 24) -> dict:
    """Everything the report shows, as plain data (also written as report.json)."""
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
    data = {"store": store.url, "classes": classes, "model": store.attrs.get("model", {}),
            "tiling": store.attrs.get("tiling", {}), "summary": store.attrs.get("summary", {}),
            "zeta": zeta, "lam": lam, "images": []}
    if targets is not None and ok.any():
        data["pseudo_label_map"] = {"global": 100 * mean_ap(s_g, targets, rows=ok),
                                    "aggregated": 100 * mean_ap(s_ag, targets, rows=ok),
                                    "y0": 100 * mean_ap(y0, targets, rows=ok)}
        data["zeta_sweep"] = zeta_sweep(s_g, alpha, beta, targets, lam, ok)
    ids = store.ids()
    for i in np.flatnonzero(ok)[:max_images]:
        truth = [classes[c] for c in np.flatnonzero(targets[i] == 1)] if targets is not None else None
        data["images"].append({"row": int(i), "id": ids[i], "truth": truth, "S_g": _top(s_g[i], classes),
                               "S_ag": _top(s_ag[i], classes), "y0": _top(y0[i], classes)})
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
            raise ValueError(f"--out {out_dir} is not empty and holds no cdul report; choose a new or empty "
                             "folder") from None
        return []
    # only plain relative names inside the folder, whatever the list says
    return [n for n in names if n and not os.path.isabs(n) and ".." not in n.split("/")]


def _move_in(tmp: str, out_dir: str, old: list[str]) -> None:
    """Replace the files of the old report by those built in tmp, touching nothing else."""
    for name in old:
        path = os.path.join(out_dir, name)
        if os.path.isfile(path) and not os.path.islink(path):
            os.remove(path)
    new = sorted(os.path.relpath(os.path.join(d, f), tmp).replace(os.sep, "/")
                 for d, _, files in os.walk(tmp) for f in files)
    for name in new:
        os.makedirs(os.path.dirname(os.path.join(out_dir, name)), exist_ok=True)
        os.replace(os.path.join(tmp, name), os.path.join(out_dir, name))
    fs.atomic_write_text(os.path.join(out_dir, MANIFEST), "".join(n + "\n" for n in new))


def write_report(out_dir: str, store_url: str, run_dir: str | None = None, eval_json: str | None = None,
                 max_images: int = 24) -> str:
    """Build the report next to out_dir and move it in; returns the path of index.html."""
    old = _written_before(out_dir)
    data = gather(store_url, run_dir, eval_json, max_images)
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


def _build(folder: str, data: dict, store: Store, root: str) -> None:
    os.makedirs(os.path.join(folder, "img"))
    classes = data["classes"]
    md, body = [], []

    def section(title: str):
        md.extend(["", f"## {title}", ""])
        body.append(f"<h2>{html.escape(title)}</h2>")

    model = data["model"]
    random_weights = model.get("pretrained") in (None, "none")
    md += ["# cdul report", "", f"Store `{data['store']}`: {data['summary'].get('images', '?')} images, "
           f"{len(classes)} classes, model {model.get('name', '?')} ({model.get('pretrained', '?')} weights), "
           f"tiling {data['tiling']}."]
    body.append(f"<h1>cdul report</h1><p>Store <code>{html.escape(data['store'])}</code>: "
                f"{data['summary'].get('images', '?')} images, {len(classes)} classes, model "
                f"{html.escape(str(model.get('name', '?')))} ({html.escape(str(model.get('pretrained', '?')))} "
                f"weights), tiling {html.escape(str(data['tiling']))}.</p>")
    if random_weights:
        warning = ("These scores come from a CLIP with random weights: they are meaningless. Run the same "
                   "command on a machine that can download the weights (or pass --pretrained FILE) for real ones.")
        md += ["", f"> **Warning.** {warning}"]
        body.append(f"<p class='warn'><b>Warning.</b> {html.escape(warning)}</p>")

    if "pseudo_label_map" in data:
        section("Pseudo-label mAP against the ground truth")
        m = data["pseudo_label_map"]
        rows = [("S_g (global view)", m["global"]), ("S_ag (aggregated local, zeta %g)" % data["zeta"], m["aggregated"]),
                ("y0 (initial pseudo label, lambda %g)" % data["lam"], m["y0"])]
        md += ["| similarity | mAP |", "|---|---:|"] + [f"| {n} | {v:.2f} |" for n, v in rows]
        body.append("<table><tr><th>similarity</th><th>mAP</th></tr>" + "".join(
            f"<tr><td>{html.escape(n)}</td><td>{v:.2f}</td></tr>" for n, v in rows) + "</table>")
        _sweep_figure(data["zeta_sweep"], data["zeta"], os.path.join(folder, "zeta_sweep.png"))
        md += ["", "Sweep over zeta (from the stored alpha and beta):", "", "![zeta sweep](zeta_sweep.png)", "",
               "| zeta | S_ag | y0 |", "|---:|---:|---:|"] + [
            f"| {r['zeta']:.2f} | {r['aggregated']:.2f} | {r['y0']:.2f} |" for r in data["zeta_sweep"]]
        body.append("<p>Sweep over zeta, recomputed from the stored alpha and beta:</p>"
                    "<img src='zeta_sweep.png' alt='zeta sweep'>")

    section("Per image: top classes")
    md += ["| image | ground truth | S_g | S_ag | y0 |", "|---|---|---|---|---|"]
    rows_html = []
    for rec in data["images"]:
        image = _image(root, rec["id"])
        thumb = f"img/{rec['row']:06d}.png"
        if image is not None:
            _thumb(image, os.path.join(folder, thumb))
        truth = ", ".join(rec["truth"]) if rec["truth"] is not None else "-"
        truth = truth or "(none of the classes)"
        md.append(f"| ![]({thumb}) `{rec['id']}` | {truth} | {_fmt_top(rec['S_g'])} | {_fmt_top(rec['S_ag'])} | "
                  f"{_fmt_top(rec['y0'])} |")
        img_tag = f"<img src='{thumb}' alt=''><br>" if image is not None else ""
        rows_html.append(f"<tr><td>{img_tag}<code>{html.escape(rec['id'])}</code></td><td>{html.escape(truth)}</td>"
                         + "".join(f"<td>{html.escape(_fmt_top(rec[k]))}</td>" for k in ("S_g", "S_ag", "y0"))
                         + "</tr>")
    body.append("<table><tr><th>image</th><th>ground truth</th><th>S_g</th><th>S_ag</th><th>y0</th></tr>"
                + "".join(rows_html) + "</table>")

    if store.has(layout.SIM_TILES):
        n_tiles = store.read(layout.N_TILES)
        candidates = [r["row"] for r in data["images"] if n_tiles[r["row"]] > 1 and r["truth"]] or \
                     [r["row"] for r in data["images"] if n_tiles[r["row"]] > 1]
        if candidates:
            row = candidates[0]
            image = _image(root, store.ids()[row])
            if image is not None:
                tiles = store.array(layout.SIM_TILES)[row]
                _tiles_figure(image, tiles, int(n_tiles[row]), data["tiling"], classes,
                              os.path.join(folder, "tiles.png"))
                section("One image, its tiles and their top class")
                md += [f"`{store.ids()[row]}`", "", "![tiles](tiles.png)"]
                body.append(f"<p><code>{html.escape(store.ids()[row])}</code></p><img src='tiles.png' alt='tiles'>")

    if data.get("training"):
        section("Training")
        _curves_figure(data["training"], os.path.join(folder, "curves.png"))
        md += ["![training curves](curves.png)", "", "| epoch | loss | val mAP | pseudo-label mAP | img/s |",
               "|---:|---:|---:|---:|---:|"]
        for r in data["training"]:
            if r.get("epoch", 0) >= 1:
                md.append(f"| {r['epoch']} | {_num(r.get('loss'))} | {_num(r.get('val_map'))} | "
                          f"{_num(r.get('pseudo_map'))} | {_num(r.get('images_per_s'), '.1f')} |")
        body.append("<img src='curves.png' alt='training curves'>")

    if data.get("eval"):
        ev = data["eval"]
        section(f"Classifier on {ev.get('dataset', '')} {ev.get('split', '')}: mAP {ev['map']:.2f}")
        _ap_figure(ev["ap"], os.path.join(folder, "per_class_ap.png"),
                   f"per-class AP, mAP {ev['map']:.2f} (classes without a positive left out)")
        md += [f"CF1 {ev['CF1']:.3f}, OF1 {ev['OF1']:.3f} at threshold {ev['threshold']}.", "",
               "![per-class AP](per_class_ap.png)"]
        body.append(f"<p>CF1 {ev['CF1']:.3f}, OF1 {ev['OF1']:.3f} at threshold {ev['threshold']}.</p>"
                    "<img src='per_class_ap.png' alt='per-class AP'>")

    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;"
             "font-size:13px;vertical-align:top}.warn{background:#fff3cd;padding:8px;border:1px solid #e0c060}"
             "img{max-width:100%}")
    with open(os.path.join(folder, "index.html"), "w", encoding="utf-8") as f:
        f.write(f"<!doctype html><html><head><meta charset='utf-8'><title>cdul report</title>"
                f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n")
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
