"""What the image page and the overview show, as plain data (the JSON API returns it as is).

- image: its id, status, size, every source's scores, the decided labels of the default
  source next to the ground truth, and its tiles (``sim/tiles``) with each tile's box and
  top classes;
- overview: the store's attributes and summary, the pseudo-label mAP of every source where
  the store has ground truth (as recorded: S_g, S_ag, y0 and round 0 in the summary
  extraction wrote, a training round in its own attributes; a round with none, from
  cdul-refine say, scored chunk by chunk as cdul-train scores them, once), per-class counts
  at the decision rule, and the random-weights caveat as cdul-report words it.
"""

from __future__ import annotations

import functools

import numpy as np

from cdul.store import layout

from .catalog import Catalog, plain

STATUS_NAMES = {layout.PENDING: "pending", layout.OK: "ok", layout.FAILED: "failed"}
SUMMARY_KEYS = {"S_g": "global", "S_ag": "aggregated", "y0": "y0"}  # summary's pseudo_label_map keys


def top(scores: np.ndarray, classes: list[str], k: int) -> list[list]:
    finite = np.where(np.isfinite(scores), scores, -np.inf)
    return [[classes[c], plain(scores[c])] for c in np.argsort(-finite, kind="stable")[:k] if np.isfinite(scores[c])]


def image_details(cat: Catalog, row: int) -> dict:
    one = np.array([row])
    status = int(cat.rows(layout.STATUS, one)[0])
    rec: dict = {
        "store": cat.url,
        "row": row,
        "id": str(cat.rows(layout.IDS, one)[0]),
        "status": STATUS_NAMES.get(status, str(status)),
        "classes": cat.classes,
        "caveat": cat.caveat(),
    }
    if cat.store.has(layout.ERROR):
        rec["error"] = str(cat.rows(layout.ERROR, one)[0])
    if cat.store.has(layout.HW):
        rec["hw"] = [int(v) for v in cat.rows(layout.HW, one)[0]]
    scores = {s: cat.scores(s, one)[0] for s in cat.sources()}
    rec["scores"] = {s: [plain(x) for x in v] for s, v in scores.items()}
    if scores:
        source = cat.default_source()
        decided = cat.decide(scores[source][None])[0]
        rec.update(source=source, rule=cat.rule.describe(), top=top(scores[source], cat.classes, 5))
        rec["decided"] = cat.named(decided, scores[source])
    if cat.store.has(layout.TARGETS):
        truth = cat.rows(layout.TARGETS, one)[0]
        rec["truth"] = [cat.classes[c] for c in np.flatnonzero(truth == 1)]
        rec["difficult"] = [cat.classes[c] for c in np.flatnonzero(truth == 0)]
    rec["tiles"] = tiles(cat, one, rec.get("hw"))
    return rec


def tiles(cat: Catalog, one: np.ndarray, hw: list[int] | None) -> list[dict]:
    """Each kept tile's box (top, left, height, width) in the image and its top 3 classes."""
    from cdul.extractor.tiling import Tiling

    if not cat.store.has(layout.SIM_TILES) or hw is None or cat.store.section("config").get("local") == "dense":
        return []
    n_tiles = int(cat.rows(layout.N_TILES, one)[0])
    try:
        boxes = Tiling.from_description(dict(cat.store.section("tiling"))).boxes(*hw)
    except (KeyError, ValueError, TypeError):
        return []
    if n_tiles < 1 or n_tiles > len(boxes):
        return []
    probs = cat.rows(layout.SIM_TILES, one)[0][:n_tiles].astype(np.float32)
    return [{"box": list(map(int, box)), "top": top(p, cat.classes, 3)} for box, p in zip(boxes, probs)]


def source_maps(cat: Catalog) -> dict[str, float | None]:
    """Pseudo-label mAP (percent) of every source against the ground truth; {} without one."""
    if not cat.store.has(layout.TARGETS):
        return {}
    from cdul.trainer.evaluate import pseudo_label_map

    out: dict[str, float | None] = {}
    recorded = cat.store.section("summary").get("pseudo_label_map") or {}
    for source in cat.sources():
        if source in SUMMARY_KEYS:
            value = recorded.get(SUMMARY_KEYS[source]) if isinstance(recorded, dict) else None
            out[source] = plain(value) if isinstance(value, (int, float)) else None
        else:
            k = int(source[6:])
            attrs = cat.store.round_array(k).attrs.asdict()
            known = attrs.get("pseudo_map") if attrs.get("difficult", "ignore") == "ignore" else None
            if k == 0 and isinstance(recorded, dict):
                known = recorded.get("y0")  # round 0 is y0 as extraction wrote and scored it
            if isinstance(known, (int, float)):
                out[source] = plain(known)
            else:
                out[source] = cat.memo.get(("map", k), functools.partial(pseudo_label_map, cat.store, k))
    return out


def class_counts(cat: Catalog, source: str) -> list[dict]:
    """Per class: the ok images the rule decides it for, and those the ground truth gives it."""

    def make():
        c = len(cat.classes)
        decided, truth = np.zeros(c, np.int64), np.zeros(c, np.int64)
        status = cat.status()
        for k in range(cat.store.n_chunks):
            a, b = cat.store.chunk_bounds(k)
            ok = status[a:b] == layout.OK
            scores = cat.block(source, a, b)
            decided += cat.decide(scores[ok]).sum(0)
            if cat.store.has(layout.TARGETS):
                truth += (cat.store.read(layout.TARGETS, a, b)[ok] == 1).sum(0)
        return decided, truth

    decided, truth = cat.memo.get(("counts", source), make)
    has_truth = cat.store.has(layout.TARGETS)
    return [
        {"index": c, "name": name, "decided": int(decided[c]), **({"truth": int(truth[c])} if has_truth else {})}
        for c, name in enumerate(cat.classes)
    ]


def overview(cat: Catalog, source: str | None) -> dict:
    source = cat.source(source)
    model = dict(cat.store.section("model"))
    status = cat.status()
    return {
        "store": cat.url,
        "n_images": cat.n,
        "counts": {name: int((status == value).sum()) for value, name in STATUS_NAMES.items()},
        "classes": cat.classes,
        "model": model,
        "tiling": dict(cat.store.section("tiling")),
        "dataset": {"kind": cat.kind, "root": cat.root, "split": cat.store.section("dataset").get("split")},
        "summary": dict(cat.store.section("summary")),
        "caveat": cat.caveat(),
        "sources": cat.sources(),
        "source": source,
        "rule": cat.rule.describe(),
        "has": {
            "targets": cat.store.has(layout.TARGETS),
            "tiles": cat.store.has(layout.SIM_TILES),
            "embeddings": cat.store.has(layout.EMB_GLOBAL),
        },
        "pseudo_label_map": source_maps(cat),
        "per_class": class_counts(cat, source),
    }
