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


class _Page:
    """The report as it is written: the Markdown lines and the HTML body side by side, the
    folder its pictures go to, and the two caveats (CLIP's scores, the classifier's)."""

    def __init__(self, folder: str, data: dict):
        self.folder, self.data = folder, data
        self.md: list[str] = []
        self.body: list[str] = []
        self.clip_caveat, self.classifier_caveat = caveats(data)

    def path(self, name: str) -> str:
        return os.path.join(self.folder, name)

    def paragraph(self, text: str, warning: bool = False) -> None:
        self.md.extend(["", f"> **Warning.** {text}" if warning else text, ""])
        self.body.append(
            f"<p class='warn'><b>Warning.</b> {html.escape(text)}</p>" if warning else f"<p>{html.escape(text)}</p>"
        )

    def section(self, title: str, caveat: str | None) -> None:
        self.md.extend(["", f"## {title}", ""])
        self.body.append(f"<h2>{html.escape(title)}</h2>")
        if caveat:
            self.paragraph(caveat, warning=True)


def build_page(folder: str, data: dict, store: Store, root: str) -> None:
    """Write index.html, report.md, report.json and their pictures into ``folder``."""
    os.makedirs(os.path.join(folder, "img"))
    page = _Page(folder, data)
    read = sample_reader(str(store.section("dataset").get("kind", "folder")), root)
    _header(page)
    if "pseudo_label_map" in data:
        _pseudo_label_section(page)
    _images_section(page, read)
    if store.has(layout.SIM_TILES):
        _tiles_section(page, store, read)
    if data.get("training"):
        _training_section(page)
    if data.get("eval"):
        _eval_section(page)
    _write_files(page)


def _header(page: _Page) -> None:
    """The title line: the store, its size, its CLIP and its tiling, and the warnings."""
    from cdul.extractor.tiling import describe_local

    data = page.data
    model = data["model"]
    tiling = describe_local(data["tiling"])
    weights = "random" if page.clip_caveat else model.get("pretrained", "?")
    header = (
        f"{data['summary'].get('images', '?')} images, {len(data['classes'])} classes, model "
        f"{model.get('name', '?')} ({weights} weights), {tiling}."
    )
    page.md += ["# cdul report", "", f"Store `{data['store']}`: {header}"]
    page.body.append(
        f"<h1>cdul report</h1><p>Store <code>{html.escape(data['store'])}</code>: {html.escape(header)}</p>"
    )
    if page.clip_caveat:
        page.paragraph(
            "These scores come from a CLIP with random weights: they are meaningless. Run the same command "
            "on a machine that can download the weights (or pass --pretrained FILE) for real ones.",
            True,
        )
    if data.get("note"):
        page.paragraph(data["note"])


def _pseudo_label_section(page: _Page) -> None:
    """The mAP of S_g, S_ag and y0, and its sweep over zeta."""
    data = page.data
    page.section("Pseudo-label mAP against the ground truth", page.clip_caveat)
    m = data["pseudo_label_map"]
    rows = [
        ("S_g (global view)", m["global"]),
        (f"S_ag (aggregated local, zeta {data['zeta']:g})", m["aggregated"]),
        (f"y0 (initial pseudo label, lambda {data['lam']:g})", m["y0"]),
    ]
    page.md += ["| similarity | mAP |", "|---|---:|"] + [f"| {n} | {v:.2f} |" for n, v in rows]
    page.body.append(
        "<table><tr><th>similarity</th><th>mAP</th></tr>"
        + "".join(f"<tr><td>{html.escape(n)}</td><td>{v:.2f}</td></tr>" for n, v in rows)
        + "</table>"
    )
    sweep_figure(
        data["zeta_sweep"], data["zeta"], data["lam"], data["max_alpha"], page.path("zeta_sweep.png"), page.clip_caveat
    )
    page.paragraph(
        f"Sweep over zeta, recomputed from the stored alpha and beta. S_ag takes alpha for a class where "
        f"alpha >= zeta and beta elsewhere, so the curves move only where zeta passes some image's alpha: "
        f"above the largest alpha ({data['max_alpha']:.2f} here) S_ag is beta everywhere and they are "
        "flat. mAP ranks the images of each class, so a stretch of zeta that changes no ranking is flat "
        "too."
    )
    page.md += ["", "![zeta sweep](zeta_sweep.png)", "", "| zeta | S_ag | y0 |", "|---:|---:|---:|"] + [
        f"| {r['zeta']:.2f} | {r['aggregated']:.2f} | {r['y0']:.2f} |" for r in data["zeta_sweep"]
    ]
    page.body.append("<img src='zeta_sweep.png' alt='zeta sweep'>")


def _image_columns(data: dict) -> list[str]:
    """The per-image table's columns: a source column where the images have one, the latest
    label round where there is one beside y0."""
    cols = [
        "image",
        *(["source"] if data.get("images") and "source" in data["images"][0] else []),
        "ground truth",
        "S_g",
        "S_ag",
        "y0",
    ]
    if data.get("latest_round"):
        cols.append(f"round {data['latest_round']}")
    return cols


