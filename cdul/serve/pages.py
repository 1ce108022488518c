"""The HTML pages: each renders the very dict its JSON API returns (``/api`` + the page's
path), so what a script reads and what a person sees are the same numbers. Every value
from the store is escaped; links carry only store, class and row indices."""

from __future__ import annotations

import os
from html import escape
from urllib.parse import urlencode

from .charts import rounds_chart, tiles_picture

THUMB = 160


def page(title: str, body: str, s: int | None = None, store: str = "", query: str = "") -> str:
    nav = "<a class='brand' href='/'>cdul-serve</a>"
    if s is not None:
        nav += (
            f"<a href='/s/{s}/'>overview</a><span class='store' title='{escape(store)}'>"
            f"{escape(os.path.basename(store.rstrip('/')))}</span>"
            f"<form class='search' action='/s/{s}/search'><input name='q' placeholder='search by text' "
            f"value='{escape(query)}'><button>search</button></form>"
        )
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{escape(title)} - cdul-serve</title><link rel='stylesheet' href='/static/style.css'>"
        f"<script src='/static/app.js' defer></script></head><body><nav>{nav}</nav><main>{body}</main></body></html>"
    )


def error_page(status: int, message: str) -> str:
    return page(f"error {status}", f"<h1>Error {status}</h1><p class='warn'>{escape(message)}</p>")


CHIPS = 6  # labels a card lists; the rest are counted


def _chips(names: list[str], cls: dict[str, str] | None = None, limit: int = CHIPS) -> str:
    if not names:
        return "<span class='none'>none</span>"
    shown = "".join(f"<span class='chip {(cls or {}).get(n, '')}'>{escape(n)}</span>" for n in names[:limit])
    more = len(names) - limit
    return shown + (
        f"<span class='none' title='{escape(', '.join(names[limit:]))}'> +{more} more</span>" if more > 0 else ""
    )


def card(s: int, c: dict) -> str:
    """One image as a thumbnail with its score, decided labels and ground truth; a decided
    label the truth denies is marked wrong, a true one not decided is marked missed."""
    wrong, missed = c.get("wrong", []), c.get("missed", [])
    marks = {n: "wrong" if n in wrong else "right" for n in c["decided"]} if "truth" in c else {}
    truth = ""
    if "truth" in c:
        truth = f"<div class='labels'><b>truth</b> {_chips(c['truth'], dict.fromkeys(missed, 'missed'))}</div>"
    score = f"<div class='score'>{c['score']:.3f}</div>" if c.get("score") is not None else ""
    flag = " disagree" if wrong or missed else ""
    return (
        f"<a class='card{flag}' href='/s/{s}/image/{c['row']}' data-row='{c['row']}'>"
        f"<img src='/api/s/{s}/thumb/{c['row']}?size={THUMB}' loading='lazy' alt='{escape(c['id'])}'>"
        f"{score}<div class='id'>{escape(c['id'])}</div>"
        f"<div class='labels'><b>decided</b> {_chips(c['decided'], marks)}</div>{truth}</a>"
    )


def grid(s: int, cards: list[dict]) -> str:
    if not cards:
        return "<p class='none'>no images</p>"
    return "<div class='grid'>" + "".join(card(s, c) for c in cards) + "</div>"


def _select(name: str, options: list[tuple[str, str]], chosen: str, onchange: str = "this.form.submit()") -> str:
    opts = "".join(
        f"<option value='{escape(v)}'{' selected' if v == chosen else ''}>{escape(label)}</option>"
        for v, label in options
    )
    return f"<select name='{name}' onchange=\"{onchange}\">{opts}</select>"


def _caveat(text: str | None) -> str:
    return f"<p class='warn'><b>Warning.</b> {escape(text)}</p>" if text else ""


def overview_page(s: int, d: dict) -> str:
    model = d["model"]
    rows = [
        ("images", f"{d['n_images']} ({d['counts']['ok']} ok, {d['counts']['failed']} failed)"),
        ("classes", str(len(d["classes"]))),
        ("model", f"{model.get('name', '?')} ({model.get('pretrained', '?')} weights)" if model else "not recorded"),
        ("tiling", ", ".join(f"{k} {v}" for k, v in d["tiling"].items()) or "none"),
        ("dataset", f"{d['dataset']['kind']} at {d['dataset']['root'] or '?'} ({d['dataset']['split'] or '?'})"),
        ("kept", ", ".join(k for k, v in d["has"].items() if v) or "scores only"),
        ("decision rule", d["rule"]),
    ]
    body = f"<h1>Overview</h1>{_caveat(d['caveat'])}<table>" + "".join(
        f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows
    )
    body += "</table>"
    if d["pseudo_label_map"]:
        body += "<h2>Pseudo-label mAP against the ground truth</h2><table><tr><th>source</th><th>mAP (%)</th></tr>"
        body += "".join(
            f"<tr><td>{escape(k)}</td><td class='num'>{'-' if v is None else f'{v:.2f}'}</td></tr>"
            for k, v in d["pseudo_label_map"].items()
        )
        body += "</table>"
    has_truth = d["has"]["targets"]
    form = f"<form>counted on {_select('source', [(x, x) for x in d['sources']], d['source'])}</form>"
    body += f"<h2>Classes at the decision rule ({escape(d['rule'])})</h2>{form}<table class='classes'>"
    body += "<tr><th>class</th><th>decided</th>" + ("<th>ground truth</th>" if has_truth else "") + "</tr>"
    for c in d["per_class"]:
        link = f"/s/{s}/class/{c['index']}?{urlencode({'source': d['source']})}"
        truth = f"<td class='num'>{c['truth']}</td>" if has_truth else ""
        body += f"<tr><td><a href='{link}'>{escape(c['name'])}</a></td><td class='num'>{c['decided']}</td>{truth}</tr>"
    return page("overview", body + "</table>", s, d["store"])


