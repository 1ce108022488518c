"""What the report shows, as plain data: the store's scores and their pseudo-label mAP, the
zeta sweep, per-image top classes, and the training and evaluation records."""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np

from cdul.data import inputs
from cdul.kernels import aggregate_local, initial_labels
from cdul.metrics import default_protocol, pseudo_label_map
from cdul.store import attr_float, layout, open_verified

ZETAS = tuple(round(z, 2) for z in np.arange(0.0, 1.001, 0.05))


def top_classes(row: np.ndarray, classes: list[str], k: int = 3) -> list[tuple[str, float]]:
    order = np.argsort(-row)[:k]
    return [(classes[i], float(row[i])) for i in order]


def _map(scores: np.ndarray, targets: np.ndarray, rows: np.ndarray, protocol: str = "all-points") -> float:
    """Pseudo-label mAP (percent) of scores held in memory, over ``rows``."""
    return pseudo_label_map(lambda: [(scores, targets, rows)], len(rows), scores.shape[1], protocol=protocol)


def zeta_sweep(s_g, alpha, beta, targets, lam: float, rows, zetas=ZETAS, protocol: str = "all-points") -> list[dict]:
    """Pseudo-label mAP of S_ag and y0 for every zeta: cheap, from the stored alpha and beta."""
    out = []
    for z in zetas:
        out.append(
            {
                "zeta": z,
                "aggregated": _map(aggregate_local(alpha, beta, z), targets, rows, protocol),
                "y0": _map(initial_labels(s_g, alpha, beta, z, lam), targets, rows, protocol),
            }
        )
    return out


def gather(
    store_url: str,
    run_dir: str | None = None,
    eval_json: str | None = None,
    *,
    max_images: int,
    sources: Mapping[str, str] | None = None,
) -> dict:
    """Everything the report shows, as plain data (also written as report.json). ``sources``
    (image id -> what it is, e.g. photo or filler) adds a column to the per-image table."""
    training = read_training(run_dir) if run_dir is not None else None  # the user's files first: cheap to check
    evaluation = read_eval(eval_json) if eval_json is not None else None
    store = open_verified(store_url)
    classes = store.classes
    status = store.read(layout.STATUS)
    ok = status == layout.OK
    s_g, alpha, beta = (store.read(n) for n in (layout.SIM_GLOBAL, layout.SIM_ALPHA, layout.SIM_BETA))
    r0 = store.round_array(0).attrs.asdict() if 0 in store.label_rounds() else {}
    zeta, lam = attr_float(r0.get("zeta", 0.5)), attr_float(r0.get("lam", 0.0))
    y0 = initial_labels(s_g, alpha, beta, zeta, lam)
    s_ag = aggregate_local(alpha, beta, zeta)
    targets = store.read(layout.TARGETS) if store.has(layout.TARGETS) else None
    images: list[dict[str, object]] = []
    data = {
        "store": store.url,
        "classes": classes,
        "model": store.attrs.get("model", {}),
        "tiling": layout.local_mode(store.attrs),
        "summary": store.attrs.get("summary", {}),
        "zeta": zeta,
        "lam": lam,
        "images": images,
    }
    if targets is not None and ok.any():
        # the AP protocol of the extraction's summary (the dataset's own)
        summary_map = store.section("summary").get("pseudo_label_map")
        recorded = summary_map.get("ap") if isinstance(summary_map, Mapping) else None
        protocol = recorded if isinstance(recorded, str) else default_protocol(store.section("dataset").get("kind"))
        data["pseudo_label_map"] = {
            "global": _map(s_g, targets, ok, protocol),
            "aggregated": _map(s_ag, targets, ok, protocol),
            "y0": _map(y0, targets, ok, protocol),
            "ap": protocol,
        }
        data["zeta_sweep"] = zeta_sweep(s_g, alpha, beta, targets, lam, ok, protocol=protocol)
        data["max_alpha"] = float(np.nanmax(alpha[ok]))
    ids = store.ids()
    latest = store.latest_round() if store.label_rounds() else 0
    y_latest = store.read(layout.round_name(latest)) if latest else None
    if latest:
        data["latest_round"] = latest  # the per-image table shows its labels beside y0
    for i in np.flatnonzero(ok)[:max_images]:
        truth = [classes[c] for c in np.flatnonzero(targets[i] == 1)] if targets is not None else None
        images.append(
            {
                "row": int(i),
                "id": ids[i],
                "truth": truth,
                "S_g": top_classes(s_g[i], classes),
                "S_ag": top_classes(s_ag[i], classes),
                "y0": top_classes(y0[i], classes),
                **({"latest": top_classes(y_latest[i], classes)} if y_latest is not None else {}),
                **({"source": sources.get(ids[i], "?")} if sources else {}),
            }
        )
    if training is not None:
        data["training"] = training
    if evaluation is not None:
        data["eval"] = evaluation
    return data


NUMBER_OR_NONE = inputs.NUMBER_OR_NONE
ROUND: inputs.Rule = (lambda v: v is None or inputs.INTEGER[0](v)), "a round number or null"
RECORD = {
    "epoch": inputs.integer(0),
    "loss": NUMBER_OR_NONE,
    "val_map": NUMBER_OR_NONE,
    "pseudo_map": NUMBER_OR_NONE,
    "images_per_s": NUMBER_OR_NONE,
    "label_round": ROUND,
    "label_round_written": ROUND,
    "weights": inputs.TEXT_OR_NONE,
}
EVAL = {
    "map": inputs.NUMBER,
    "ap": (
        lambda v: isinstance(v, Mapping) and all(NUMBER_OR_NONE[0](x) for x in v.values()),
        "an object of class names and APs (numbers or null)",
    ),
    "CF1": NUMBER_OR_NONE,  # cdul-eval writes null for a score that is not defined
    "OF1": NUMBER_OR_NONE,
    "threshold": inputs.NUMBER,
    "dataset": inputs.TEXT,
    "split": inputs.TEXT,
    "weights": inputs.TEXT_OR_NONE,
}


def read_training(run_dir: str) -> list[dict]:
    """The epoch records of a cdul-train run folder (its metrics.jsonl), checked; a folder
    with none is an error (the report would show nothing of it)."""
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.isdir(run_dir):
        raise inputs.InputError(f"--run {run_dir}: no such run folder")
    if not os.path.exists(path):
        raise inputs.InputError(f"--run {run_dir}: no metrics.jsonl in it; is it a cdul-train --out-dir?")
    text = inputs.read_input(path, "--run").decode("utf-8", "replace")
    records = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.strip():
            where = f"{path}:{lineno}"
            record = inputs.check(inputs.parse_json(line, where), inputs.MAPPING, where)
            for key, rule in RECORD.items():
                inputs.field(record, key, rule, where, default=None)
            records.append(dict(record))
    if not records:
        raise inputs.InputError(f"--run {run_dir}: metrics.jsonl holds no epoch yet")
    return records


def read_eval(path: str) -> dict:
    """A cdul-eval JSON report, checked field by field."""
    report = inputs.load_object(path, "--eval")
    for key, rule in EVAL.items():
        inputs.field(
            report,
            key,
            rule,
            f"--eval {path}",
            default=None if key in ("dataset", "split", "weights") else inputs.REQUIRED,
        )
    return {**report, **{k: float("nan") for k in ("CF1", "OF1") if report[k] is None}}