def _images_section(page: _Page, read) -> None:
    """Per image: a thumbnail, the ground truth and the top classes of each score."""
    data = page.data
    page.section("Per image: top classes", page.clip_caveat)
    cols = _image_columns(data)
    latest = data.get("latest_round")
    page.md += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    rows_html: list[str] = []
    failures: list[str] = []
    for rec in data["images"]:
        image = _load_image(read, rec["id"], failures)
        thumb = f"img/{rec['row']:06d}.png"
        if image is not None:
            thumbnail(image, page.path(thumb))
        truth = ", ".join(rec["truth"]) if rec["truth"] is not None else "-"
        cells = [
            *([rec["source"]] if "source" in cols else []),
            truth or "(none of the classes)",
            *(_fmt_top(rec[k]) for k in ("S_g", "S_ag", "y0", *(["latest"] if latest else []))),
        ]
        page.md.append(f"| {f'![]({thumb}) ' if image is not None else ''}`{rec['id']}` | " + " | ".join(cells) + " |")
        img_tag = f"<img src='{thumb}' alt=''><br>" if image is not None else ""
        rows_html.append(
            f"<tr><td>{img_tag}<code>{html.escape(rec['id'])}</code></td>"
            + "".join(f"<td>{html.escape(c)}</td>" for c in cells)
            + "</tr>"
        )
    page.body.append("<table><tr>" + "".join(f"<th>{c}</th>" for c in cols) + "</tr>" + "".join(rows_html) + "</table>")
    if failures:
        page.paragraph(f"{len(failures)} images could not be read for their thumbnails; the first: {failures[0]}")


def _tiles_section(page: _Page, store: Store, read) -> None:
    """One image cut into its tiles, each with its top class: the first listed image with
    tiles and a ground truth (or with tiles at all) that can be read."""
    data = page.data
    n_tiles = store.read(layout.N_TILES)
    candidates = [r["row"] for r in data["images"] if n_tiles[r["row"]] > 1 and r["truth"]] or [
        r["row"] for r in data["images"] if n_tiles[r["row"]] > 1
    ]
    if not candidates:
        return
    row = candidates[0]
    image = _load_image(read, store.ids()[row])
    if image is None:
        return
    tiles = np.asarray(store.array(layout.SIM_TILES)[row])
    tiles_figure(
        image, tiles, int(n_tiles[row]), data["tiling"], data["classes"], page.path("tiles.png"), page.clip_caveat
    )
    page.section("One image, its tiles and their top class", page.clip_caveat)
    page.md += [f"`{store.ids()[row]}`", "", "![tiles](tiles.png)"]
    page.body.append(f"<p><code>{html.escape(store.ids()[row])}</code></p><img src='tiles.png' alt='tiles'>")


def _training_section(page: _Page) -> None:
    """The run's curves and its table of epochs."""
    records = page.data["training"]
    caveat = page.classifier_caveat or page.clip_caveat
    page.section("Training", caveat)
    curves_figure(records, page.path("curves.png"), caveat)
    page.md += [
        "![training curves](curves.png)",
        "",
        "| epoch | loss | val mAP | pseudo-label mAP | img/s |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in records:
        if r.get("epoch", 0) >= 1:
            page.md.append(
                f"| {r['epoch']} | {_num(r.get('loss'))} | {_num(r.get('val_map'))} | "
                f"{_num(r.get('pseudo_map'))} | {_num(r.get('images_per_s'), '.1f')} |"
            )
    page.body.append("<img src='curves.png' alt='training curves'>")


def _eval_section(page: _Page) -> None:
    """The classifier's mAP, CF1 and OF1 on the evaluated split, and its per-class AP."""
    ev = page.data["eval"]
    caveat = page.classifier_caveat
    page.section(f"Classifier on {ev.get('dataset', '')} {ev.get('split', '')}: mAP {ev['map']:.2f}", caveat)
    ap_chart(
        page.path("per_class_ap.png"), ev["ap"], ev["map"], "per-class AP (classes without a positive left out)", caveat
    )
    f1 = f"CF1 {ev['CF1']:.3f}, OF1 {ev['OF1']:.3f} at threshold {ev['threshold']}."
    page.md += [f1, "", "![per-class AP](per_class_ap.png)"]
    page.body.append(f"<p>{f1}</p><img src='per_class_ap.png' alt='per-class AP'>")


STYLE = (
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;"
    "font-size:13px;vertical-align:top}.warn{background:#fff3cd;padding:8px;border:1px solid #e0c060}"
    "img{max-width:100%}"
)


def _write_files(page: _Page) -> None:
    """index.html, report.md and report.json."""
    with open(page.path("index.html"), "w", encoding="utf-8") as f:
        f.write(
            f"<!doctype html><html><head><meta charset='utf-8'><title>cdul report</title>"
            f"<style>{STYLE}</style></head><body>{''.join(page.body)}</body></html>\n"
        )
    with open(page.path("report.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(page.md) + "\n")
    with open(page.path("report.json"), "w", encoding="utf-8") as f:
        json.dump(page.data, f, indent=1, default=_plain)


def _num(v, spec: str = ".3f") -> str:
    return "-" if v is None else format(v, spec)


def _plain(v):
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    raise TypeError(type(v).__name__)