def class_page(s: int, d: dict, classes: list[str]) -> str:
    name, c = d["class"]["name"], d["class"]["index"]
    go = f"location='/s/{s}/class/'+this.value+'?{urlencode({'source': d['source'], 'size': d['size']})}'"
    form = (
        f"<form class='controls'>{_select('source', [(x, x) for x in d['sources']], d['source'])}"
        f"<input type='hidden' name='size' value='{d['size']}'></form>"
        f"<form class='controls'>{_select('c', [(str(i), n) for i, n in enumerate(classes)], str(c), go)}</form>"
    )

    def link(p: int, label: str) -> str:
        q = urlencode({"source": d["source"], "page": p, "size": d["size"]})
        return f"<a href='/s/{s}/class/{c}?{q}'>{label}</a>"

    pager = (
        (link(d["page"] - 1, "&larr; previous") if d["page"] > 0 else "")
        + f" <span>page {d['page'] + 1} of {d['pages']}, {d['total']} images</span> "
        + (link(d["page"] + 1, "next &rarr;") if d["page"] + 1 < d["pages"] else "")
    )
    head = f"<h1>{escape(name)}</h1>{_caveat(d['caveat'])}<p>ranked by <b>{escape(d['source'])}</b>; "
    head += f"decided: {escape(d['rule'])}</p>"
    return page(name, head + form + f"<p class='pager'>{pager}</p>" + grid(s, d["images"]), s, d["store"])


def image_page(s: int, d: dict) -> str:
    head = f"<h1>{escape(d['id'])}</h1>{_caveat(d['caveat'])}<p>row {d['row']}, {escape(d['status'])}"
    if d.get("hw"):
        head += f", {d['hw'][1]} x {d['hw'][0]} px"
    head += f"{', ' + escape(d['error']) if d.get('error') else ''}</p>"
    truth = set(d.get("truth", []))
    if "decided" in d:
        marks = {n: ("right" if n in truth else "wrong") for n in d["decided"]} if "truth" in d else {}
        chips = _chips(d["decided"], marks, len(d["decided"]))
        head += f"<p><b>decided</b> ({escape(d['source'])}, {escape(d['rule'])}) {chips}</p>"
    if "truth" in d:
        missed = dict.fromkeys(truth - set(d.get("decided", [])), "missed")
        head += f"<p><b>ground truth</b> {_chips(d['truth'], missed, len(d['truth']))}</p>"
    picture = tiles_picture(f"/api/s/{s}/thumb/{d['row']}?size=768", d.get("hw"), d["tiles"])
    body = head + f"<div class='image-row'><div>{picture}</div><div>{rounds_chart(d)}{score_table(d)}</div></div>"
    if d.get("neighbours") is not None:
        body += f"<h2>Nearest neighbours in CLIP space</h2>{grid(s, d['neighbours'])}"
    return page(d["id"], body, s, d["store"])


def score_table(d: dict) -> str:
    """The top classes of the default source, with every source's score for them."""
    if not d["scores"]:
        return ""
    names = [n for n, _ in d.get("top", [])]
    index = {n: i for i, n in enumerate(d["classes"])}
    head = "<tr><th>class</th>" + "".join(f"<th>{escape(k)}</th>" for k in d["scores"]) + "</tr>"
    rows = "".join(
        f"<tr><td>{escape(n)}</td>"
        + "".join(f"<td class='num'>{_num(v[index[n]])}</td>" for v in d["scores"].values())
        + "</tr>"
        for n in names
    )
    return f"<table class='scores'>{head}{rows}</table>"


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def search_page(s: int, d: dict) -> str:
    q = d.get("text") or ""
    forms = (
        f"<form class='controls' action='/s/{s}/search'><input name='q' value='{escape(q)}' "
        "placeholder='a photo of a dog'><button>search by text</button></form>"
        f"<form class='controls' action='/s/{s}/search'><input name='like' type='number' min='0' "
        f"value='{d.get('like') if d.get('like') is not None else ''}' placeholder='row'>"
        "<button>search by an image of the store</button></form>"
        f"<form class='controls' id='upload' data-store='{s}'><input type='file' name='image' accept='image/*'>"
        "<button>search by an uploaded image</button></form>"
    )
    what = f"results for &ldquo;{escape(q)}&rdquo;" if q else ""
    if d.get("like") is not None:
        what = f"images like row {d['like']}"
    results = f"<h2>{what}</h2>{grid(s, d['results'])}" if what else ""
    return page("search", f"<h1>Search</h1>{forms}<div id='results'>{results}</div>", s, d["store"], q)


def stores_page(d: dict) -> str:
    rows = "".join(
        f"<tr><td><a href='/s/{x['index']}/'>{escape(x['store'])}</a></td><td class='num'>{x['n_images']}</td>"
        f"<td class='num'>{x['classes']}</td></tr>"
        for x in d["stores"]
    )
    return page("stores", f"<h1>Stores</h1><table><tr><th>store</th><th>images</th><th>classes</th></tr>{rows}</table>")
