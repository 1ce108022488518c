"""The report's pages: index.html, report.md and report.json, with their pictures."""

from __future__ import annotations

import html
import json
import os

import numpy as np

from cdul.data import sample_reader
from cdul.data.decode import decode_image
from cdul.store import Store, layout

from .eval_report import ap_chart
from .figures import curves_figure, sweep_figure, thumbnail, tiles_figure


def _fmt_top(top) -> str:
    return ", ".join(f"{name} {score:.2f}" for name, score in top)


def _load_image(read, rel: str, failures: list[str] | None = None) -> np.ndarray | None:
    """The image ``rel`` through ``read`` (the dataset's own reader: files, or tar shard
    members); None where it cannot be had, with the reason appended to ``failures``."""
    try:
        return decode_image(read(rel))
    except Exception as exc:  # a thumbnail that cannot be made is left out, the report goes on
        if failures is not None:
            failures.append(f"{rel}: {exc}")
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


def build_page(folder: str, data: dict, store: Store, root: str) -> None:
    from cdul.extractor.tiling import describe_local

    os.makedirs(os.path.join(folder, "img"))
    classes = data["classes"]
    md, body = [], []
    clip_caveat, classifier_caveat = caveats(data)
    read = sample_reader(str(store.section("dataset").get("kind", "folder")), root)

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
    tiling = describe_local(data["tiling"])
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
        sweep_figure(
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
    latest = data.get("latest_round")
    if latest:
        cols.append(f"round {latest}")
    md += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    rows_html: list[str] = []
    failures: list[str] = []
    for rec in data["images"]:
        image = _load_image(read, rec["id"], failures)
        thumb = f"img/{rec['row']:06d}.png"
        if image is not None:
            thumbnail(image, os.path.join(folder, thumb))
        truth = ", ".join(rec["truth"]) if rec["truth"] is not None else "-"
        cells = [
            *([rec["source"]] if "source" in cols else []),
            truth or "(none of the classes)",
            *(_fmt_top(rec[k]) for k in ("S_g", "S_ag", "y0", *(["latest"] if latest else []))),
        ]
        md.append(f"| {f'![]({thumb}) ' if image is not None else ''}`{rec['id']}` | " + " | ".join(cells) + " |")
        img_tag = f"<img src='{thumb}' alt=''><br>" if image is not None else ""
        rows_html.append(
            f"<tr><td>{img_tag}<code>{html.escape(rec['id'])}</code></td>"
            + "".join(f"<td>{html.escape(c)}</td>" for c in cells)
            + "</tr>"
        )
    body.append("<table><tr>" + "".join(f"<th>{c}</th>" for c in cols) + "</tr>" + "".join(rows_html) + "</table>")
    if failures:
        paragraph(f"{len(failures)} images could not be read for their thumbnails; the first: {failures[0]}")

    if store.has(layout.SIM_TILES):
        n_tiles = store.read(layout.N_TILES)
        candidates = [r["row"] for r in data["images"] if n_tiles[r["row"]] > 1 and r["truth"]] or [
            r["row"] for r in data["images"] if n_tiles[r["row"]] > 1
        ]
        if candidates:
            row = candidates[0]
            image = _load_image(read, store.ids()[row])
            if image is not None:
                tiles = np.asarray(store.array(layout.SIM_TILES)[row])
                tiles_figure(
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
        curves_figure(data["training"], os.path.join(folder, "curves.png"), caveat)
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
